"""SHA-256 of big files, hashed once and remembered while the file is provably the one hashed.

    from core import filehash
    filehash.file_sha256(path)                        # hashed now, 8 MB blocks
    filehash.remembered_sha256(path, ws.cache_dir / filehash.MEMO_JSON)   # hashed when unknown

Why: a dashboard server checks what it maps against the SHA-256 stored beside it (the 1.9 GB
nearest-segment index at 10M x 192 takes 1.8 s to hash, segments.parquet 0.1 s), and did so at
every server start. The memo (a small JSON, written atomically) remembers each digest with the
file's (device, inode, size, mtime_ns, ctime_ns) and is used only while the file still has all
five: a file replaced by a rename has another inode; one rewritten in place, truncated or
extended has another size or times, and its ctime cannot be set back by a user (utime() itself
moves it), so a digest never outlives the bytes it was computed from. Not remembered: a file
changed within RACY_NS of the hash (a rewrite in the same timestamp tick would keep every field)
or while it was being hashed. The memo is never read through a link (a link is replaced by the
file when written). Whoever can write the memo could also write the descriptions that name the
expected digests beside the files, so it trusts no one the descriptions did not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path

from core import atomic
from core.errors import VoxSAEError

MEMO_JSON = "sha256-memo.json"
"""The memo's name in a workspace's cache folder."""
RACY_NS = 2_000_000_000
"""A file whose mtime or ctime is this recent when it is hashed is not remembered."""
_LOCK = threading.Lock()  # one server's sessions update the memo one at a time


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 8 MB blocks (not held in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stat_key(path: str | os.PathLike) -> dict:
    """What identifies the bytes of `path` without reading them (OSError when it is gone)."""
    st = os.stat(path)
    return {
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def _read_memo(memo: Path) -> dict:
    # never read through a link (it could point out of the workspace; O_NOFOLLOW, so not swapped in
    # after a check either) nor from a FIFO or a device (its open or read would wait for a writer)
    try:
        fd = os.open(memo, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return {}
            files = json.loads(fh.read()).get("files")
    except (OSError, ValueError, AttributeError, RecursionError):  # RecursionError: nested too deep
        return {}
    return files if isinstance(files, dict) else {}


def _still_true(name: str, entry) -> bool:
    if not isinstance(entry, dict):
        return False
    try:
        return {k: entry.get(k) for k in ("dev", "ino", "size", "mtime_ns", "ctime_ns")} == stat_key(name)
    except (OSError, ValueError):  # ValueError: a name no path can have (a NUL, a lone surrogate)
        return False


def remembered_sha256(path: str | os.PathLike, memo: str | os.PathLike) -> str:
    """SHA-256 (hex) of `path`: the one remembered in `memo` while the file's identity (stat_key)
    is the one it was hashed with, else hashed now and remembered (unless too fresh, or changed
    while hashed). A memo that cannot be read is ignored; one that cannot be written (a read-only
    workspace, no cache folder: none is made for it) is left, and the file hashed next time."""
    name, memo = str(Path(path).absolute()), Path(memo)
    before = stat_key(name)
    entry = _read_memo(memo).get(name)
    if isinstance(entry, dict) and {k: entry.get(k) for k in before} == before:
        sha = entry.get("sha256")
        if isinstance(sha, str) and len(sha) == 64:
            return sha
    sha = file_sha256(name)
    fresh = time.time_ns() - max(before["mtime_ns"], before["ctime_ns"]) < RACY_NS
    if fresh or stat_key(name) != before or not memo.parent.is_dir():
        return sha
    with _LOCK:
        files = {k: v for k, v in _read_memo(memo).items() if k != name and _still_true(k, v)}
        files[name] = {**before, "sha256": sha}
        with contextlib.suppress(VoxSAEError, OSError):  # read-only: hashed again next time
            atomic.write_json(memo, {"files": files})
    return sha
