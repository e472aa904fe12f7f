"""core.dashboard.nearest_index: the faiss index of nearest segments against brute force, its
row threshold, the excluded row, staleness (embeddings replaced) and corrupt index files."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from core.dashboard import nearest_index as ni
from core.dashboard.cache import nearest_index_line
from core.workspace.workspace import Workspace

N, D = 3000, 24
FORCED = ni.IndexSettings(min_rows=0, lists=8)
"""An index on a small workspace: 8 lists, all of them scanned (nprobe 16), so the candidates are
the quantised codes' best and the exact re-rank must give brute force's top-k."""


def clustered(n: int, seed: int) -> np.ndarray:
    """Speaker-like rows: 60 centres, rows around them (not uniform noise: the index's lists mean
    something)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((60, D))
    return (centres[rng.integers(0, 60, n)] + 0.6 * rng.standard_normal((n, D))).astype(np.float32)


def exact(x: np.ndarray, q: np.ndarray, k: int, exclude: int | None = None):
    cos = (x.astype(np.float64) @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    if exclude is not None:
        cos[exclude] = -np.inf
    order = np.lexsort((np.arange(len(x)), -cos))[:k]
    return order, cos[order]


@pytest.fixture
def ws(tmp_path, make_workspace):
    return make_workspace(tmp_path / "ws", clustered(N, 0))


@pytest.fixture
def no_brute_force(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("brute force used where the index should answer")

    monkeypatch.setattr(ni, "brute_force_rows", refuse)


def test_forced_index_gives_brute_force_top_k(ws, no_brute_force):
    built = ni.ensure_index(ws, FORCED)
    assert built.built and built.rows == N and built.lists == 8 and built.path.is_file()
    assert json.loads(ni.meta_path(built.path).read_text())["fingerprint"] == ws.fingerprint
    x = np.asarray(ws.embeddings)
    queries = clustered(20, 1)  # new rows of the same centres: a probed clip
    for q in queries:
        rows, cos = ni.nearest_rows(ws, q, 10, settings=FORCED)
        want_rows, want_cos = exact(x, q, 10)
        assert list(rows) == list(want_rows)
        assert np.allclose(cos, want_cos, atol=1e-5)


def test_the_excluded_row_is_never_among_them(ws, no_brute_force):
    ni.ensure_index(ws, FORCED)
    x = np.asarray(ws.embeddings)
    rows, cos = ni.nearest_rows(ws, x[17], 5, exclude_row=17, settings=FORCED)
    want_rows, want_cos = exact(x, x[17], 5, exclude=17)
    assert 17 not in rows and list(rows) == list(want_rows) and np.allclose(cos, want_cos, atol=1e-5)
    with_itself, _ = ni.nearest_rows(ws, x[17], 5, settings=FORCED)
    assert with_itself[0] == 17 and list(with_itself[1:]) == list(want_rows[:4])


def test_a_loaded_index_answers_from_a_fresh_process_view(ws, no_brute_force):
    built = ni.ensure_index(ws, FORCED)
    reopened = Workspace.open(ws.root)  # nothing cached on this object: read from disk
    assert ni.load_index(reopened, FORCED).ntotal == N
    again = ni.ensure_index(reopened, FORCED)
    assert not again.built and again.path == built.path  # stored and fresh: not rebuilt


def test_small_workspaces_keep_brute_force(ws):
    assert not ni.uses_index(ws) and ni.DEFAULT_SETTINGS.min_rows == ni.MIN_INDEX_ROWS > N
    assert ni.ensure_index(ws) is None
    assert not list(ws.cache_dir.glob("nn-*"))
    x = np.asarray(ws.embeddings)
    rows, cos = ni.nearest_rows(ws, x[3] + 0.1, 4, exclude_row=5)
    want_rows, want_cos = exact(x, x[3] + 0.1, 4, exclude=5)
    assert list(rows) == list(want_rows) and np.allclose(cos, want_cos, atol=1e-5)
    assert (
        nearest_index_line(ws) == f"nearest segments: brute force ({N:,} rows, under {ni.MIN_INDEX_ROWS:,})"
    )


def test_replaced_embeddings_never_use_the_old_index(ws, make_workspace, caplog):
    old = ni.ensure_index(ws, FORCED).path
    new_x = clustered(N, 7)
    replaced = make_workspace(ws.root, new_x)  # same folder, new corpus files
    assert replaced.fingerprint != ws.fingerprint and ni.index_path(replaced, FORCED) != old
    with caplog.at_level(logging.WARNING, logger=ni.__name__):
        rows, _ = ni.nearest_rows(replaced, new_x[0], 5, settings=FORCED)
    assert list(rows) == list(exact(new_x, new_x[0], 5)[0])  # brute force on the new rows
    assert "no nearest-segment index" in caplog.text
    # the old index copied under the new name is refused: its description names other embeddings
    shutil.copy(old, ni.index_path(replaced, FORCED))
    shutil.copy(ni.meta_path(old), ni.meta_path(ni.index_path(replaced, FORCED)))
    with caplog.at_level(logging.WARNING, logger=ni.__name__):
        assert ni.load_index(Workspace.open(ws.root), FORCED) is None
    assert "describes other embeddings" in caplog.text
    rebuilt = ni.ensure_index(Workspace.open(ws.root), FORCED)
    assert (
        rebuilt.built
        and not old.exists()
        and sorted(p.name for p in ws.cache_dir.glob("nn-*"))
        == sorted([rebuilt.path.name, ni.meta_path(rebuilt.path).name])
    )
    rows, _ = ni.nearest_rows(Workspace.open(ws.root), new_x[0], 5, settings=FORCED)
    assert list(rows) == list(exact(new_x, new_x[0], 5)[0])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _garbage_with_its_digest(path):
    import hashlib

    path.write_bytes(b"not a faiss index" * 10)
    meta = ni.meta_path(path)
    m = json.loads(meta.read_text())
    meta.write_text(json.dumps({**m, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_flip_a_byte, "bytes are not the ones stored"),
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), "bytes are not the ones stored"),
        (lambda p: ni.meta_path(p).write_text("{"), "is unreadable"),
        (lambda p: ni.meta_path(p).unlink(), "is unreadable"),
        (_garbage_with_its_digest, "faiss cannot read it"),
    ],
    ids=["flipped-byte", "truncated", "bad-json", "no-json", "not-faiss"],
)
def test_a_corrupt_index_is_never_trusted_and_is_rebuilt(ws, damage, why, caplog, capsys):
    path = ni.ensure_index(ws, FORCED).path
    damage(path)
    fresh = Workspace.open(ws.root)
    x = np.asarray(ws.embeddings)
    with caplog.at_level(logging.WARNING, logger=ni.__name__):
        rows, cos = ni.nearest_rows(fresh, x[9], 6, exclude_row=9, settings=FORCED)
        ni.nearest_rows(fresh, x[9], 6, settings=FORCED)  # said once per opened workspace
    want_rows, want_cos = exact(x, x[9], 6, exclude=9)
    assert list(rows) == list(want_rows) and np.allclose(cos, want_cos, atol=1e-5)  # brute force
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and why in warnings[0], warnings
    assert capsys.readouterr().err.count("warning: ") == 1
    rebuilt = ni.ensure_index(fresh, FORCED)
    assert rebuilt.built and rebuilt.path == path
    assert ni.load_index(Workspace.open(ws.root), FORCED).ntotal == N


