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


# -- validate_embeddings: only real numbers, 2-D, rows and dimensions, float32's range ----------
@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.ones((3, 2), np.complex64), r"complex numbers \(complex64\); the imaginary part would be lost"),
        (np.ones((3, 2), bool), r"booleans \(dtype bool\)"),
        (np.array([["a", "b"], ["c", "d"]]), r"text \(dtype <U1\)"),
        (np.array([[b"a"], [b"b"]]), r"bytes \(dtype \|S1\)"),
        (np.array([[1, "x"], [None, 2.0]], dtype=object), r"Python objects \(dtype object\)"),
        (np.zeros(3, dtype=[("a", "f4"), ("b", "f4")]), r"a structured array \(fields a, b\)"),
        (np.zeros((2, 2), "datetime64[s]"), r"dates"),
        (np.zeros((5, 0), np.float32), r"0 dimensions \(shape \(5, 0\)\)"),
        (np.zeros((0, 4), np.float32), r"no embeddings \(0 rows\)"),
    ],
)
def test_embeddings_that_are_not_real_numbers_are_refused(array, message):
    with pytest.raises(InputError, match=r"^x\.npy: .*" + message):
        validate_embeddings(array, "x.npy")


def test_values_beyond_float32_are_refused_and_others_kept():
    big = np.zeros((4, 3), np.float64)
    big[2, 1] = -3.5e38  # finite as float64, inf as float32
    with pytest.raises(
        InputError, match=r"1 embedding row\(s\) hold values beyond float32's range .*first bad row index 2"
    ):
        validate_embeddings(big, "x.npy")
    big[2, 1] = 3.0e38  # the largest float32 is 3.4e38: kept
    out = validate_embeddings(big, "x.npy")
    assert out.dtype == np.float32 and out[2, 1] == np.float32(3.0e38)
    ints = validate_embeddings(np.arange(6, dtype=np.int64).reshape(3, 2), "x.npy")
    assert ints.dtype == np.float32 and ints.tolist() == [[0, 1], [2, 3], [4, 5]]
    half = validate_embeddings(np.full((2, 2), 0.5, np.float16), "x.npy")
    assert half.dtype == np.float32 and half.tolist() == [[0.5, 0.5], [0.5, 0.5]]
