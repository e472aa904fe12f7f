"""core.analysis.store: a stored analysis never outlives its inputs (workspace content, model
weights); a corrupt result file is recomputed, and said."""

import json

import numpy as np
import pytest
from _analysis_synth import build_workspace, train_models

from core.analysis.analyze import load_manifest, run_analyses
from core.analysis.grid import load_grid
from core.analysis.identification import identify, load_identification
from core.analysis.report import load_report, write_report
from core.analysis.splitting import load_splitting
from core.analysis.steering import load_steering
from core.analysis.store import ResultStore, content_key
from core.analysis.suggestions import load_suggestions
from core.dashboard.browse import build_index, load_index
from core.sae.activations import sparse_codes
from core.sae.catalog import get_model
from core.workspace.workspace import Workspace

LOADERS = {
    "identification": lambda ws: load_identification(ws, "language", "es"),
    "grid": lambda ws: load_grid(ws, "language", "es"),
    "splitting": lambda ws: load_splitting(ws, "language", "es"),
    "steering": lambda ws: load_steering(ws, "language", "es", "topk-L6-K2"),
    "suggestions": lambda ws: load_suggestions(ws, "topk-L6-K2"),
    "manifest": lambda ws: load_manifest(ws),
    "report": lambda ws: load_report(ws),
}


@pytest.fixture
def analysed(tmp_path):
    ws = build_workspace(str(tmp_path / "w"), seed=3)
    train_models(ws, shapes=((6, 2),), steps=150)
    write_report(ws, progress=False)  # runs analyze: every stored result exists
    return ws


def test_every_result_is_fresh_after_analyze(analysed):
    for kind, load in LOADERS.items():
        assert load(analysed) is not None, kind


def test_changed_embeddings_never_show_old_results(analysed):
    """The trust issue's case: the same metadata with the embedding rows permuted (a new
    import-embeddings into the same workspace) must not show the old findings."""
    ws = analysed
    old = load_identification(ws, "language", "es")
    old_codes = sparse_codes(ws, "topk-L6-K2")
    build_index(ws, "topk-L6-K2")
    assert load_index(ws, "topk-L6-K2") is not None
    perm = np.random.default_rng(0).permutation(len(ws))
    new = Workspace.create(
        ws.root, ws.segments, np.asarray(ws.embeddings)[perm], embedder=ws.embedder, sample_rate=16000
    )
    assert new.fingerprint != ws.fingerprint
    for kind, load in LOADERS.items():
        assert load(new) is None, f"{kind} outlived the embeddings it was computed from"
    assert load_index(new, "topk-L6-K2") is None  # the dashboard's browse index too
    idx, val = sparse_codes(new, "topk-L6-K2")  # activations: recomputed for the new rows
    np.testing.assert_array_equal(idx[np.argsort(perm)], old_codes[0])
    fresh = identify(new, "language", "es")  # no --force needed
    assert fresh["fingerprint"] == new.fingerprint
    assert fresh["probe_accuracy"] != old["probe_accuracy"]


def test_retrained_model_invalidates_its_results(analysed):
    ws = analysed
    before = get_model(ws, "topk-L6-K2").version
    train_models(ws, shapes=((6, 2),), steps=40)  # same name, new weights
    assert get_model(ws, "topk-L6-K2").version != before
    for kind, load in LOADERS.items():
        assert load(ws) is None, f"{kind} outlived the model weights it was computed from"
    assert not run_analyses(ws, progress=False)["up_to_date"]
    assert (
        load_identification(ws, "language", "es")["models"][0]["checksum"]
        == get_model(ws, "topk-L6-K2").version
    )


def test_corrupt_result_is_recomputed_and_said(analysed, capsys):
    ws = analysed
    path = ResultStore(ws).path("identification", "language=es_vs_en")
    good = json.loads(path.read_text())
    path.write_text('{"models": [')  # truncated by a crash of some other tool
    capsys.readouterr()
    assert load_identification(ws, "language", "es") is None
    assert "corrupt stored result" in capsys.readouterr().err
    again = identify(ws, "language", "es")
    assert again["models"][0]["latent"] == good["models"][0]["latent"]
    assert json.loads(path.read_text())["inputs"] == good["inputs"]
    grid = ResultStore(ws).path("grid", "language=es_vs_en", ".parquet")
    grid.write_bytes(b"PAR1 not a parquet file")
    assert load_grid(ws, "language", "es") is None
    assert "corrupt stored result" in capsys.readouterr().err
    path.write_text("[1, 2]")  # JSON, but not a result
    assert load_identification(ws, "language", "es") is None


def test_explicit_inputs_must_match_exactly(analysed):
    store = ResultStore(analysed)
    inputs = store.inputs([], split="abc", value=1.0)
    store.save_json("x", "r", {"a": 1}, inputs)
    assert store.load_json("x", "r", inputs)["a"] == 1
    assert store.load_json("x", "r", {**inputs, "value": 2.0}) is None
    assert store.load_json("x", "r")["inputs"]["content_key"] == content_key(inputs)


def test_the_segments_digest_is_remembered_while_the_parquet_is_unchanged(tmp_path, monkeypatch):
    import hashlib
    import os
    import time

    import pandas as pd
    from dashboard_ws import small_workspace

    from core import filehash
    from core.analysis.store import segments_digest

    monkeypatch.setattr(filehash, "RACY_NS", 0)
    ws = small_workspace(tmp_path / "ws", np.eye(6, dtype=np.float32), speaker="a")
    parquet = ws.root / "segments.parquet"
    want = hashlib.sha256(parquet.read_bytes()).hexdigest()[:16]
    assert segments_digest(Workspace.open(ws.root)) == want
    assert not ws.cache_dir.exists()  # no cache folder is made for the memo
    ws.cache_dir.mkdir()
    assert segments_digest(Workspace.open(ws.root)) == want
    hashed = []
    real = filehash.file_sha256
    monkeypatch.setattr(filehash, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert segments_digest(Workspace.open(ws.root)) == want and hashed == []  # remembered
    st = os.stat(parquet)
    time.sleep(0.03)
    frame = pd.read_parquet(parquet)
    frame["speaker"] = "b"  # another table of the same rows and size
    frame.to_parquet(parquet, index=False)
    os.utime(parquet, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = segments_digest(Workspace.open(ws.root))
    assert changed == hashlib.sha256(parquet.read_bytes()).hexdigest()[:16] != want and len(hashed) == 1
