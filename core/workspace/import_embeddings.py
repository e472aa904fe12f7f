"""`python -m core import-embeddings FILE --workspace NAME --metadata CSV`: embeddings without audio.

For users who only have embeddings (the paper's authors could share embeddings, never audio):
FILE is a .npy array [N, dim] or a Parquet table (a list/array column `embedding`, or only
numeric columns, one per dimension). The CSV has one row per embedding, in the same order;
its `segment_id` column names them when present (otherwise seg000000, seg000001, ...), and
`source`, `start_s`, `end_s`, `duration_s` are used when present; every other column becomes a
segment attribute (a column whose values are all numbers is stored as numbers, a continuous
attribute: metadata.numeric_columns). Every bad input is one InputError naming the file (and
row) at fault: a file that is not a .npy at all (text, an .npz archive) is told apart from a
pickled one, a header that declares more data than the file holds is refused before anything is
allocated, and only real numbers are taken (complex, bool, text, objects, structured, (N, 0)
arrays and values beyond float32's range are refused, see workspace.validate_embeddings). Times must be finite, not
negative, and end_s not before start_s. The workspace folder is checked before anything is read
(workspace.check_target): an existing folder that is not a workspace is refused, replacing a
workspace (a damaged one too) is announced.

`--windows W.npy --window-segments R.npy` (both or neither) add sub-segment window embeddings:
W float32-able [n_windows, dim] (the embeddings' dim), R integers [n_windows], the segment row
(0-based, in the CSV's order) of each window, non-decreasing. A misaligned pair (another dim,
another length, a row outside the segments or out of order, NaN) is one InputError naming the
file and the first bad window (workspace.validate_windows).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from core.constants import SEGMENT_BASE_COLUMNS
from core.errors import InputError
from core.workspace.metadata import csv_line, numeric_columns, read_metadata_csv
from core.workspace.workspace import (
    Windows,
    Workspace,
    announce_replacement,
    check_target,
    npy_header,
    read_info,
    validate_embeddings,
    validate_windows,
)

IMPORTED_EMBEDDER = "imported"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="embeddings: FILE.npy [N, dim] or FILE.parquet")
    parser.add_argument("--workspace", required=True, help="workspace name (data/NAME) or path")
    parser.add_argument("--metadata", required=True, metavar="CSV", help="one row per embedding, same order")
    parser.add_argument(
        "--embedder",
        default=IMPORTED_EMBEDDER,
        help="name of the model that made the embeddings (e.g. titanet); recorded in the workspace",
    )
    parser.add_argument(
        "--windows",
        metavar="FILE.npy",
        help="optional window embeddings [n_windows, dim] (sub-segment windows; needs --window-segments)",
    )
    parser.add_argument(
        "--window-segments",
        metavar="FILE.npy",
        help="the segment row (0-based, in the CSV's order) of each window: integers, non-decreasing",
    )


def main(args: argparse.Namespace) -> int:
    ws = import_embeddings(
        args.file,
        args.workspace,
        metadata=args.metadata,
        embedder=args.embedder,
        windows=args.windows,
        window_segments=args.window_segments,
    )
    windows = f", {ws.info.n_windows} windows" if ws.windows is not None else ""
    print(f"import-embeddings: {len(ws)} embeddings ({ws.dim}-d){windows} -> workspace {ws.root}")
    return 0


def load_embeddings(path: str | Path) -> np.ndarray:
    """float32 [N, dim] from .npy or .parquet, validated (finite, 2-D, non-empty)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: embeddings file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = _npy_array(path)
    elif suffix in {".parquet", ".pq"}:
        arr = _parquet_array(path)
    else:
        raise InputError(f"{path}: unsupported embeddings file type {suffix!r} (use .npy or .parquet)")
    return validate_embeddings(arr, str(path))


