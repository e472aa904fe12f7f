"""core.analysis.universality: latents of two SAEs matched by activation correlation, across seeds,
sizes and a second "embedder" of the same segments; a random SAE as the baseline; the store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from _analysis_synth import build_workspace, train_models

from core.analysis.identification import identify
from core.analysis.universality import (
    MIN_SEGMENTS,
    activation_correlation,
    load_universality,
    parse_models,
    shared_rows,
    universality,
)
from core.cli import main as cli_main
from core.errors import InputError, NotFoundError
from core.sae import SAEConfig, create_sae
from core.sae.activations import latents
from core.sae.checkpoint import save_sae
from core.workspace.workspace import Workspace

SMALL, SEED1, LARGER, RANDOM = "topk-L4-K2", "topk-L4-K2-s1", "topk-L6-K2", "random-L6-K2"
FEATURES = ("language=es", "class=music")


def _save(ws: Workspace, sae, name: str) -> None:
    info = {"name": name, "workspace": ws.name, "fingerprint": ws.fingerprint, "d_in": ws.dim}
    save_sae(sae, ws.models_dir / name, metrics={}, info=info)


def _identify(ws: Workspace) -> None:
    identify(ws, "language", "es", ["en"])
    identify(ws, "class", "music", ["voice"])


def random_sae(ws: Workspace, d_sae: int, seed: int):
    """An untrained TopK SAE: random unit decoder directions, encoder = decoder transposed."""
    torch.manual_seed(seed)
    sae = create_sae(SAEConfig(architecture="topk", d_in=ws.dim, d_sae=d_sae, k=2, seed=seed))
    sae.init_weights(b_dec=torch.as_tensor(np.array(ws.embeddings)).mean(0))
    return sae.eval()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The synthetic workspace with L4 (seeds 0 and 1), L6 and a random L6, identification stored.
    (L4 and L6 at seed 0 hold Spanish in one latent; larger ones split it by gender.)"""
    ws = build_workspace(str(tmp_path_factory.mktemp("univ") / "synth"))
    train_models(ws, shapes=((4, 2), (6, 2)))
    train_models(ws, shapes=((4, 2),), seed=1, suffix="-s1")
    _save(ws, random_sae(ws, 6, seed=8), RANDOM)
    _identify(ws)
    return ws


