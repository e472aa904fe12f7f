"""A workspace: one corpus of segment embeddings with metadata, in one folder under data/.

    data/NAME/workspace.json     embedder, dim, sample rate, provenance, fingerprint
    data/NAME/segments.parquet   segment_id, source, start_s, end_s, duration_s, + metadata
    data/NAME/embeddings.npy     float32 [N, dim], row-aligned with segments.parquet
    data/NAME/windows.npy        float32 [W, dim], sub-segment window embeddings (optional)
    data/NAME/window_segments.npy  int64 [W], the segment row of each window (non-decreasing)

    check_target(name_or_path) -> Path          where a command may build a workspace (or InputError)
    read_info(root) -> WorkspaceInfo | None     its workspace.json alone, checked (None: no workspace)
    announce_replacement(root, command)         one stderr line when a command replaces a workspace
    Workspace.create(name_or_path, segments, embeddings, ...) -> Workspace   (new or replaced)
    Workspace.open(name_or_path) -> Workspace
    open_distinct(ws, names, flag, ...) -> [Workspace]   other workspaces a flag lists (--pool, --across)

A workspace is only ever written into a folder that is new, empty or already a VoxSAE workspace
(never over a user's own files). Creating one stages the new corpus files in a hidden folder
inside it and commits them by renaming that folder to `.new-corpus` (NEW_CORPUS_DIR); its files
then move into place with workspace.json last. Anything that opens the workspace finishes a
commit a crash interrupted before reading, so every reader sees either the old complete corpus
or the new one. Writers of one workspace take turns (flock on its folder), and one that waited
moves in the corpus its predecessor committed before committing its own. A `.new-corpus` that is
a link is never followed.

Opening checks what a hand edit or a damaged disk can break, with one InputError naming the file:
workspace.json's fields and types (and a format newer than this code reads), segments.parquet
(there, readable, n_segments rows, the base columns) and embeddings.npy (there, a .npy, no pickled
objects, native float32, shape (n_segments, dim)), reading only the Parquet footer and the .npy
header; with windows (workspace.json's n_windows), windows.npy (float32 [n_windows, dim]) and
window_segments.npy (int64 [n_windows], non-decreasing segment rows within range: the one file
read whole, W int64s). A workspace made without windows (n_windows absent or 0) has no window
files, and `ws.windows` is None. A workspace name is a folder name: no NUL byte, at most NAME_MAX bytes a component; the
data folder must be a folder; a broken link is not followed.

Everything later in the data flow (models/, analyses/, labels.sqlite, cache/) lives beside these
and records the workspace `fingerprint` it was computed from, so a changed corpus invalidates
only what depends on it. workspace.json records the size and modification time of the corpus
files it was written with; when they differ (a file replaced by hand) the fingerprint is computed
from the content, so nothing keyed on it can outlive the content.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import mmap
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from core import atomic
from core.constants import (
    ANALYSES_DIR,
    AUDIO_DIR,
    CACHE_DIR,
    EMBEDDINGS_NPY,
    LABELS_SQLITE,
    MODELS_DIR,
    NEW_CORPUS_DIR,
    SEGMENT_BASE_COLUMNS,
    SEGMENTS_PARQUET,
    WINDOW_SEGMENTS_NPY,
    WINDOWS_NPY,
    WORKSPACE_FORMAT_VERSION,
    WORKSPACE_JSON,
    data_root,
)
from core.errors import InputError, NotFoundError, VoxSAEError

logger = logging.getLogger(__name__)


NAME_MAX = 255
"""Longest folder name, in bytes, of the file systems a workspace lives on (ext4, xfs, tmpfs, APFS)."""
COLUMN_SUFFIX = " (column)"
"""Appended to a metadata column's name where a table or summary of its own uses that name
(`hours`, `segments`, the probe's `cosine`), so neither hides the other."""


def _shown_name(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57]) + "..."


def resolve_workspace_path(name_or_path: str | os.PathLike) -> Path:
    """A bare name means data/NAME; anything with a path separator (or existing) is a path."""
    text = str(name_or_path)
    if not text or text in {".", ".."}:
        raise InputError(f"workspace name {text!r} is not valid")
    if "\x00" in text:
        raise InputError(f"--workspace {_shown_name(text)}: a NUL byte cannot be part of a folder name")
    candidate = Path(text).expanduser()
    longest = max(len(os.fsencode(part)) for part in candidate.parts)
    if longest > NAME_MAX:
        raise InputError(
            f"--workspace {_shown_name(text)}: a folder name of {longest} bytes; at most {NAME_MAX} fit"
        )
    if os.sep in text or "/" in text or candidate.is_absolute():
        return _not_a_broken_link(candidate).resolve()
    root = data_root()
    if root.exists() and not root.is_dir():
        where = f"VOXSAE_DATA {root}" if os.environ.get("VOXSAE_DATA") else f"the data folder {root}"
        raise InputError(f"{where} is a file, not a folder of workspaces")
    return _not_a_broken_link(root / text)


