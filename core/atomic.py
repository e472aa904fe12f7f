"""Crash-safe writes: write to a temporary file in the same folder, fsync, then rename.

A reader never sees a half-written file; a crash leaves either the old file or the new one.
A write that fails (disk full, read-only folder, no permission) raises WriteError naming the
file the user asked for, not the temporary one, and leaves the old file untouched.

Files and staging folders get the modes a plain open()/mkdir() would give them under the user's
umask (tempfile makes them 0600/0700, which would hide them from a second analyst on a shared
server).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import VoxSAEError


class WriteError(VoxSAEError):
    """A file or folder could not be written (disk full, read-only, permission): says which."""


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_failure(path: str | os.PathLike, exc: OSError) -> WriteError:
    """One WriteError for an OSError met while writing `path`."""
    why = exc.strerror or str(exc) or type(exc).__name__
    return WriteError(f"cannot write {path}: {why}")


def staging_dir(parent: str | os.PathLike, name: str, suffix: str = ".tmp") -> Path:
    """A fresh hidden folder in `parent` to build `name` in before renaming it into place,
    with the mode mkdir() would give it."""
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=suffix, dir=parent))
        os.chmod(staging, 0o777 & ~current_umask())
    except OSError as exc:
        raise write_failure(parent / name, exc) from None
    return staging


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on clean exit it replaces `path` atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_failure(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~current_umask())
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise write_failure(path, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_npy(path: str | os.PathLike, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def write_parquet(path: str | os.PathLike, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