def test_dashboard_cache_builds_the_index_over_the_threshold(ws, monkeypatch, no_brute_force):
    monkeypatch.setattr(ni, "DEFAULT_SETTINGS", ni.IndexSettings(min_rows=1000, lists=8))
    line = nearest_index_line(ws)
    path = ni.index_path(ws)
    assert line == f"nearest-segment index ({N:,} rows, 8 lists): {path}" and path.is_file()
    from core.dashboard import probe

    x = np.asarray(ws.embeddings)
    rows, _ = probe.nearest_rows(ws, x[4], 3, exclude_row=4)  # the probe page's call takes the index
    assert list(rows) == list(exact(x, x[4], 3, exclude=4)[0])


def test_a_server_start_does_not_hash_a_remembered_index(ws, monkeypatch, no_brute_force):
    from core import filehash

    monkeypatch.setattr(filehash, "RACY_NS", 0)  # the index counts as settled
    path = ni.ensure_index(ws, FORCED).path
    assert ni.load_index(Workspace.open(ws.root), FORCED).ntotal == N  # hashed once, remembered
    memo = json.loads((ws.cache_dir / filehash.MEMO_JSON).read_text())["files"]
    assert memo[str(path)]["sha256"] == json.loads(ni.meta_path(path).read_text())["sha256"]

    def refuse(_path):
        raise AssertionError("the remembered index was hashed again")

    monkeypatch.setattr(filehash, "file_sha256", refuse)
    x = np.asarray(ws.embeddings)
    rows, _ = ni.nearest_rows(Workspace.open(ws.root), x[2], 4, settings=FORCED)  # a new server
    assert list(rows) == list(exact(x, x[2], 4)[0])


def test_an_index_edited_in_place_after_it_was_remembered_is_refused(ws, monkeypatch, caplog):
    import os
    import time

    from core import filehash

    monkeypatch.setattr(filehash, "RACY_NS", 0)
    path = ni.ensure_index(ws, FORCED).path
    assert ni.load_index(Workspace.open(ws.root), FORCED) is not None  # remembered
    st = os.stat(path)
    time.sleep(0.03)
    _flip_a_byte(path)  # same size, same inode
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime put back
    with caplog.at_level(logging.WARNING, logger=ni.__name__):
        assert ni.load_index(Workspace.open(ws.root), FORCED) is None
    assert "bytes are not the ones stored" in caplog.text


def test_an_index_replaced_while_faiss_reads_it_is_not_used(ws, monkeypatch, caplog):
    import faiss

    path = ni.ensure_index(ws, FORCED).path
    other = path.with_name("other.faiss")
    shutil.copy(path, other)
    real = faiss.read_index

    def swapped_first(name, flags=0):
        other.replace(path)  # a second process renames another file in after the check
        return real(name, flags)

    monkeypatch.setattr(faiss, "read_index", swapped_first)
    with caplog.at_level(logging.WARNING, logger=ni.__name__):
        assert ni.load_index(Workspace.open(ws.root), FORCED) is None
    assert "replaced while it was read" in caplog.text
