import numpy as np
import pandas as pd
import pytest
from _analysis_synth import trained_workspace

from core.analysis.identification import identify
from core.analysis.suggestions import (
    best_latents,
    compute_suggestions,
    latent_suggestions,
    load_suggestions,
    score_latents,
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return trained_workspace(tmp_path_factory, "sugg")


def test_scores_match_a_naive_loop():
    rng = np.random.default_rng(1)
    z = np.where(rng.random((60, 4)) > 0.6, rng.random((60, 4)), 0.0)
    labels = pd.DataFrame(
        {"language": rng.choice(["es", "en", None], 60), "gender": rng.choice(["f", "m"], 60)}
    )
    df = score_latents(z, labels)
    for _, row in df.iterrows():
        act = z[:, row["latent"]] > 0
        y = (labels[row["attribute"]] == row["value"]).to_numpy()
        tp = (act & y).sum()
        assert row["precision"] == pytest.approx(tp / act.sum() if act.sum() else 0)
        assert row["recall"] == pytest.approx(tp / y.sum())
        assert row["f1"] == pytest.approx(2 * tp / (act.sum() + y.sum()))
    ranks = df[df["latent"] == 0].sort_values("rank")
    assert list(ranks["rank"]) == list(range(1, len(ranks) + 1))
    assert ranks["f1"].is_monotonic_decreasing


def test_suggestions_find_the_planted_latents(ws):
    df = compute_suggestions(ws, "topk-L6-K2")
    assert set(df["attribute"]) <= {"language", "gender", "class"}
    es_latent = identify(ws, "language", "es", ["en"])["models"][0]["latent"]
    top = latent_suggestions(df, es_latent).iloc[0]
    assert (top["attribute"], top["value"]) == ("language", "es")
    music_latent = identify(ws, "class", "music", ["voice"])["models"][0]["latent"]
    music = best_latents(df, "class", "music").iloc[0]
    assert music["latent"] == music_latent and music["recall"] > 0.9
    stored = load_suggestions(ws, "topk-L6-K2")
    assert len(stored) == len(df)
    assert load_suggestions(ws, "nope") is None