def _not_a_broken_link(path: Path) -> Path:
    """`path`, unless it is a link to nothing: following it would create a folder wherever it leads."""
    if path.is_symlink() and not path.exists():
        raise InputError(
            f"--workspace {path}: a broken link (to {os.readlink(path)}); point it at a workspace or an "
            "empty folder, or remove it"
        )
    return path


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _dtype_problem(dtype: np.dtype) -> str | None:
    """Why an array of `dtype` cannot be embeddings (None when it can: int, uint or float)."""
    if dtype.fields is not None:
        return f"a structured array (fields {', '.join(dtype.names)}), not one number per dimension"
    if dtype.kind == "c":
        return f"complex numbers ({dtype}); the imaginary part would be lost: pass the real part explicitly"
    if dtype.kind not in "iuf":
        kinds = {
            "b": "booleans",
            "O": "Python objects",
            "U": "text",
            "S": "bytes",
            "M": "dates",
            "m": "durations",
        }
        return f"{kinds.get(dtype.kind, 'not numbers')} (dtype {dtype}), not real numbers"
    return None


CHECK_CHUNK_ROWS = 262_144
"""Rows checked or hashed at a time (192 MB of float32 at 192-d)."""


def row_chunks(arr: np.ndarray, rows: int | None = None):
    """Consecutive row slices of `arr`, `rows` (default CHECK_CHUNK_ROWS) at a time (views:
    nothing copied). Of a memory map, the pages a slice touched are released from this process
    once the caller is done with it (they stay in the page cache), so a pass over a 7.7 GB mapped
    file does not leave 7.7 GB in the process's resident memory."""
    rows = rows or CHECK_CHUNK_ROWS
    mapping = _shared_mapping(arr)
    for a in range(0, arr.shape[0], rows):
        yield arr[a : a + rows]
        if mapping is not None:
            mapping.madvise(mmap.MADV_DONTNEED)


def _shared_mapping(arr: np.ndarray):
    """The mmap under `arr` when it views a shared file mapping (np.memmap modes r, r+, w+), else
    None. A copy-on-write map (mode c) is never released: that would drop its private changes."""
    base = arr
    while base is not None:
        if isinstance(base, np.memmap):
            mapping = getattr(base, "_mmap", None)
            usable = mapping is not None and base.mode != "c" and hasattr(mmap, "MADV_DONTNEED")
            return mapping if usable else None
        base = getattr(base, "base", None)
    return None


def validate_embeddings(array: Any, where: str, dim: int | None = None) -> np.ndarray:
    """Return `array` as float32 [N, D] or raise InputError naming what is wrong (and the first bad row).

    Refused: anything but int/uint/float numbers (complex, bool, strings, objects, structured),
    other than 2-D, no rows or no dimensions, NaN/inf, and values float32 cannot hold.
    """
    arr = np.asarray(array)
    problem = _dtype_problem(arr.dtype)
    if problem:
        raise InputError(f"{where}: embeddings must be real numbers (int or float), got {problem}")
    if arr.ndim != 2:
        raise InputError(f"{where}: embeddings must be a 2-D array [N, dim], got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{where}: no embeddings (0 rows)")
    if arr.shape[1] == 0:
        raise InputError(
            f"{where}: embeddings have 0 dimensions (shape {arr.shape}); need [N, dim] with dim >= 1"
        )
    # row chunks: a memory-mapped 10M x 192 input is checked without a full-size temporary
    finite = np.concatenate([np.isfinite(part).all(axis=1) for part in row_chunks(arr)])
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(
            f"{where}: {bad.size} embedding row(s) contain NaN or inf (first bad row index {bad[0]})"
        )
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        too_big = np.concatenate([(np.abs(part) > FLOAT32_MAX).any(axis=1) for part in row_chunks(arr)])
        if too_big.any():
            bad = np.flatnonzero(too_big)
            largest = max(float(np.abs(part).max()) for part in row_chunks(arr))
            raise InputError(
                f"{where}: {bad.size} embedding row(s) hold values beyond float32's range "
                f"(|x| up to {largest:.3g}, float32 holds {FLOAT32_MAX:.3g}; "
                f"first bad row index {bad[0]})"
            )
    if dim is not None and arr.shape[1] != dim:
        raise InputError(f"{where}: embedding dim {arr.shape[1]} does not match the expected dim {dim}")
    return arr.astype(np.float32, copy=False)


