"""Window embeddings in a workspace: stored with the corpus, fingerprinted, checked on open
(misaligned files refused naming the file), removed when a corpus without windows replaces them."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from core.constants import WINDOW_SEGMENTS_NPY, WINDOWS_NPY, WORKSPACE_JSON
from core.errors import InputError
from core.workspace.workspace import Windows, Workspace, fingerprint_of


def _corpus(segments_factory, n=5, dim=4, per=3):
    rng = np.random.default_rng(n)
    seg = segments_factory(n)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    rows = np.repeat(np.arange(n, dtype=np.int64), per)
    win = rng.normal(size=(len(rows), dim)).astype(np.float32)
    return seg, emb, Windows(win, rows)


def test_windows_round_trip_and_enter_the_fingerprint(segments_factory, tmp_path):
    seg, emb, win = _corpus(segments_factory)
    ws = Workspace.create(tmp_path / "w", seg, emb, embedder="t", sample_rate=0, windows=win)
    again = Workspace(ws.root)
    assert again.info.n_windows == 15 and set(again.info.files) >= {WINDOWS_NPY, WINDOW_SEGMENTS_NPY}
    np.testing.assert_array_equal(np.asarray(again.windows.embeddings), win.embeddings)
    assert again.windows.segment_rows.dtype == np.int64
    assert again.windows.segment_rows.tolist() == win.segment_rows.tolist()
    plain = Workspace.create(tmp_path / "p", seg, emb, embedder="t", sample_rate=0)
    assert plain.windows is None and plain.info.n_windows == 0 and not (plain.root / WINDOWS_NPY).exists()
    assert plain.fingerprint == fingerprint_of(seg, emb)  # no windows: hashed as before windows existed
    assert again.fingerprint == fingerprint_of(seg, emb, win) != plain.fingerprint
    other = Windows(win.embeddings + 1.0, win.segment_rows)
    assert fingerprint_of(seg, emb, other) != again.fingerprint  # the window values count


def test_a_window_file_replaced_by_hand_changes_the_fingerprint(segments_factory, tmp_path):
    seg, emb, win = _corpus(segments_factory)
    ws = Workspace.create(tmp_path / "w", seg, emb, embedder="t", sample_rate=0, windows=win)
    time.sleep(0.05)
    np.save(ws.root / WINDOWS_NPY, win.embeddings * 2)
    again = Workspace(ws.root)
    assert again.fingerprint != ws.info.fingerprint
    assert again.fingerprint == fingerprint_of(seg, emb, Windows(win.embeddings * 2, win.segment_rows))


def test_a_corpus_without_windows_replaces_one_with_them(segments_factory, tmp_path):
    seg, emb, win = _corpus(segments_factory)
    root = tmp_path / "w"
    Workspace.create(root, seg, emb, embedder="t", sample_rate=0, windows=win)
    ws = Workspace.create(root, seg, emb, embedder="t", sample_rate=0)
    assert (
        ws.windows is None and not (root / WINDOWS_NPY).exists() and not (root / WINDOW_SEGMENTS_NPY).exists()
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda w: Windows(w.embeddings[:, :3], w.segment_rows),
            r"embedding dim 3 does not match the expected dim 4",
        ),
        (
            lambda w: Windows(w.embeddings, w.segment_rows + 1),
            r"window 12 names segment row 5, outside the 5 segment",
        ),
        (
            lambda w: Windows(w.embeddings, w.segment_rows[::-1].copy()),
            r"not sorted: window 3 names segment row 3 after row 4",
        ),
        (
            lambda w: Windows(w.embeddings, w.segment_rows[:-1]),
            r"14 window segment rows but .* holds 15 windows",
        ),
        (
            lambda w: Windows(w.embeddings, w.segment_rows.astype(float)),
            r"must be a 1-D array of integers, got float64",
        ),
        (
            lambda w: Windows(np.where(np.arange(15)[:, None] == 7, np.nan, w.embeddings), w.segment_rows),
            r"1 embedding row\(s\) contain NaN or inf \(first bad row index 7\)",
        ),
    ],
)
def test_misaligned_windows_are_refused_at_create(segments_factory, tmp_path, change, message):
    seg, emb, win = _corpus(segments_factory)
    with pytest.raises(InputError, match=message):
        Workspace.create(tmp_path / "w", seg, emb, embedder="t", sample_rate=0, windows=change(win))
    assert not (tmp_path / "w" / WORKSPACE_JSON).exists()


@pytest.mark.parametrize(
    ("name", "replacement", "message"),
    [
        (
            WINDOW_SEGMENTS_NPY,
            np.array([0, 0, 0, 2, 1] + [4] * 10, np.int64),
            r"window_segments\.npy: .*not sorted",
        ),
        (
            WINDOW_SEGMENTS_NPY,
            np.array([0] * 14 + [9], np.int64),
            r"window_segments\.npy: window 14 names segment row 9",
        ),
        (WINDOW_SEGMENTS_NPY, np.zeros(15, np.int32), r"window_segments\.npy: holds <i4 values; .* int64"),
        (
            WINDOWS_NPY,
            np.zeros((15, 3), np.float32),
            r"windows\.npy: shape \(15, 3\), but workspace\.json says \(15, 4\)",
        ),
        (WINDOWS_NPY, None, r"incomplete: windows\.npy is missing"),
    ],
)
def test_damaged_window_files_are_refused_on_open(segments_factory, tmp_path, name, replacement, message):
    seg, emb, win = _corpus(segments_factory)
    ws = Workspace.create(tmp_path / "w", seg, emb, embedder="t", sample_rate=0, windows=win)
    if replacement is None:
        (ws.root / name).unlink()
    else:
        np.save(ws.root / name, replacement)
    with pytest.raises(InputError, match=message):
        Workspace(ws.root)


def test_n_windows_in_workspace_json_is_checked(segments_factory, tmp_path):
    seg, emb, win = _corpus(segments_factory)
    ws = Workspace.create(tmp_path / "w", seg, emb, embedder="t", sample_rate=0, windows=win)
    meta = ws.root / WORKSPACE_JSON
    good = json.loads(meta.read_text())
    meta.write_text(json.dumps({**good, "n_windows": -1}))
    with pytest.raises(InputError, match=r"n_windows -1 is negative"):
        Workspace(ws.root)
    del good["n_windows"]  # a workspace.json written before windows existed: its window files are not read
    meta.write_text(json.dumps(good))
    assert Workspace(ws.root).windows is None