def _npy_array(path: Path) -> np.ndarray:
    header = npy_header(path)  # InputError for a file that is not a .npy at all
    if header is not None:
        shape, _, dtype, offset = header
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = path.stat().st_size - offset
        if not dtype.hasobject and declared > held:  # numpy would allocate all of it first
            raise InputError(
                f"{path}: not a readable .npy array (the header declares shape {shape} {dtype.str} "
                f"({declared:,} bytes) but the file holds {held:,}: truncated, or not a real array)"
            )
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # an object array: loading it would run pickle
            raise InputError(
                f"{path}: holds pickled Python objects, which are never loaded; save a numeric array"
            ) from None
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    except Exception as exc:  # truncated data, a damaged header
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None


def _list_value_array(value, path: Path, row: int) -> np.ndarray:
    """One `embedding` cell as a numeric array (bool, text or nested values refused, not cast)."""
    arr = np.asarray(value)
    if arr.ndim == 1 and arr.size == 0:  # no dimensions at all: validate_embeddings says so
        return arr.astype(np.float64)
    if arr.dtype.kind not in "iuf" or arr.ndim != 1:
        kind = f"dtype {arr.dtype}" if arr.ndim == 1 else ("one value" if arr.ndim == 0 else "nested lists")
        raise InputError(f"{path}: `embedding` on row {row} is not a list of numbers ({kind})")
    return arr


