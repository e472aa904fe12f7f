"""What checking the segment table's copy against its description costs a server start.

    OMP_NUM_THREADS=1 .venv/bin/python bench/segments_table_check.py --rows 1000000

A workspace of --rows segments (4-d embeddings: only the table matters here) with its copy written
by segments_table.ensure; then, on fresh Workspace objects, segments_table.load timed with the
check (the description read, the Arrow copy's size and mtime, the order and counts files hashed)
and without it (the baseline: `check` made to pass untested), alternating, median of --repeats.
The parquet's own digest (segments_digest) is hashed on both sides, as a server does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from core.dashboard import segments_table
    from core.sae import catalog
    from core.workspace.workspace import Workspace

    n = args.rows
    seg = pd.DataFrame(
        {
            "segment_id": [f"seg{i:09d}" for i in range(n)],
            "source": [f"audio/{i // 100}.wav" for i in range(n)],
            "start_s": np.zeros(n),
            "end_s": np.ones(n),
            "duration_s": np.ones(n),
            "speaker": [f"spk{i % 5000}" for i in range(n)],
            "gender": np.where(np.arange(n) % 2, "f", "m"),
        }
    )
    x = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.create(Path(tmp) / "ws", seg, x, embedder="x", sample_rate=0)
        del seg, x
        table = segments_table.ensure(ws)
        sizes = {p.name.split(".", 1)[1]: p.stat().st_size for p in segments_table._files(table)}
        real_check = segments_table.check

        def open_once(checked: bool) -> float:
            catalog._file_sha256.cache_clear()  # each start hashes afresh, as a new server does
            segments_table.check = real_check if checked else (lambda ws, table=None: None)
            try:
                fresh = Workspace.open(ws.root)
                t0 = time.perf_counter()
                segments_table.load(fresh)
                took = time.perf_counter() - t0
                assert (
                    segments_table.problem(fresh) is None and segments_table.find(fresh, "seg000000017") == 17
                )
            finally:
                segments_table.check = real_check
            return took

        open_once(True)  # page cache warm for both sides
        checked, baseline = [], []
        for _ in range(args.repeats):
            checked.append(open_once(True))
            baseline.append(open_once(False))
    c, b = statistics.median(checked), statistics.median(baseline)
    print(f"== segment table load at {n:,} rows; files: {sizes}")
    print(f"load with the check     {1000 * c:9.1f} ms (median of {args.repeats})")
    print(f"load without (baseline) {1000 * b:9.1f} ms")
    print(f"rows={n} load_checked_ms={1000 * c:.1f} load_baseline_ms={1000 * b:.1f} ratio={c / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
