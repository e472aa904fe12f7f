"""The segment table as the dashboard server holds it: an uncompressed Arrow copy of
segments.parquet in the workspace cache, memory-mapped.

    from core.dashboard import segments_table
    segments_table.ensure(ws)     # write the copy when missing (dashboard-cache does)
    segments_table.load(ws)       # ws.segments from the copy when it is there, else the parquet

Why: at 10M segments reading segments.parquet takes 6 s and 1.8 GB of server heap (the strings
decoded into Arrow buffers); the Arrow file opens in under a second and its columns stay
file-backed pages, read where the pages look (a latent's rows, a base-rate pass). The frame is
the one pandas reads from the parquet: the same columns, dtypes and values.

Where: cache/segments-<segments digest>.arrow (core.analysis.store.segments_digest: the
parquet's SHA-256), written atomically; copies of an older segment table are removed. A copy that
does not open, or whose rows or columns are not the parquet's, is said once (stderr) and the
parquet is read instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from core import atomic
from core.constants import SEGMENTS_PARQUET


def table_path(ws) -> Path:
    from core.analysis.store import segments_digest

    return ws.cache_dir / f"segments-{segments_digest(ws)}.arrow"


def ensure(ws) -> Path:
    """Write the Arrow copy of `ws`'s segment table when it is missing; its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = table_path(ws)
    if path.is_file():
        return path
    # one chunk per column: pyarrow's take from a many-chunk column joins the chunks first (50 ms
    # a column at 10M rows, on every latent page), from one chunk it reads only the rows taken
    table = pq.read_table(ws.root / SEGMENTS_PARQUET).combine_chunks()
    with (
        atomic.atomic_path(path) as tmp,  # closed (writer, then file) before it is renamed in
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    for old in ws.cache_dir.glob("segments-*.arrow"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def load(ws) -> pd.DataFrame:
    """`ws.segments`, read from the memory-mapped Arrow copy when it is there and fits (it then
    becomes the frame ws.segments returns), else from segments.parquet."""
    if "segments" in ws.__dict__:  # already read (functools.cached_property's slot)
        return ws.segments
    path = table_path(ws)
    if path.is_file():
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            names = pq.read_schema(ws.root / SEGMENTS_PARQUET).names
            if table.num_rows != len(ws) or table.schema.names != names:
                raise ValueError(f"{table.num_rows} rows x {table.schema.names}, not {len(ws)} x {names}")
            # split_blocks: each column stays its own (mapped) buffer, not copied into one block
            ws.__dict__["segments"] = table.to_pandas(split_blocks=True)
        except (OSError, ValueError, pa.ArrowException) as exc:
            print(
                f"warning: {path}: segment table copy not used ({exc}); reading the parquet", file=sys.stderr
            )
    return ws.segments