def _parquet_array(path: Path) -> np.ndarray:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    if "embedding" in frame.columns:
        lengths = frame["embedding"].map(lambda v: -1 if v is None else len(v))
        if (lengths < 0).any():
            raise InputError(f"{path}: `embedding` is missing on row {int(np.flatnonzero(lengths < 0)[0])}")
        if lengths.nunique() > 1:
            bad = int(np.flatnonzero(lengths != lengths.iloc[0])[0])
            raise InputError(
                f"{path}: `embedding` lengths differ (row 0 has {lengths.iloc[0]}, row {bad} has {lengths.iloc[bad]})"
            )
        try:
            return np.stack([_list_value_array(v, path, i) for i, v in enumerate(frame["embedding"])])
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: `embedding` column is not numeric ({exc})") from None
    non_numeric = [
        str(c)
        for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    if non_numeric:
        raise InputError(
            f"{path}: expected a list column `embedding` or only numeric columns; "
            f"non-numeric column(s): {', '.join(non_numeric[:5])}"
        )
    return frame.to_numpy(dtype=np.float64)  # float64 keeps every value; validate checks float32's range


def build_segments(meta: pd.DataFrame, csv_path: str | Path) -> pd.DataFrame:
    """The segment table from the metadata rows (ids checked, base columns filled)."""
    frame = meta.copy()
    if "segment_id" in frame.columns:
        ids = frame["segment_id"].str.strip()
        empty = np.flatnonzero(ids == "")
        if empty.size:
            raise InputError(f"{csv_path} row {csv_line(meta, int(empty[0]))}: empty segment_id")
        dup = ids.duplicated(keep="first")
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            first = int(np.flatnonzero(ids == ids.iloc[row])[0])
            raise InputError(
                f"{csv_path} row {csv_line(meta, row)}: duplicate segment_id {ids.iloc[row]!r} "
                f"(also on row {csv_line(meta, first)})"
            )
        frame["segment_id"] = ids
    else:
        frame.insert(0, "segment_id", [f"seg{i:06d}" for i in range(len(frame))])
    if "source" not in frame.columns:
        frame["source"] = ""
    for col in ("start_s", "end_s", "duration_s"):
        if col in frame.columns:
            values = pd.to_numeric(frame[col].replace("", np.nan), errors="coerce")
            for problem, bad in (
                ("is not a number", values.isna() & (frame[col] != "")),
                ("is not a finite number", np.isinf(values)),
                ("is negative", values < 0),
            ):
                if bad.any():
                    row = int(np.flatnonzero(bad)[0])
                    raise InputError(
                        f"{csv_path} row {csv_line(meta, row)}: {col} {frame[col].iloc[row]!r} {problem}"
                    )
            frame[col] = values
        else:
            frame[col] = np.nan
    backwards = np.flatnonzero(frame["end_s"] < frame["start_s"])
    if backwards.size:
        row = int(backwards[0])
        raise InputError(
            f"{csv_path} row {csv_line(meta, row)}: end_s {frame['end_s'].iloc[row]} is before "
            f"start_s {frame['start_s'].iloc[row]}"
        )
    if frame["duration_s"].isna().all() and not frame["start_s"].isna().all():
        frame["duration_s"] = frame["end_s"] - frame["start_s"]
    rest = [c for c in frame.columns if c not in SEGMENT_BASE_COLUMNS]
    # a column of numbers (a measured F0, an age) stays numeric: a continuous attribute
    return numeric_columns(frame[[*SEGMENT_BASE_COLUMNS, *rest]], SEGMENT_BASE_COLUMNS)


def load_windows(
    windows: str | Path | None, window_segments: str | Path | None, n_segments: int, dim: int
) -> Windows | None:
    """The --windows / --window-segments pair, checked against the segments (None when neither)."""
    if windows is None and window_segments is None:
        return None
    if windows is None or window_segments is None:
        given, missing = ("--windows", "--window-segments") if windows else ("--window-segments", "--windows")
        raise InputError(
            f"import-embeddings: {given} needs {missing} too (the window embeddings and the segment row "
            "of each window come as a pair)"
        )
    win_path, rows_path = Path(windows).expanduser(), Path(window_segments).expanduser()
    for path in (win_path, rows_path):
        if not path.is_file():
            raise InputError(f"{path}: window file not found")
        if path.suffix.lower() != ".npy":
            raise InputError(
                f"{path}: window files are .npy arrays (numpy.save), got {path.suffix or 'no suffix'}"
            )
    return validate_windows(
        _npy_array(win_path), _npy_array(rows_path), n_segments, dim, str(win_path), str(rows_path)
    )


def import_embeddings(
    file: str | Path,
    workspace: str | Path,
    *,
    metadata: str | Path,
    embedder: str = IMPORTED_EMBEDDER,
    windows: str | Path | None = None,
    window_segments: str | Path | None = None,
) -> Workspace:
    """Make (or replace) a workspace from an embeddings file + metadata CSV (and optionally window
    embeddings with their segment rows), atomically."""
    root = check_target(workspace)  # a user's own folder is refused before anything is read
    file = Path(file).expanduser()
    embeddings = load_embeddings(file)
    meta = read_metadata_csv(metadata)
    if len(meta) != embeddings.shape[0]:
        raise InputError(
            f"{metadata}: {len(meta)} metadata row(s) but {file} holds {embeddings.shape[0]} embedding(s); "
            "the CSV needs one row per embedding, in the same order"
        )
    segments = build_segments(meta, metadata)
    window_data = load_windows(windows, window_segments, len(segments), embeddings.shape[1])
    existing = read_info(root)  # its workspace.json alone: the corpus it replaces may be damaged
    if existing is not None:
        if existing.dim != embeddings.shape[1]:
            raise InputError(
                f"{file}: embedding dim {embeddings.shape[1]} does not match workspace "
                f"{root.name} (dim {existing.dim}); use another --workspace name"
            )
        announce_replacement(root, "import-embeddings")
    provenance = {
        "command": "import-embeddings",
        "embeddings_file": str(file.resolve()),
        "metadata": str(Path(metadata).expanduser().resolve()),
        "embedder": embedder,
        "windows": (
            {
                "windows_file": str(Path(windows).expanduser().resolve()),
                "window_segments_file": str(Path(window_segments).expanduser().resolve()),
            }
            if window_data is not None
            else None
        ),
    }
    return Workspace.create(
        root,
        segments,
        embeddings,
        embedder=embedder,
        sample_rate=0,
        provenance=provenance,
        windows=window_data,
    )