@pytest.fixture(scope="module")
def other(ws, tmp_path_factory):
    """The same segments seen by another "embedder": a 16-d rotation-and-projection of the 24-d
    embeddings plus noise, rows in another order, 40 segments missing and 5 ids of its own; an L4
    SAE trained on it, identification stored."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    x = np.asarray(ws.embeddings, dtype=np.float64)
    y = 3.0 * x @ q[:, :16] + 0.05 * rng.normal(size=(len(x), 16))
    order = rng.permutation(len(x))[: len(x) - 40]
    seg = ws.segments.iloc[order].reset_index(drop=True)
    extra = seg.iloc[:5].assign(segment_id=[f"only-here-{i}" for i in range(5)])
    seg = pd.concat([seg, extra], ignore_index=True)
    y = np.concatenate([y[order], y[order][:5]]).astype(np.float32)
    root = tmp_path_factory.mktemp("univ_other") / "synth_b"
    ws2 = Workspace.create(str(root), seg, y, embedder="synthetic-b", sample_rate=16000)
    train_models(ws2, shapes=((4, 2),))
    _identify(ws2)
    return ws2


def _features(res: dict) -> dict[tuple[str, str], dict]:
    return {(f["model"], f["feature"]): f for f in res["features"]}


# -- the numbers ---------------------------------------------------------------------------------
def test_activation_correlation_is_pearson_and_a_latent_without_variance_gets_zero():
    rng = np.random.default_rng(0)
    a = rng.random((200, 5)) * (rng.random((200, 5)) < 0.3)
    b = rng.random((200, 4)) * (rng.random((200, 4)) < 0.4)
    b[:, 1] = 0.0  # never fires
    b[:, 3] = a[:, 2] * 2.0 + 0.5 * (a[:, 2] > 0)  # a function of a[:, 2]
    a[:, 4] = 1.5  # fires equally on every row: no variance
    corr = activation_correlation(a, b)
    ref = np.corrcoef(a[:, :4].T, b[:, [0, 2, 3]].T)[:4, 4:]
    np.testing.assert_allclose(corr[:4][:, [0, 2, 3]], ref, atol=1e-9)
    assert (corr[:, 1] == 0).all() and (corr[4] == 0).all()
    assert corr[2, 3] > 0.95


def test_parse_models():
    assert parse_models("a,b") == ("a", "b") and parse_models(" a , a ") == ("a", "a")
    for bad, why in (("a", "got one model"), ("a,b,c", "got 3 models"), ("a,", "empty model name")):
        with pytest.raises(InputError, match=why):
            parse_models(bad)


# -- matching ------------------------------------------------------------------------------------
def test_a_model_matched_with_itself_correlates_1_on_every_live_latent(ws):
    res = universality(ws, SMALL, SMALL)
    z = latents(ws, SMALL)
    live = int(((z > 0).any(axis=0)).sum())
    assert res["live_a"] == res["live_b"] == live == 4 and res["segments"] == len(ws)
    for p in res["pairs"]:
        assert p["latent_a"] == p["latent_b"]
        assert p["correlation"] == pytest.approx(1.0, abs=1e-9) and p["decoder_cosine"] == pytest.approx(1.0)
    assert res["mean_max_correlation_a_to_b"] == pytest.approx(1.0) and res["pairs_above_threshold"] == 4
    feats = _features(res)
    assert set(feats) == {(SMALL, f) for f in FEATURES}  # one side only: it is one SAE
    for f in feats.values():
        assert f["match_latent"] == f["latent"] == f["other_identified_latent"] and f["universal"]


@pytest.mark.parametrize("other_model", [SEED1, LARGER], ids=["another seed", "a larger SAE"])
def test_the_planted_features_are_matched_across_seeds_and_sizes(ws, other_model):
    res = universality(ws, SMALL, other_model)
    feats = _features(res)
    assert set(feats) == {(m, f) for m in (SMALL, other_model) for f in FEATURES}
    for f in feats.values():
        # the match is the other SAE's own latent for that feature, both ways
        assert f["universal"] and f["match_correlation"] > 0.9, f
        assert f["match_latent"] == f["other_identified_latent"] == f["assigned_latent"], f
    # the stored correlation is the Pearson correlation of the two latents' activations
    es = feats[(SMALL, "language=es")]
    za, zb = latents(ws, SMALL)[:, es["latent"]], latents(ws, other_model)[:, es["match_latent"]]
    assert es["match_correlation"] == pytest.approx(np.corrcoef(za, zb)[0, 1], abs=1e-9)
    # one embedding space: the matched features' decoder directions agree too
    by_pair = {(p["latent_a"], p["latent_b"]): p for p in res["pairs"]}
    for name in FEATURES:
        f = feats[(SMALL, name)]
        assert by_pair[(f["latent"], f["match_latent"])]["decoder_cosine"] > 0.6
    assert res["decoder_cosine"] and res["decoder_cosine_skipped"] is None
    assert res["mean_max_correlation_a_to_b"] > 0.8


def test_a_random_sae_matches_no_planted_feature(ws):
    trained = universality(ws, SMALL, SEED1)
    res = universality(ws, SMALL, RANDOM)
    feats = _features(res)
    assert set(feats) == {(m, f) for m in (SMALL, RANDOM) for f in FEATURES}
    for f in feats.values():
        assert not f["universal"] and f["match_correlation"] < 0.7, f
    assert res["pairs_above_threshold"] == 0
    assert res["mean_max_correlation_a_to_b"] < trained["mean_max_correlation_a_to_b"] - 0.3


def test_across_two_embedders_rows_are_matched_by_segment_id(ws, other):
    res = universality(ws, SMALL, SMALL, model_workspace=other)
    assert res["segments"] == len(ws) - 40 and res["segments_other_audio"] == 0
    assert (res["a"]["embedder"], res["a"]["dim"], res["b"]["embedder"], res["b"]["dim"]) == (
        "synthetic",
        24,
        "synthetic-b",
        16,
    )
    assert not res["decoder_cosine"] and all(p["decoder_cosine"] is None for p in res["pairs"])
    assert "decoder cosine skipped" in res["decoder_cosine_skipped"]
    assert (
        "16-d" in res["decoder_cosine_skipped"] and "not one embedding space" in res["decoder_cosine_skipped"]
    )
    feats = {(f["workspace"], f["feature"]): f for f in res["features"]}
    assert set(feats) == {(w.name, f) for w in (ws, other) for f in FEATURES}  # each from its own workspace
    for f in feats.values():
        assert (
            f["universal"]
            and f["match_correlation"] > 0.85
            and f["match_latent"] == f["other_identified_latent"]
        )
    # by hand: the rows of the other workspace picked by segment id
    es = feats[(ws.name, "language=es")]
    pos = pd.Index(other.segments["segment_id"]).get_indexer(ws.segments["segment_id"])
    rows = np.flatnonzero(pos >= 0)
    za = latents(ws, SMALL)[rows, es["latent"]]
    zb = latents(other, SMALL)[pos[rows], es["match_latent"]]
    assert es["match_correlation"] == pytest.approx(np.corrcoef(za, zb)[0, 1], abs=1e-9)
    assert es["workspace"] == ws.name and es["other_workspace"] == other.name


def test_too_few_shared_segments_is_refused_with_the_count(ws, tmp_path):
    seg = ws.segments.copy()
    seg["segment_id"] = [f"x{i}" if i >= 12 else sid for i, sid in enumerate(seg["segment_id"])]
    few = Workspace.create(
        str(tmp_path / "few"), seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=0
    )
    with pytest.raises(InputError, match=rf"share 12 segment id\(s\).*at least {MIN_SEGMENTS}"):
        shared_rows(ws, few)


def test_an_id_naming_other_audio_is_not_the_same_segment(ws, tmp_path):
    seg = ws.segments.copy()
    seg.loc[: MIN_SEGMENTS - 1, "start_s"] += 1.0  # the same ids, other stretches of their calls
    moved = Workspace.create(
        str(tmp_path / "moved"), seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=0
    )
    rows_a, rows_b, found = shared_rows(ws, moved)
    assert found == {"segments": len(ws) - MIN_SEGMENTS, "other_audio": MIN_SEGMENTS}
    assert rows_a[0] == MIN_SEGMENTS and (rows_a == rows_b).all()


def test_an_unknown_model_names_the_workspace_and_its_models(ws):
    with pytest.raises(NotFoundError, match=rf"workspace synth: no model 'topk-L9-K2'.*{SMALL}"):
        universality(ws, SMALL, "topk-L9-K2")


# -- the store -----------------------------------------------------------------------------------
def test_stored_reused_and_stale_when_a_model_or_identification_changes(ws, tmp_path, monkeypatch):
    import shutil

    copy = Workspace(shutil.copytree(ws.root, tmp_path / "copy"))
    first = universality(copy, SMALL, SEED1)
    path = copy.analyses_dir / "universality" / f"{SMALL}~{SEED1}.json"
    assert path.is_file() and load_universality(copy, SMALL, SEED1) == first

    def no_recompute(*a, **k):
        raise AssertionError("recomputed although nothing changed")

    monkeypatch.setattr("core.analysis.universality.activation_correlation", no_recompute)
    assert universality(copy, SMALL, SEED1) == first
    monkeypatch.undo()
    # retrain SEED1 (other weights under the same name): the stored result is stale
    _save(copy, random_sae(copy, 4, seed=3), SEED1)
    assert load_universality(copy, SMALL, SEED1) is None
    again = universality(copy, SMALL, SEED1)
    assert again["pairs"] != first["pairs"] and load_universality(copy, SMALL, SEED1) == again
    # the stored identification read the old SEED1, so it is stale too: no features, said why
    assert again["features"] == [] and len(again["not_identified"]) == 4
    assert "run `python -m core analyze --workspace copy`" in again["not_identified"][0]
    _identify(copy)  # identified again: the comparison that read none is stale
    assert load_universality(copy, SMALL, SEED1) is None
    assert {f["model"] for f in universality(copy, SMALL, SEED1)["features"]} == {SMALL, SEED1}


def test_cli_prints_the_matches_and_json(ws, capsys):
    assert cli_main(["universality", "--workspace", str(ws.root), "--models", f"{SMALL},{LARGER}"]) == 0
    out = capsys.readouterr().out
    assert f"universality: {SMALL} (synth, synthetic 24-d) vs {LARGER}" in out
    assert "language=es" in out and "universal" in out and "wrote " in out
    assert (
        cli_main(["universality", "--workspace", str(ws.root), "--models", f"{SMALL},{LARGER}", "--json"])
        == 0
    )
    obj = json.loads(capsys.readouterr().out)
    assert obj["a"]["model"] == SMALL and obj["b"]["model"] == LARGER and "inputs" not in obj
    assert obj == {k: v for k, v in universality(ws, SMALL, LARGER).items() if k != "inputs"}


# -- the report's question ------------------------------------------------------------------------
def test_feature_universality_across_sizes_and_embedders(ws, other):
    from core.analysis.universality import feature_universality, universality_chart, universality_reading

    summ = feature_universality(ws, SMALL, across=[other])
    by = {(r["feature"], r["other_workspace"], r["other_model"]): r for r in summ["rows"]}
    # same embedder: the other sizes of topk K2 (L6 trained, L6 random); the seed-1 L4 is the same size
    assert set(by) == {(f, w, m) for f in FEATURES for w, m in
                       ((ws.name, LARGER), (ws.name, RANDOM), (other.name, SMALL))}  # fmt: skip
    for f in FEATURES:
        assert by[(f, ws.name, LARGER)]["universal"] and not by[(f, ws.name, RANDOM)]["universal"]
        v = summ["features"][f]
        assert (v["sizes"], v["sizes_matched"], v["across_sizes"]) == (2, 1, False)
        assert v["across_embedders"] is True and v["best_other_embedder"][other.name] > 0.85
        # the row is the stored pairwise result's number
        pair = universality(ws, SMALL, SMALL, model_workspace=other)
        mine = next(x for x in pair["features"] if x["feature"] == f and x["workspace"] == ws.name)
        assert by[(f, other.name, SMALL)]["match_correlation"] == mine["match_correlation"]
    reading = universality_reading(summ)
    assert "language=es (latent" in reading and "1 of 2 other latent sizes" in reading
    assert f"universal across embedders (best match: {other.name} " in reading
    assert universality_chart(summ).to_dict()["facet"]["row"]["field"] == "feature"
    with pytest.raises(InputError, match="is the workspace itself"):
        feature_universality(ws, SMALL, across=[ws])


def test_report_states_which_features_are_universal_across_embedders(ws, other, capsys):
    from core.analysis.report import load_report
    from core.constants import REPORT_HTML

    assert cli_main(["report", "--workspace", str(ws.root), "--across", str(other.root)]) == 0
    out = capsys.readouterr().out
    assert "universality: language=es (latent" in out and "across embedders" in out
    rep = load_report(ws)
    assert rep["universality"]["across"] == [other.name]
    assert rep["universality"]["features"]["class=music"]["across_embedders"] is True
    page = (ws.analyses_dir / REPORT_HTML).read_text()
    assert "Universality: are the features shared across SAEs and embedders?" in page
    # without --across the report says no other embedder was compared
    assert cli_main(["report", "--workspace", str(ws.root)]) == 0
    assert "no other embedder compared" in capsys.readouterr().out
