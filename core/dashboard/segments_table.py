"""The segment table as the dashboard server holds it: an uncompressed Arrow copy of
segments.parquet in the workspace cache, memory-mapped.

    from core.dashboard import segments_table
    segments_table.ensure(ws)     # write the copy when missing (dashboard-cache does)
    segments_table.load(ws)       # ws.segments from the copy when it is there, else the parquet
    segments_table.find(ws, "s17")   # its row by binary search (-1: not listed; None: no copy read)
    segments_table.value_counts(ws, "speaker")   # stored corpus-wide counts (None: count it yourself)

Why: at 10M segments reading segments.parquet takes 6 s and 1.8 GB of server heap (the strings
decoded into Arrow buffers); the Arrow file opens in under a second and its columns stay
file-backed pages, read where the pages look (a latent's rows). The frame is the one pandas
reads from the parquet: the same columns, dtypes and values. Beside it, what would otherwise
take a pass over every row at each server start: the rows in segment_id order (a segment's row
by binary search) and each metadata column's value counts (the latent page's corpus-wide shares,
the overview's counts).

Where: cache/segments-<segments digest>.arrow, .order.npy and .counts.parquet
(core.analysis.store.segments_digest: the parquet's SHA-256), each written atomically; those of
an older segment table are removed. A copy that does not open, or whose rows, columns or order
do not fit the parquet's, is said (stderr) and the parquet is read instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core import atomic
from core.constants import SEGMENT_BASE_COLUMNS, SEGMENTS_PARQUET

_IDS = "_voxsae_segment_ids"
_COUNTS = "_voxsae_value_counts"


def table_path(ws) -> Path:
    from core.analysis.store import segments_digest

    return ws.cache_dir / f"segments-{segments_digest(ws)}.arrow"


def order_path(table: Path) -> Path:
    """The rows of the copy sorted by segment_id (int64 .npy beside it): a segment id is found by
    binary search, not through a hash index of every id (8 s and 1 GB of server heap at 10M)."""
    return table.with_suffix(".order.npy")


def ensure(ws) -> Path:
    """Write the Arrow copy of `ws`'s segment table (and its segment_id order) when missing; its
    path."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = table_path(ws)
    if all(p.is_file() for p in (path, order_path(path), counts_path(path))):
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
    order = pc.sort_indices(table.column("segment_id")).to_numpy().astype(np.int64)
    atomic.write_npy(order_path(path), order)
    atomic.write_parquet(counts_path(path), _attribute_counts(table))
    for old in ws.cache_dir.glob("segments-*"):
        if old not in (path, order_path(path), counts_path(path)):
            old.unlink(missing_ok=True)
    return path


def counts_path(table: Path) -> Path:
    """Each metadata column's value counts (column, value, count; a .parquet beside the copy):
    the latent page's corpus-wide shares without a pass over 10M rows per server start."""
    return table.with_suffix(".counts.parquet")


def _attribute_counts(table) -> pd.DataFrame:
    """(column, value, count) of every non-numeric metadata column, counted as the latent page
    counts them (core.dashboard.browse._breakdown: as text, missing values left out)."""
    import pyarrow as pa

    parts = []
    for name in table.column_names:
        column = table.column(name)
        if (
            name in SEGMENT_BASE_COLUMNS
            or pa.types.is_integer(column.type)
            or pa.types.is_floating(column.type)
        ):
            continue
        counts = column.to_pandas().astype("string").value_counts(dropna=True)
        parts.append(
            pd.DataFrame({"column": name, "value": counts.index.astype(str), "count": counts.to_numpy()})
        )
    if not parts:
        return pd.DataFrame({"column": pd.Series(dtype=str), "value": pd.Series(dtype=str), "count": []})
    return pd.concat(parts, ignore_index=True)


def value_counts(ws, column: str) -> pd.Series | None:
    """Counts of each value of metadata `column` over the whole table (index: the values as text,
    by count, most first), from the copy's stored counts; None when `ws.segments` was not read
    from the copy or the column is not counted there (the caller counts the column itself)."""
    if _IDS not in ws.__dict__:
        return None
    stored = ws.__dict__.get(_COUNTS)
    if stored is None:
        try:
            frame = pd.read_parquet(counts_path(table_path(ws)))
            stored = {
                str(name): pd.Series(part["count"].to_numpy(), index=pd.Index(part["value"], dtype="string"))
                for name, part in frame.groupby("column", sort=False)
            }
        except (OSError, ValueError, KeyError) as exc:
            print(f"warning: {counts_path(table_path(ws))}: value counts not used ({exc})", file=sys.stderr)
            stored = {}
        ws.__dict__[_COUNTS] = stored
    return stored.get(column)


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
            order = np.load(order_path(path), mmap_mode="r", allow_pickle=False)
            if order.shape != (len(ws),) or order.dtype != np.int64:
                raise ValueError(f"its segment_id order holds {order.shape} {order.dtype}")
            # split_blocks: each column stays its own (mapped) buffer, not copied into one block
            ws.__dict__["segments"] = table.to_pandas(split_blocks=True)
            ws.__dict__[_IDS] = (_string_buffers(table.column("segment_id")), order)
        except (OSError, ValueError, pa.ArrowException) as exc:
            print(
                f"warning: {path}: segment table copy not used ({exc}); reading the parquet", file=sys.stderr
            )
    return ws.segments


def _string_buffers(column) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 [n + 1], bytes uint8) of a one-chunk (large_)string column: zero-copy
    views of its Arrow buffers, so an id is two offsets and a slice."""
    import pyarrow as pa

    chunk = column.chunk(0) if isinstance(column, pa.ChunkedArray) else column
    if column.num_chunks != 1 or chunk.null_count:
        raise ValueError("segment_id is not one chunk of strings without nulls")
    _, offsets, data = chunk.buffers()
    kind = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(offsets, dtype=kind)[chunk.offset : chunk.offset + len(chunk) + 1]
    return offsets.astype(np.int64, copy=False), np.frombuffer(data, dtype=np.uint8)


def find(ws, segment_id: str) -> int | None:
    """Row of `segment_id` (-1 when the table does not list it) by binary search over the copy's
    segment_id order; None when `ws.segments` was not read from the copy (the caller looks it up
    its own way)."""
    found = ws.__dict__.get(_IDS)
    if found is None:
        return None
    (offsets, data), order = found
    key = str(segment_id).encode()
    lo, hi = 0, len(order)
    while lo < hi:  # the first sorted position whose id is >= key (ids compare as UTF-8 bytes)
        mid = (lo + hi) // 2
        row = int(order[mid])
        if data[offsets[row] : offsets[row + 1]].tobytes() < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(order):
        row = int(order[lo])
        if data[offsets[row] : offsets[row + 1]].tobytes() == key:
            return row
    return -1
