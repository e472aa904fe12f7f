import json

import numpy as np
import pytest

from core.constants import EMBEDDINGS_NPY, SEGMENTS_PARQUET, WORKSPACE_JSON
from core.errors import InputError, NotFoundError
from core.workspace.workspace import Workspace, resolve_workspace_path, validate_embeddings


def test_create_and_reopen_round_trip(segments_factory):
    seg = segments_factory(20)
    seg["language"] = ["es" if i % 4 == 0 else "en" for i in range(20)]
    emb = np.random.default_rng(1).normal(size=(20, 8)).astype(np.float32)
    ws = Workspace.create("w1", seg, emb, embedder="test", sample_rate=16000, provenance={"k": 1})
    again = Workspace.open("w1")
    assert again.root == resolve_workspace_path("w1")
    assert again.dim == 8 and len(again) == 20 and again.embedder == "test"
    np.testing.assert_array_equal(np.asarray(again.embeddings), emb)
    assert isinstance(again.embeddings, np.memmap)
    assert list(again.segments["segment_id"]) == list(seg["segment_id"])
    assert again.attribute_values("language") == ["en", "es"]
    assert again.summary()["language"] == {"en": 15, "es": 5}
    assert again.summary()["speakers"] == seg["speaker"].nunique()
    assert again.fingerprint == ws.fingerprint


def test_fingerprint_changes_with_content(segments_factory):
    seg = segments_factory(10)
    emb = np.ones((10, 4), np.float32)
    a = Workspace.create("a", seg, emb, embedder="t", sample_rate=0).fingerprint
    emb2 = emb.copy()
    emb2[3, 2] = 2.0
    b = Workspace.create("b", seg, emb2, embedder="t", sample_rate=0).fingerprint
    seg2 = seg.copy()
    seg2["speaker"] = "x"
    c = Workspace.create("c", seg2, emb, embedder="t", sample_rate=0).fingerprint
    assert len({a, b, c}) == 3


def test_nan_rows_are_named():
    emb = np.zeros((5, 3), np.float32)
    emb[3, 1] = np.nan
    with pytest.raises(InputError, match=r"first bad row index 3"):
        validate_embeddings(emb, "x.npy")
    with pytest.raises(InputError, match="dim 3 does not match the expected dim 4"):
        validate_embeddings(np.zeros((2, 3)), "x.npy", dim=4)
    with pytest.raises(InputError, match="2-D"):
        validate_embeddings(np.zeros(3), "x.npy")


def test_bad_create_leaves_existing_workspace_intact(segments_factory):
    seg = segments_factory(6)
    emb = np.arange(18, dtype=np.float32).reshape(6, 3)
    ws = Workspace.create("keep", seg, emb, embedder="t", sample_rate=0)
    before = {p: (ws.root / p).read_bytes() for p in (WORKSPACE_JSON, SEGMENTS_PARQUET, EMBEDDINGS_NPY)}
    bad = emb.copy()
    bad[0, 0] = np.inf
    with pytest.raises(InputError):
        Workspace.create("keep", seg, bad, embedder="t", sample_rate=0)
    dup = seg.copy()
    dup.loc[1, "segment_id"] = dup.loc[0, "segment_id"]
    with pytest.raises(InputError, match="duplicate segment_id 'seg00000'"):
        Workspace.create("keep", dup, emb, embedder="t", sample_rate=0)
    with pytest.raises(InputError, match="6 segments but 5 embedding rows"):
        Workspace.create("keep", seg, emb[:5], embedder="t", sample_rate=0)
    after = {p: (ws.root / p).read_bytes() for p in before}
    assert after == before
    assert not [p for p in ws.root.parent.iterdir() if p.name.startswith(".keep.")]


def test_replace_keeps_models_folder(segments_factory):
    seg = segments_factory(4)
    ws = Workspace.create("r", seg, np.zeros((4, 2), np.float32), embedder="t", sample_rate=0)
    ws.models_dir.mkdir()
    (ws.models_dir / "marker").write_text("x")
    ws2 = Workspace.create("r", seg, np.ones((4, 2), np.float32), embedder="t", sample_rate=0)
    assert (ws2.models_dir / "marker").read_text() == "x"
    assert float(np.asarray(ws2.embeddings).sum()) == 8.0


def test_missing_and_foreign_workspace(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        Workspace.open("nope")
    bad = tmp_path / "foreign"
    bad.mkdir()
    (bad / WORKSPACE_JSON).write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="not a VoxSAE workspace file"):
        Workspace.open(bad)


def test_unknown_attribute_lists_known(segments_factory):
    ws = Workspace.create("u", segments_factory(3), np.zeros((3, 2), np.float32), embedder="t", sample_rate=0)
    with pytest.raises(NotFoundError, match="attributes: speaker"):
        ws.attribute_values("language")
