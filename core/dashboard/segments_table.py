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
(core.analysis.store.segments_digest: the parquet's SHA-256), each written atomically, then a
.json beside them written last that names what they were made from and what they are: the
parquet's digest, rows and columns, the Arrow copy's size and mtime, and the SHA-256 of the order
and counts files. Those of an older segment table are removed. The copy is used only when that
description fits the files as they are (a crash between the writes, a file truncated, edited or
swapped, a copy from before the description existed) and none of them is a link (a copy is never
read from outside the workspace); else it is said once (stderr, and `problem(ws)` for the page)
and the parquet is read instead, and `dashboard-cache` (`ensure`) writes the copy again. The Arrow
copy is checked by size and mtime, not hashed: hashing 2 GB at every server start would undo what
the copy is for; an edit that keeps both is not seen. The order and counts files' SHA-256 are
remembered (core.filehash: while a file keeps its inode, size, mtime and ctime), not hashed at
every start.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core import atomic, filehash
from core.constants import SEGMENT_BASE_COLUMNS, SEGMENTS_PARQUET
from core.filehash import file_sha256

_IDS = "_voxsae_segment_ids"
_COUNTS = "_voxsae_value_counts"
_PROBLEM = "_voxsae_segments_table_problem"
_MANIFEST = "_voxsae_segments_table_manifest"


def table_path(ws) -> Path:
    from core.analysis.store import segments_digest

    return ws.cache_dir / f"segments-{segments_digest(ws)}.arrow"


def order_path(table: Path) -> Path:
    """The rows of the copy sorted by segment_id (int64 .npy beside it): a segment id is found by
    binary search, not through a hash index of every id (8 s and 1 GB of server heap at 10M)."""
    return table.with_suffix(".order.npy")


def manifest_path(table: Path) -> Path:
    """What the copy was made from and what its files are (JSON beside it, written last)."""
    return table.with_suffix(".json")


def _files(table: Path) -> tuple[Path, Path, Path, Path]:
    return table, order_path(table), counts_path(table), manifest_path(table)


def _describe(ws, table: Path, names: list[str]) -> dict:
    from core.analysis.store import segments_digest

    stat = table.stat()
    return {
        "segments_digest": segments_digest(ws),
        "rows": len(ws),
        "columns": list(names),
        "arrow": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "order_sha256": file_sha256(order_path(table)),
        "counts_sha256": file_sha256(counts_path(table)),
    }


def check(ws, table: Path | None = None) -> str | None:
    """Why the stored copy of `ws`'s segment table must not be used (None: it may): a file
    missing, a link, or not what its description says it is, or a description of another table."""
    import pyarrow.parquet as pq

    from core.analysis.store import segments_digest

    table = table or table_path(ws)
    for p in _files(table):
        if p.is_symlink():
            return f"{p.name} is a link (to {p.readlink()}), not a file the workspace wrote"
        if not p.is_file():
            return f"{p.name} is missing"
    try:
        meta = json.loads(manifest_path(table).read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        names = pq.read_schema(ws.root / SEGMENTS_PARQUET).names
        expected = {"segments_digest": segments_digest(ws), "rows": len(ws), "columns": names}
        if any(meta.get(k) != v for k, v in expected.items()):
            return "its description names another segment table"
        stat = table.stat()
        if meta.get("arrow") != {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return f"{table.name} is not the file written (size or mtime changed)"
        memo = ws.cache_dir / filehash.MEMO_JSON  # hashed once while each keeps its inode and times
        if meta.get("order_sha256") != filehash.remembered_sha256(order_path(table), memo):
            return f"{order_path(table).name} is not the file written (its bytes changed)"
        if meta.get("counts_sha256") != filehash.remembered_sha256(counts_path(table), memo):
            return f"{counts_path(table).name} is not the file written (its bytes changed)"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"its description is unreadable ({type(exc).__name__}: {str(exc)[:80]})"
    ws.__dict__[_MANIFEST] = meta
    return None


def problem(ws) -> str | None:
    """The warning `load` gave for `ws` (a copy present but not used), None when it gave none:
    what the page shows."""
    return ws.__dict__.get(_PROBLEM)


def ensure(ws) -> Path:
    """Write the Arrow copy of `ws`'s segment table (its segment_id order, value counts and their
    description) unless a usable one is stored; its path."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = table_path(ws)
    if check(ws, path) is None:
        return path
    for p in _files(path):  # a link is removed, not written through
        if p.is_symlink():
            p.unlink()
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
    atomic.write_json(manifest_path(path), _describe(ws, path, table.schema.names))  # last
    for old in ws.cache_dir.glob("segments-*"):
        if old not in _files(path):
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
            data = counts_path(table_path(ws)).read_bytes()
            if hashlib.sha256(data).hexdigest() != ws.__dict__.get(_MANIFEST, {}).get("counts_sha256"):
                raise ValueError("its bytes are not the ones described")
            frame = pd.read_parquet(io.BytesIO(data))
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
    if path.is_file() or path.is_symlink():
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            why = check(ws, path)
            if why is not None:
                raise ValueError(why)
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
            msg = f"{path}: segment table copy not used ({exc}); reading the parquet until `dashboard-cache` rewrites it"
            ws.__dict__[_PROBLEM] = msg
            print(f"warning: {msg}", file=sys.stderr)
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
    n = len(offsets) - 1
    lo, hi = 0, len(order)
    while lo < hi:  # the first sorted position whose id is >= key (ids compare as UTF-8 bytes)
        mid = (lo + hi) // 2
        row = int(order[mid])
        if not 0 <= row < n:  # the order file changed under its map: no row it names is trusted
            return None
        if data[offsets[row] : offsets[row + 1]].tobytes() < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(order):
        row = int(order[lo])
        if 0 <= row < n and data[offsets[row] : offsets[row + 1]].tobytes() == key:
            return row
    return -1
