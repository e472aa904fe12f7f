"""core.filehash: a big file's SHA-256 remembered while the file is provably the one hashed."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest

from core import filehash


@pytest.fixture
def settled(monkeypatch):
    """Files written by the test count as settled (not within RACY_NS of their hash)."""
    monkeypatch.setattr(filehash, "RACY_NS", 0)


@pytest.fixture
def counted(monkeypatch):
    """The paths core.filehash actually read and hashed."""
    read = []
    real = filehash.file_sha256

    def spy(path):
        read.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(filehash, "file_sha256", spy)
    return read


def _tick() -> None:
    time.sleep(0.03)  # past the file system's timestamp granularity


def test_a_digest_is_hashed_once_then_remembered(tmp_path, settled, counted):
    data = tmp_path / "big.bin"
    data.write_bytes(b"x" * 100_000)
    memo = tmp_path / "cache" / filehash.MEMO_JSON
    memo.parent.mkdir()
    want = hashlib.sha256(b"x" * 100_000).hexdigest()
    assert filehash.remembered_sha256(data, memo) == want
    assert filehash.remembered_sha256(data, memo) == want  # a second server start
    assert counted == ["big.bin"]
    entry = json.loads(memo.read_text())["files"][str(data)]
    assert entry == {**filehash.stat_key(data), "sha256": want}


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.write_bytes(b"y" * 100_000),  # rewritten in place, same size
        lambda p: p.write_bytes(b"x" * 99_999),  # truncated
        lambda p: (p.unlink(), p.write_bytes(b"z" * 100_000)),  # replaced by another file
    ],
    ids=["same-size", "truncated", "replaced"],
)
def test_a_changed_file_is_hashed_again(tmp_path, settled, counted, change):
    data = tmp_path / "big.bin"
    data.write_bytes(b"x" * 100_000)
    memo = tmp_path / filehash.MEMO_JSON
    filehash.remembered_sha256(data, memo)
    st = os.stat(data)
    _tick()
    change(data)
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # a hostile edit puts the mtime back
    assert filehash.remembered_sha256(data, memo) == hashlib.sha256(data.read_bytes()).hexdigest()
    assert counted == ["big.bin", "big.bin"]


def test_a_fresh_file_is_not_remembered(tmp_path, counted):
    data = tmp_path / "new.bin"
    data.write_bytes(b"abc")  # within RACY_NS: a rewrite in the same tick would keep its stat
    memo = tmp_path / filehash.MEMO_JSON
    assert filehash.remembered_sha256(data, memo) == hashlib.sha256(b"abc").hexdigest()
    assert not memo.exists()
    filehash.remembered_sha256(data, memo)
    assert counted == ["new.bin", "new.bin"]


def test_a_memo_that_is_a_link_is_not_read_and_its_target_not_written(tmp_path, settled, counted):
    data = tmp_path / "ws" / "big.bin"
    data.parent.mkdir()
    data.write_bytes(b"x" * 1000)
    outside = tmp_path / "outside.json"
    forged = {"files": {str(data): {**filehash.stat_key(data), "sha256": "0" * 64}}}
    outside.write_text(json.dumps(forged))
    memo = data.parent / filehash.MEMO_JSON
    memo.symlink_to(outside)
    assert filehash.remembered_sha256(data, memo) == hashlib.sha256(b"x" * 1000).hexdigest()
    assert counted == ["big.bin"]
    assert json.loads(outside.read_text()) == forged  # the link's target is left as it was
    assert not memo.is_symlink() and str(data) in json.loads(memo.read_text())["files"]


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '{"files": 3}',
        '{"files": {"x": 1}}',
        "\udcff",
        "[" * 100_000 + "]" * 100_000,  # json.loads raises RecursionError, not ValueError
        '{"files": {"/a\\u0000b": {"dev": 1}}}',  # a name os.stat refuses (ValueError)
        '{"files": {"/a\\ud800": {"dev": 1}}}',  # a name no file system encodes
    ],
    ids=["cut", "list", "number", "entry", "undecodable", "deep", "nul-name", "surrogate-name"],
)
def test_an_unreadable_memo_is_ignored_and_rewritten(tmp_path, settled, text):
    data = tmp_path / "big.bin"
    data.write_bytes(b"q" * 10)
    memo = tmp_path / filehash.MEMO_JSON
    memo.write_text(text, errors="surrogateescape")
    assert filehash.remembered_sha256(data, memo) == hashlib.sha256(b"q" * 10).hexdigest()
    assert json.loads(memo.read_text())["files"][str(data)]["sha256"] == hashlib.sha256(b"q" * 10).hexdigest()


def test_entries_of_files_gone_or_changed_are_dropped(tmp_path, settled):
    memo = tmp_path / filehash.MEMO_JSON
    a, b, c = (tmp_path / n for n in ("a.bin", "b.bin", "c.bin"))
    for p in (a, b, c):
        p.write_bytes(p.name.encode())
        filehash.remembered_sha256(p, memo)
    a.unlink()
    _tick()
    b.write_bytes(b"other")
    d = tmp_path / "d.bin"
    d.write_bytes(b"d")
    filehash.remembered_sha256(d, memo)
    assert sorted(json.loads(memo.read_text())["files"]) == [str(c), str(d)]


def test_without_a_cache_folder_nothing_is_written(tmp_path, settled):
    data = tmp_path / "big.bin"
    data.write_bytes(b"x")
    memo = tmp_path / "cache" / filehash.MEMO_JSON
    assert filehash.remembered_sha256(data, memo) == hashlib.sha256(b"x").hexdigest()
    assert not memo.parent.exists()


def test_a_memo_that_is_a_fifo_is_not_read(tmp_path, settled):
    """A second process that puts a named pipe where the memo goes does not hang the server (a
    plain open() of a FIFO waits for a writer, forever)."""
    data = tmp_path / "big.bin"
    data.write_bytes(b"x" * 1000)
    memo = tmp_path / filehash.MEMO_JSON
    os.mkfifo(memo)
    got = []
    worker = threading.Thread(target=lambda: got.append(filehash.remembered_sha256(data, memo)), daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # blocked in open(): a writer lets it go on before the test fails
        os.close(os.open(memo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
        pytest.fail("remembered_sha256 blocked reading a FIFO memo")
    assert got == [hashlib.sha256(b"x" * 1000).hexdigest()]
