"""Nearest-segments speed: the faiss index (core.dashboard.nearest_index) against brute force on a
synthetic workspace of speaker-like embeddings, the very calls the Probe a clip page makes.

For each size: build time (dashboard-cache's ensure_index), query ms (p50 over 100 queries of
nearest_rows, the page's path: index search + exact re-rank from embeddings.npy), recall@10 of
those against the exact top 10 computed in the same run, brute force ms (p50 over 5 calls of the
page's brute-force scan, read from disk), the index file size and the RSS a fresh process adds
when it loads it as the pages do (memory-mapped) and after it answered the 100 queries (the
file-backed pages of the lists they scanned: nn_index_rss_mb). Targets (issue 11): query <= 50 ms at 1.1M rows and <= 100 ms at 10M,
recall@10 >= 0.95. The last line is key=value.

    OMP_NUM_THREADS=1 .venv/bin/python bench/nn_speed.py [--rows 1100000[,10000000]] [--dir D]

The embeddings are clustered like speaker embeddings, not uniform noise: 300 voice types, 29,000
speakers around them, segments around their speaker (192-d, unit norm; a segment's nearest rows
are mostly its speaker's other segments at cosine 0.5-0.6 against a median of 0), and a query is a
new segment of an existing speaker (a probed clip). The workspace is written under --dir (default:
a temporary folder, removed after).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

DIM = 192
QUERIES = 100
K = 10


def speaker_like(
    n: int,
    dim: int = DIM,
    speakers: int = 29_000,
    groups: int = 300,
    seed: int = 0,
    chunk_rows: int = 262_144,
):
    """Yields float32 [<= chunk_rows, dim] unit rows, n in all: voice-type groups -> speakers
    around them -> segments around their speaker (module docstring). In chunks: 10M x 192 is
    written to disk without being held in memory."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((groups, dim)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    c = g[rng.integers(0, groups, speakers)] + rng.standard_normal((speakers, dim)).astype(
        np.float32
    ) / np.sqrt(dim)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    spk = rng.integers(0, speakers, n)
    for a in range(0, n, chunk_rows):
        b = min(n, a + chunk_rows)
        x = c[spk[a:b]] + 1.1 * rng.standard_normal((b - a, dim)).astype(np.float32) / np.sqrt(dim)
        yield (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_workspace(root: Path, x: np.ndarray):
    """The dashboard tests' workspace maker (tests/dashboard/conftest.py small_workspace): one
    segment per row, no metadata."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dashboard_conftest", REPO / "tests" / "dashboard" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.small_workspace(root, x)


def loaded_rss_mb(path: Path, queries: np.ndarray) -> tuple[float, float]:
    """RSS the index adds to a process that loads it as the pages do (memory-mapped), and after
    it answered `queries` (the file pages their lists touched), in MB. Measured in a fresh child
    process, where nothing else is allocated or freed meanwhile."""
    from core.dashboard.nearest_index import DEFAULT_SETTINGS

    with tempfile.NamedTemporaryFile(suffix=".npy") as q:
        np.save(q.name, queries)
        code = (
            "import faiss, numpy as np, psutil, sys; p = psutil.Process(); a = p.memory_info().rss; "
            "i = faiss.read_index(sys.argv[1], faiss.IO_FLAG_MMAP); b = p.memory_info().rss; "
            f"faiss.extract_index_ivf(i).nprobe = {DEFAULT_SETTINGS.nprobe}; "
            f"i.search(np.load(sys.argv[2]), {K * DEFAULT_SETTINGS.candidates}); "
            "print((b - a) / 2**20, (p.memory_info().rss - a) / 2**20)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(path), q.name], capture_output=True, text=True, check=True
        ).stdout.split()
    return float(out[0]), float(out[1])


def exact_top(x: np.ndarray, q: np.ndarray, k: int, chunk: int = 262_144) -> list[set]:
    """The exact top-k row sets of each query (chunked matmul, the best k kept per chunk: memory
    stays one chunk's similarities at 10M rows)."""
    from core.workspace.workspace import row_chunks

    best_rows = np.zeros((len(q), 0), np.int64)
    best = np.zeros((len(q), 0), np.float32)
    a = 0
    for part in row_chunks(x, chunk):  # a memory map's pages released after each chunk
        sims = q @ part.T
        top = np.argpartition(-sims, min(k, sims.shape[1]) - 1, axis=1)[:, :k]
        best_rows = np.concatenate([best_rows, top + a], axis=1)
        best = np.concatenate([best, np.take_along_axis(sims, top, axis=1)], axis=1)
        keep = np.argsort(-best, axis=1)[:, :k]
        best_rows, best = np.take_along_axis(best_rows, keep, axis=1), np.take_along_axis(best, keep, axis=1)
        a += len(part)
    return [set(r) for r in best_rows]


def measure(rows: int, folder: Path) -> dict:
    from core.dashboard import nearest_index as ni
    from core.workspace.workspace import Workspace

    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"nn{rows}-source.npy"
    with open(src, "wb") as fh:  # plain writes of row chunks: 10M x 192 is never held in memory
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(fh, {**header, "shape": (rows + QUERIES, DIM)})
        for chunk in speaker_like(rows + QUERIES):
            fh.write(chunk.tobytes())
    data = np.load(src, mmap_mode="r")  # the workspace is written from the map in row chunks
    x, q = data[:rows], np.array(data[rows:])
    t = time.perf_counter()
    ws = make_workspace(folder / f"nn{rows}", x)
    made = time.perf_counter() - t
    truth = exact_top(x, q, K)
    del data, x
    src.unlink()
    t = time.perf_counter()
    built = ni.ensure_index(ws)
    build_s = time.perf_counter() - t
    fresh = Workspace.open(ws.root)
    t = time.perf_counter()
    ni.load_index(fresh)
    load_s = time.perf_counter() - t
    index_rss, queried_rss = loaded_rss_mb(built.path, q)
    times, recall = [], []
    for i in range(QUERIES):
        t = time.perf_counter()
        found, _ = ni.nearest_rows(fresh, q[i], K)
        times.append(time.perf_counter() - t)
        recall.append(len(set(found) & truth[i]) / K)
    ni.row_norms(fresh)  # computed once per server: not a query's cost
    brute = []
    for i in range(5):
        t = time.perf_counter()
        ni.brute_force_rows(fresh, q[i], K, None)
        brute.append(time.perf_counter() - t)
    out = {
        "rows": rows,
        "lists": built.lists,
        "make_s": made,
        "build_s": build_s,
        "load_s": load_s,
        "file_mb": built.path.stat().st_size / 2**20,
        "index_rss_mb": index_rss,
        "queried_rss_mb": queried_rss,
        "query_ms": 1e3 * float(np.median(times)),
        "query_p95_ms": 1e3 * float(np.percentile(times, 95)),
        "recall10": float(np.mean(recall)),
        "brute_ms": 1e3 * float(np.median(brute)),
    }
    shutil.rmtree(ws.root, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1100000", help="comma-separated sizes (default 1100000)")
    ap.add_argument(
        "--dir", default=None, help="folder for the synthetic workspaces (default: a temporary one)"
    )
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.rows.split(",")]
    folder = Path(args.dir or tempfile.mkdtemp(prefix="nn-bench-"))
    print(
        f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.2f}"
    )
    keys = {}
    try:
        for rows in sizes:
            r = measure(rows, folder)
            print(
                f"{rows:,} rows x {DIM}: workspace written in {r['make_s']:.0f} s; index IVF{r['lists']},SQ8 built in "
                f"{r['build_s']:.1f} s ({r['file_mb']:.0f} MB file, +{r['index_rss_mb']:.0f} MB RSS loaded memory-mapped, "
                f"+{r['queried_rss_mb']:.0f} MB after {QUERIES} queries; loaded in "
                f"{r['load_s']:.2f} s); query p50 {r['query_ms']:.2f} ms (p95 {r['query_p95_ms']:.2f}), "
                f"recall@10 {r['recall10']:.3f}; brute force p50 {r['brute_ms']:.0f} ms"
            )
            tag = {1_100_000: "1m", 10_000_000: "10m"}.get(rows, str(rows))
            keys.update(
                {
                    f"nn_query_ms_{tag}": f"{r['query_ms']:.2f}",
                    f"nn_recall10_{tag}": f"{r['recall10']:.3f}",
                    f"brute_ms_{tag}": f"{r['brute_ms']:.0f}",
                    f"nn_build_s_{tag}": f"{r['build_s']:.1f}",
                    f"nn_index_rss_mb_{tag}": f"{r['queried_rss_mb']:.0f}",
                }
            )
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(" ".join(f"{k}={v}" for k, v in keys.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