def validate_segments(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check the segment table's base columns and id uniqueness; return a clean copy."""
    missing = [c for c in SEGMENT_BASE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{where}: segment table lacks column(s) {', '.join(missing)}")
    frame = frame.reset_index(drop=True).copy()
    frame["segment_id"] = frame["segment_id"].astype(str)
    dup = frame["segment_id"].duplicated(keep=False)
    if dup.any():
        first = frame.loc[dup, "segment_id"].iloc[0]
        raise InputError(f"{where}: duplicate segment_id {first!r} ({int(dup.sum())} rows share ids)")
    for col in ("start_s", "end_s", "duration_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["source"] = frame["source"].fillna("").astype(str)
    return frame


class Windows(NamedTuple):
    """A workspace's sub-segment window embeddings."""

    embeddings: np.ndarray
    """float32 [W, dim] (memory-mapped in an opened workspace)."""
    segment_rows: np.ndarray
    """int64 [W]: the segment row of each window, non-decreasing, each in 0 .. N-1."""


def validate_windows(
    embeddings: Any, segment_rows: Any, n_segments: int, dim: int, where: str, rows_where: str
) -> Windows:
    """`embeddings` and `segment_rows` as Windows, or InputError naming the file at fault
    (`where`: the embeddings, `rows_where`: the segment rows) and the first bad row: the
    embeddings as validate_embeddings with `dim`; the rows one integer per window, each a segment
    row, non-decreasing (a segment's windows together, in segment order)."""
    arr = validate_embeddings(embeddings, where, dim)
    return Windows(arr, validate_window_rows(segment_rows, len(arr), n_segments, where, rows_where))


def validate_window_rows(
    segment_rows: Any, n_windows: int, n_segments: int, where: str, rows_where: str
) -> np.ndarray:
    """`segment_rows` as int64 [n_windows] (validate_windows), or InputError naming `rows_where`."""
    rows = np.asarray(segment_rows)
    if rows.dtype.kind not in "iu" or rows.ndim != 1:
        raise InputError(
            f"{rows_where}: window segment rows must be a 1-D array of integers, got {rows.dtype} "
            f"of shape {rows.shape}"
        )
    if len(rows) != n_windows:
        raise InputError(
            f"{rows_where}: {len(rows)} window segment rows but {where} holds {n_windows} windows"
        )
    outside = np.flatnonzero((rows < 0) | (rows >= n_segments))
    if outside.size:
        raise InputError(
            f"{rows_where}: window {outside[0]} names segment row {rows[outside[0]]}, outside the "
            f"{n_segments} segment(s) (rows 0 .. {n_segments - 1})"
        )
    backwards = np.flatnonzero(np.diff(rows) < 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise InputError(
            f"{rows_where}: window segment rows are not sorted: window {i} names segment row "
            f"{rows[i]} after row {rows[i - 1]} (a segment's windows come together, in segment order)"
        )
    return rows.astype(np.int64, copy=False)


def fingerprint_of(segments: pd.DataFrame, embeddings: np.ndarray, windows: Windows | None = None) -> str:
    """Content hash of the corpus: what models and analyses record to detect staleness (the
    windows enter it when there are any; a corpus without them hashes as before they existed)."""
    digest = hashlib.sha256()
    # row chunks hash to the same digest as the whole array, without a full-size copy of a map
    for part in row_chunks(embeddings):
        digest.update(np.ascontiguousarray(part, dtype=np.float32).tobytes())
    if windows is not None and len(windows.segment_rows):
        digest.update(b"windows")
        digest.update(np.ascontiguousarray(windows.embeddings, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(windows.segment_rows, dtype=np.int64).tobytes())
    digest.update("\x00".join(segments["segment_id"].astype(str)).encode())
    meta_cols = sorted(c for c in segments.columns if c not in SEGMENT_BASE_COLUMNS)
    digest.update(
        pd.util.hash_pandas_object(segments[meta_cols].astype(str), index=False).values.tobytes()
        if meta_cols
        else b""
    )
    return digest.hexdigest()[:16]


# -- where a workspace may be written, and how its corpus is replaced ---------------------------
STAGING_NAME = NEW_CORPUS_DIR.lstrip(".")
"""Staging folders are atomic.staging_dir(root, STAGING_NAME): `.new-corpus.XXXX.tmp` in the root."""


def check_target(name_or_path: str | os.PathLike) -> Path:
    """The folder a command may build a workspace in, checked before any work is done.

    A new path, an empty folder or an existing VoxSAE workspace is fine; an existing folder with
    anything else in it (a user's own files, another tool's workspace.json) is refused with
    InputError, so nothing of the user's is ever replaced.
    """
    root = resolve_workspace_path(name_or_path)
    if root.exists() and not root.is_dir():
        raise InputError(f"--workspace {root}: a file, not a folder; choose a new or empty folder")
    if not root.is_dir():
        return root
    _finish_commit(root)
    if (root / WORKSPACE_JSON).is_file():
        try:
            _read_info(root / WORKSPACE_JSON)
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"--workspace {root}: its {WORKSPACE_JSON} is not a VoxSAE workspace file ({exc}); "
                "refusing to write into it: choose a new or empty folder"
            ) from None
        return root
    foreign = sorted(entry.name for entry in root.iterdir() if not _voxsae_leftover(entry))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(
            f"--workspace {root}: an existing folder that is not a VoxSAE workspace (no {WORKSPACE_JSON}; "
            f"it holds {shown}); refusing to write into it: choose a new or empty folder"
        )
    return root


def announce_replacement(root: Path, command: str) -> None:
    """One line on stderr when `command` is about to replace the corpus of the workspace at `root`."""
    if (root / WORKSPACE_JSON).is_file():
        print(
            f"{command}: replacing the corpus of workspace {root.name} ({root}); the old one stays until "
            "the new one is complete; models, analyses and labels are kept",
            file=sys.stderr,
        )


def _voxsae_leftover(entry: Path) -> bool:
    """What an interrupted build leaves in a folder that is not a workspace yet: a staging folder,
    or the per-file results an ingest had cached before it was stopped (cache/ingest/*.npz)."""
    if entry.name.startswith(f".{STAGING_NAME}") and entry.is_dir():
        return True
    if entry.name != CACHE_DIR or not entry.is_dir() or entry.is_symlink():
        return False
    ingest = entry / "ingest"  # core.workspace.ingest.INGEST_CACHE
    inside = list(entry.iterdir())
    if inside != [ingest] or not ingest.is_dir() or ingest.is_symlink():
        return not inside
    return all(f.is_file() and (f.suffix == ".npz" or f.name.startswith(".")) for f in ingest.iterdir())


@contextlib.contextmanager
def _writer_lock(root: Path) -> Iterator[None]:
    """Exclusive flock on the workspace folder: one writer (or a reader finishing a commit) at a time."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise atomic.write_failure(root, exc) from None
    try:
        with contextlib.suppress(OSError):  # a filesystem without flock (some network mounts): no lock
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pending_commit(commit: Path) -> bool:
    """Whether a committed corpus waits at `commit`; a link there is refused, never followed (it
    would move the files it leads to into the workspace)."""
    if commit.is_symlink():
        raise InputError(
            f"{commit}: a link (to {os.readlink(commit)}), not followed: a workspace's commit folder is "
            "a plain folder; remove the link"
        )
    return commit.is_dir()


def _finish_commit(root: Path) -> None:
    """Move a committed new corpus (root/NEW_CORPUS_DIR) into place, workspace.json last."""
    if _pending_commit(root / NEW_CORPUS_DIR):
        with _writer_lock(root):
            _move_commit_in(root)


def _move_commit_in(root: Path) -> None:
    """_finish_commit's work, with the writer lock held.

    Idempotent: a crash at any point leaves a state this finishes. A folder in place is first
    moved aside into the commit folder (a rename cannot replace a non-empty folder).
    """
    commit = root / NEW_CORPUS_DIR
    if not _pending_commit(commit):  # nothing committed, or another process finished it while we waited
        return
    aside = commit / ".old"
    try:
        names = sorted(p.name for p in commit.iterdir() if p.name not in (WORKSPACE_JSON, aside.name))
        for name in [*names, WORKSPACE_JSON]:
            new, target = commit / name, root / name
            if not new.exists():
                continue
            if new.is_dir() and (target.exists() or target.is_symlink()):
                aside.mkdir(exist_ok=True)
                os.replace(target, aside / name)
            os.replace(new, target)
        _drop_stale_windows(root)
        _fsync_dir(root)
        shutil.rmtree(commit)
    except OSError as exc:
        raise atomic.write_failure(root / WORKSPACE_JSON, exc) from None


def _drop_stale_windows(root: Path) -> None:
    """Remove the window files of an older corpus when the one now in place has none (a
    re-import without windows): workspace.json says so, and the files would only mislead."""
    try:
        n_windows = _read_info(root / WORKSPACE_JSON).n_windows
    except (OSError, ValueError, TypeError):  # opening the workspace reports what is wrong with it
        return
    if not n_windows:
        for name in WINDOW_FILES:
            (root / name).unlink(missing_ok=True)


def _write_staged(path: Path, target: Path, write) -> None:
    """write(path) then fsync it; an OSError names `target`, the file the user will see."""
    try:
        write(path)
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
    except OSError as exc:
        raise atomic.write_failure(target, exc) from None


def _save_npy(path: Path, array: np.ndarray) -> None:
    if _shared_mapping(array) is None or not array.flags.c_contiguous:
        with open(path, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        return
    # a memory map: the bytes np.save writes (its header, then the rows), copied in row chunks
    from numpy.lib import format as npy_format

    with open(path, "wb") as fh:
        npy_format.write_array_header_1_0(fh, npy_format.header_data_from_array_1_0(array))
        for part in row_chunks(array):
            fh.write(np.ascontiguousarray(part).tobytes())


def npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int] | None:
    """(shape, fortran_order, dtype, offset of the data) from a .npy file's header, without reading
    its data; None for a format version numpy has no public reader for. InputError when the file
    is not a .npy file or its header is damaged."""
    from numpy.lib import format as npy_format

    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    with open(path, "rb") as fh:
        magic = fh.read(len(npy_format.MAGIC_PREFIX))
        if magic != npy_format.MAGIC_PREFIX:
            what = (
                "a zip archive (.npz?)"
                if magic.startswith(b"PK")
                else "it does not start with the .npy header"
            )
            raise InputError(f"{path}: not a .npy file ({what}); save the array with numpy.save")
        fh.seek(0)
        try:
            version = npy_format.read_magic(fh)
            if version not in readers:
                return None
            shape, fortran, dtype = readers[version](fh)
        except ValueError as exc:
            raise InputError(f"{path}: not a readable .npy array (damaged header: {exc})") from None
        return shape, fortran, dtype, fh.tell()


CORPUS_FILES = (SEGMENTS_PARQUET, EMBEDDINGS_NPY)
WINDOW_FILES = (WINDOWS_NPY, WINDOW_SEGMENTS_NPY)
"""The corpus files of a workspace with windows, beside CORPUS_FILES."""


def corpus_files(n_windows: int | None) -> tuple[str, ...]:
    """The corpus files of a workspace with n_windows windows (None: made before windows existed)."""
    return CORPUS_FILES + (WINDOW_FILES if n_windows else ())


def _file_stamps(folder: Path, names: tuple[str, ...] = CORPUS_FILES) -> dict[str, list[int]]:
    """{corpus file: [size, mtime_ns]}: what workspace.json records to notice a file replaced later."""
    stamps = {}
    for name in names:
        st = (folder / name).stat()
        stamps[name] = [st.st_size, st.st_mtime_ns]
    return stamps


@dataclass(frozen=True)
class WorkspaceInfo:
    """What workspace.json holds."""

    name: str
    embedder: str
    """Name of the embedder that made the embeddings ('resemblyzer', 'titanet', 'imported', ...)."""
    dim: int
    """Embedding dimension (256 for resemblyzer, 192 for TitaNet)."""
    sample_rate: int
    """Rate the audio was resampled to before embedding (0 for imported embeddings)."""
    n_segments: int
    fingerprint: str
    """Content hash of embeddings + segment ids + metadata."""
    provenance: dict
    """Where the corpus came from: command, source folder, corpus seed, segmentation settings."""
    created: float
    format_version: int = WORKSPACE_FORMAT_VERSION
    files: dict | None = None
    """{corpus file: [size, mtime_ns]} as written (None in workspaces made before it was recorded)."""
    n_windows: int | None = None
    """Window embeddings in windows.npy (0: none stored; None: made before windows existed)."""

    def to_json(self) -> dict:
        return dict(self.__dict__)


_INFO_TYPES = {
    "name": (str, "text"),
    "embedder": (str, "text"),
    "dim": (int, "a whole number"),
    "sample_rate": (int, "a whole number"),
    "n_segments": (int, "a whole number"),
    "fingerprint": (str, "text"),
    "provenance": (dict, "a JSON object"),
    "created": ((int, float), "a number"),
    "format_version": (int, "a whole number"),
    "files": ((dict, type(None)), "a JSON object"),
    "n_windows": ((int, type(None)), "a whole number"),
}


def _read_info(meta: Path) -> WorkspaceInfo:
    """workspace.json as WorkspaceInfo; ValueError or TypeError when it is not one of ours, or
    holds a value of the wrong type or range, or a format newer than this code reads."""
    raw = json.loads(meta.read_text())
    if not isinstance(raw, dict):
        raise TypeError(f"a JSON {type(raw).__name__}, not an object")
    info = WorkspaceInfo(**raw)
    for key, (kind, what) in _INFO_TYPES.items():
        value = getattr(info, key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"{key} {value!r} is not {what}")
    for key in ("dim", "n_segments"):
        if getattr(info, key) < 1:
            raise ValueError(f"{key} {getattr(info, key)} is not positive")
    if info.n_windows is not None and info.n_windows < 0:
        raise ValueError(f"n_windows {info.n_windows} is negative")
    if info.format_version > WORKSPACE_FORMAT_VERSION:
        raise ValueError(
            f"format {info.format_version}, written by a newer VoxSAE; this VoxSAE reads format "
            f"{WORKSPACE_FORMAT_VERSION}"
        )
    return info


def read_info(root: str | os.PathLike) -> WorkspaceInfo | None:
    """The checked workspace.json of the workspace at `root` (None when there is none), without
    opening its corpus files: what a command replacing a damaged corpus needs to know."""
    root = Path(root)
    _finish_commit(root)
    meta = root / WORKSPACE_JSON
    if not meta.is_file():
        return None
    try:
        return _read_info(meta)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{meta}: not a VoxSAE workspace file ({exc})") from None


SUMMARY_FIELDS = ("name", "embedder", "dim", "segments", "hours", "speakers")
"""The figures of Workspace.summary() beside the attribute counts."""


class Workspace:
    """An opened workspace. Embeddings are memory-mapped; the segment table is loaded once."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        info = read_info(self.root)
        if info is None:
            raise NotFoundError(
                f"workspace {self.root} does not exist (no {WORKSPACE_JSON}); "
                "build one with `python -m core ingest` or `python -m core demo-corpus`"
            )
        self.info = info
        self._check_segments()
        self._check_embeddings()
        if self.info.n_windows:
            self._check_windows()

    def _missing(self, name: str) -> InputError:
        return InputError(
            f"workspace {self.name} is incomplete: {name} is missing ({self.root / name}); "
            "rebuild it with `python -m core ingest` or `import-embeddings`"
        )

    def _check_segments(self) -> None:
        """segments.parquet is there, readable, with n_segments rows and the base columns (its footer only)."""
        import pyarrow.parquet as pq

        path = self.root / SEGMENTS_PARQUET
        if not path.is_file():
            raise self._missing(SEGMENTS_PARQUET)
        try:
            footer = pq.ParquetFile(path)
            rows, columns = footer.metadata.num_rows, set(footer.schema_arrow.names)
        except Exception as exc:  # pyarrow's errors for a damaged file: ArrowInvalid, OSError, ...
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
        missing = [c for c in SEGMENT_BASE_COLUMNS if c not in columns]
        if missing:
            raise InputError(f"{path}: lacks column(s) {', '.join(missing)} of a segment table")
        if rows != self.info.n_segments:
            raise InputError(f"{path}: {rows} rows, but workspace.json says {self.info.n_segments} segments")

    def _check_embeddings(self) -> None:
        """embeddings.npy is a .npy of native float32 [n_segments, dim] (its header only)."""
        self._check_npy(EMBEDDINGS_NPY, np.float32, (self.info.n_segments, self.info.dim), "embeddings")

    def _check_npy(self, name: str, dtype: type, expected: tuple[int, ...], what: str) -> None:
        """Corpus file `name` is a .npy of native `dtype` of shape `expected` (its header only)."""
        path = self.root / name
        if not path.is_file():
            raise self._missing(name)
        header = npy_header(path)
        if header is None:
            raise InputError(f"{path}: a .npy format version this VoxSAE does not read")
        shape, _, held, _ = header
        if held.hasobject:
            raise InputError(f"{path}: holds pickled Python objects, which are never loaded")
        if held != np.dtype(dtype):
            raise InputError(
                f"{path}: holds {held.str} values; a workspace's {what} are {np.dtype(dtype).name} in this "
                f"machine's byte order ({np.dtype(dtype).str}): rebuild it with `import-embeddings`"
            )
        if tuple(shape) != expected:
            raise InputError(f"{path}: shape {tuple(shape)}, but workspace.json says {expected}")

    def _check_windows(self) -> None:
        """windows.npy and window_segments.npy hold n_windows rows, aligned with the segments."""
        n = self.info.n_windows
        self._check_npy(WINDOWS_NPY, np.float32, (n, self.info.dim), "window embeddings")
        self._check_npy(WINDOW_SEGMENTS_NPY, np.int64, (n,), "window segment rows")
        rows = np.load(self.root / WINDOW_SEGMENTS_NPY, mmap_mode="r", allow_pickle=False)
        where = str(self.root / WINDOWS_NPY)
        validate_window_rows(rows, n, self.info.n_segments, where, str(self.root / WINDOW_SEGMENTS_NPY))

    # -- construction -------------------------------------------------------------------
    @classmethod
    def open(cls, name_or_path: str | os.PathLike) -> Workspace:
        return cls(resolve_workspace_path(name_or_path))

    @classmethod
    def of(cls, ws: Workspace | str | os.PathLike) -> Workspace:
        """`ws` itself when it is an opened Workspace, else the workspace it names."""
        return ws if isinstance(ws, Workspace) else cls.open(ws)

    @classmethod
    def exists(cls, name_or_path: str | os.PathLike) -> bool:
        root = resolve_workspace_path(name_or_path)
        _finish_commit(root)
        return (root / WORKSPACE_JSON).is_file()

    @classmethod
    def create(
        cls,
        name_or_path: str | os.PathLike,
        segments: pd.DataFrame,
        embeddings: np.ndarray,
        *,
        embedder: str,
        sample_rate: int,
        provenance: dict | None = None,
        extra_files: dict[str, Path] | None = None,
        windows: Windows | None = None,
    ) -> Workspace:
        """Write a workspace; an existing one has its corpus files replaced, everything else kept.

        The new files are staged inside the folder and committed with one rename, then moved into
        place with workspace.json last (module docstring), so a failure or a crash at any moment
        leaves the old complete workspace or the new one. `extra_files` maps a relative name in
        the workspace to a file or folder to move in. An existing folder that is not a workspace
        is refused (check_target). `windows` (optional: window embeddings and the segment row
        of each) are checked against the segments (validate_windows) and written with them.
        `embeddings` may be a read-only memory map (np.lib.format.open_memmap, np.load with
        mmap_mode): float32 is checked, hashed and written in row chunks, never copied whole.
        """
        root = check_target(name_or_path)
        where = str(root)
        segments = validate_segments(segments, where)
        embeddings = validate_embeddings(embeddings, where)
        if len(segments) != embeddings.shape[0]:
            raise InputError(f"{where}: {len(segments)} segments but {embeddings.shape[0]} embedding rows")
        if windows is not None:
            windows = validate_windows(
                *windows,
                len(segments),
                embeddings.shape[1],
                f"{where} windows",
                f"{where} window segment rows",
            )
            if not len(windows.segment_rows):
                windows = None
        info = WorkspaceInfo(
            name=root.name,
            embedder=embedder,
            dim=int(embeddings.shape[1]),
            sample_rate=int(sample_rate),
            n_segments=len(segments),
            fingerprint=fingerprint_of(segments, embeddings, windows),
            provenance=provenance or {},
            created=time.time(),
            n_windows=len(windows.segment_rows) if windows is not None else 0,
        )
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise atomic.write_failure(root, exc) from None
        with _writer_lock(root):
            _move_commit_in(root)  # committed by a writer that ran while this one waited for the lock
            for stale in root.glob(f".{STAGING_NAME}.*"):  # staged by a writer that was killed
                shutil.rmtree(stale, ignore_errors=True)
            staging = atomic.staging_dir(root, STAGING_NAME)
            try:
                _write_staged(
                    staging / SEGMENTS_PARQUET,
                    root / SEGMENTS_PARQUET,
                    lambda path: segments.to_parquet(path, index=False),
                )
                _write_staged(
                    staging / EMBEDDINGS_NPY, root / EMBEDDINGS_NPY, lambda path: _save_npy(path, embeddings)
                )
                for name, array in zip(WINDOW_FILES, windows, strict=True) if windows is not None else ():
                    _write_staged(staging / name, root / name, functools.partial(_save_npy, array=array))
                for rel, src in (extra_files or {}).items():
                    try:
                        shutil.move(str(src), staging / rel)
                    except OSError as exc:
                        raise atomic.write_failure(root / rel, exc) from None
                stamps = _file_stamps(staging, corpus_files(info.n_windows))
                text = json.dumps(replace(info, files=stamps).to_json(), indent=2) + "\n"
                _write_staged(
                    staging / WORKSPACE_JSON, root / WORKSPACE_JSON, lambda path: path.write_text(text)
                )
                try:  # the commit: from here on, the new corpus is the workspace
                    _fsync_dir(staging)
                    os.rename(staging, root / NEW_CORPUS_DIR)
                except OSError as exc:
                    raise atomic.write_failure(root / WORKSPACE_JSON, exc) from None
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        _finish_commit(root)
        return cls(root)

    # -- contents -----------------------------------------------------------------------
    name = property(lambda self: self.root.name)
    dim = property(lambda self: self.info.dim)
    embedder = property(lambda self: self.info.embedder)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Content hash of embeddings + segment ids + metadata: WorkspaceInfo.fingerprint while the
        corpus files are the ones workspace.json was written with, else computed from their content."""
        if self.info.files is not None and _file_stamps(self.root, self._corpus_files) == self.info.files:
            return self.info.fingerprint
        actual = fingerprint_of(self.segments, self.embeddings, self.windows)
        if actual != self.info.fingerprint:
            logger.warning(
                "workspace %s: its corpus files changed after workspace.json was written "
                "(fingerprint %s, recorded %s): results of the old corpus are not used",
                self.name,
                actual,
                self.info.fingerprint,
            )
        return actual

    def __len__(self) -> int:
        return self.info.n_segments

    @functools.cached_property
    def segments(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / SEGMENTS_PARQUET)

    @functools.cached_property
    def embeddings(self) -> np.ndarray:
        """float32 [N, dim], memory-mapped read-only (shape and dtype checked on open)."""
        return np.load(self.root / EMBEDDINGS_NPY, mmap_mode="r", allow_pickle=False)

    @functools.cached_property
    def windows(self) -> Windows | None:
        """The sub-segment window embeddings (memory-mapped, checked on open), or None when the
        corpus has none (imported without them, or made before windows were stored)."""
        if not self.info.n_windows:
            return None
        load = functools.partial(np.load, mmap_mode="r", allow_pickle=False)
        return Windows(load(self.root / WINDOWS_NPY), load(self.root / WINDOW_SEGMENTS_NPY))

    _corpus_files = property(lambda self: corpus_files(self.info.n_windows))

    def attributes(self) -> list[str]:
        """Metadata columns (everything beyond the base segment columns)."""
        return [c for c in self.segments.columns if c not in SEGMENT_BASE_COLUMNS]

    def continuous_attributes(self) -> list[str]:
        """Metadata columns that hold numbers (int or float, not bool): the measured attributes
        (core.constants.MEASURED_ATTRIBUTES), synthesis parameters, and any numeric column an
        import brought. They are the attributes `continuous` correlates latents with."""
        seg = self.segments
        return [
            c
            for c in self.attributes()
            if pd.api.types.is_numeric_dtype(seg[c]) and not pd.api.types.is_bool_dtype(seg[c])
        ]

    def attribute_values(self, attribute: str) -> list[str]:
        if attribute not in self.segments.columns:
            raise NotFoundError(
                f"workspace {self.name}: no attribute {attribute!r} "
                f"(attributes: {', '.join(self.attributes()) or 'none'})"
            )
        # the distinct values first, then their text: one Python object per value, not per row
        distinct = self.segments[attribute].dropna().unique()
        return sorted({str(v) for v in distinct} - {""})

    # -- neighbours in the data flow ------------------------------------------------------
    # where each later layer keeps its files (names in core.constants)
    models_dir = property(lambda self: self.root / MODELS_DIR)
    analyses_dir = property(lambda self: self.root / ANALYSES_DIR)
    cache_dir = property(lambda self: self.root / CACHE_DIR)
    audio_dir = property(lambda self: self.root / AUDIO_DIR)
    labels_path = property(lambda self: self.root / LABELS_SQLITE)

    def source_path(self, source: str) -> Path | None:
        """Absolute, resolved path of a segment's source audio, or None when it is not there.

        Relative sources resolve against provenance['audio_root'] (the ingested folder) or the
        workspace's own audio/ folder; only sources listed in the segment table are served. A
        source that resolves (symlinks included) outside both folders, e.g. `../x.wav` or an
        absolute path elsewhere, is refused (InputError, logged) and never opened.
        """
        if not source:
            return None
        base = self.root / (self.info.provenance.get("audio_root") or AUDIO_DIR)
        shown = source if len(source) <= 200 else source[:197] + "..."
        try:
            path = (base / source).resolve()  # an absolute source replaces base
            roots = [r.resolve() for r in dict.fromkeys([base, self.audio_dir])]
            inside = any(path.is_relative_to(r) for r in roots)
            found = inside and path.is_file()
        except (OSError, ValueError, RuntimeError) as exc:  # NUL byte, symlink loop, name too long
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            logger.warning("workspace %s: refused source %r (%s)", self.name, shown, why)
            raise InputError(
                f"workspace {self.name}: source {shown!r} is not a usable path ({why})"
            ) from None
        if not inside:
            logger.warning("workspace %s: refused source %r (resolves to %s)", self.name, shown, path)
            raise InputError(
                f"workspace {self.name}: source {shown!r} is outside the workspace's audio folder "
                f"({', '.join(map(str, roots))}); not read"
            )
        return path if found else None

    def summary(self) -> dict:
        """name, embedder, dim, segments, hours, speakers, and value -> count of each categorical
        attribute of at most 20 values (keyed `NAME (column)` where NAME is one of those fields);
        continuous attributes (numbers: a measured F0 is no category) are not counted."""
        seg = self.segments
        out: dict[str, Any] = {
            "name": self.name,
            "embedder": self.embedder,
            "dim": self.dim,
            "segments": len(seg),
            "hours": float(seg["duration_s"].fillna(0).sum() / 3600.0),
        }
        continuous = set(self.continuous_attributes())
        for col in self.attributes():
            if col in continuous:
                continue
            values = seg[col].dropna().astype(str)
            if col == "speaker":
                out["speakers"] = int(values[values != ""].nunique())
            elif values.nunique() <= 20:  # a column named like a figure above never replaces it
                key = col + COLUMN_SUFFIX if col in SUMMARY_FIELDS else col
                out[key] = {k: int(v) for k, v in values.value_counts().sort_index().items()}
        return out


def open_distinct(ws: Workspace, names, flag: str, *, itself: str, listed: str, once: str) -> list[Workspace]:
    """The workspaces `names` (the values of `flag`, e.g. '--pool'), opened, each refused with one
    error naming `flag NAME` when it is missing or broken, or is `ws` itself (`itself` says what
    that is) or one listed before (by name or by path: `listed`, formatted with the earlier
    name, says as what); `once` ends that refusal with the advice."""
    out: list[Workspace] = []
    seen = {ws.root.resolve(): itself}
    for name in names:
        try:
            other = Workspace.open(name)
        except VoxSAEError as exc:
            raise type(exc)(f"{flag} {name}: {exc}") from None
        root = other.root.resolve()
        if root in seen:
            raise InputError(f"{flag} {name}: {root} is already {seen[root]}; {once}")
        seen[root] = listed.format(name=name)
        out.append(other)
    return out
