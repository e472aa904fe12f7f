"""core.dashboard.universality_view: a latent's matches in the other SAEs, read from the stored
universality comparisons (both directions, other workspaces, only fresh ones)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from _analysis_synth import build_workspace, train_models

from core.analysis.universality import universality
from core.dashboard.universality_view import COLUMNS, latent_link, latent_matches
from core.workspace.workspace import Workspace

SMALL, LARGER = "topk-L4-K2", "topk-L6-K2"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Workspace `a` (L4 and L6) and a replica `b` beside it (an L4 of another seed); compared
    L4~L6 within `a` and, stored in `b`, b's L4 against a's L4 (`--model-workspace a`)."""
    root = tmp_path_factory.mktemp("univ_view")
    a = build_workspace(str(root / "a"), n_sae_speakers=40, n_feat_speakers=24, per_speaker=10)
    train_models(a, shapes=((4, 2), (6, 2)))
    b = Workspace.create(root / "b", a.segments, np.asarray(a.embeddings), embedder=a.embedder, sample_rate=0)
    train_models(b, shapes=((4, 2),), seed=1)
    within = universality(a, SMALL, LARGER)
    across = universality(b, SMALL, SMALL, model_workspace=a)
    universality(a, SMALL, SMALL)  # a model with itself: no match "in another SAE"
    return a, b, within, across


def _pair(res, side, latent):
    return next(p for p in res["pairs"] if p[side] == latent)


def test_a_latents_matches_in_every_sae_it_was_compared_with(compared):
    a, b, within, across = compared
    latent = within["pairs"][0]["latent_a"]  # the best matched latent of L4
    frame = latent_matches(a, SMALL, latent)
    assert list(frame.columns) == COLUMNS and len(frame) == 2
    by = {(r["workspace"], r["model"]): r for r in frame.to_dict("records")}
    assert set(by) == {("a", LARGER), ("b", SMALL)}
    mine = by[("a", LARGER)]
    pair = _pair(within, "latent_a", latent)
    assert mine["latent"] == pair["latent_b"] and mine["correlation"] == pytest.approx(pair["correlation"])
    assert mine["decoder_cosine"] == pytest.approx(pair["decoder_cosine"])
    assert [mine["best_latent"], mine["best_correlation"]] == within["best_a"][latent]
    assert mine["link"] == f"latents?ws=a&model={LARGER}&latent={pair['latent_b']}"
    # the comparison stored in b took a's L4 as its M2: read from the other side
    theirs = by[("b", SMALL)]
    back = _pair(across, "latent_b", latent)
    assert theirs["latent"] == back["latent_a"] and theirs["correlation"] == pytest.approx(
        back["correlation"]
    )
    assert [theirs["best_latent"], theirs["best_correlation"]] == across["best_b"][latent]
    # two workspaces of one embedder and dim: one embedding space, so the decoders are compared
    assert across["decoder_cosine"] and theirs["decoder_cosine"] == pytest.approx(back["decoder_cosine"])
    assert frame["best_correlation"].is_monotonic_decreasing


def test_the_larger_sae_reads_the_same_comparison_from_its_side(compared):
    a, _, within, _ = compared
    matched = {p["latent_b"] for p in within["pairs"]}
    latent = within["pairs"][0]["latent_b"]
    row = latent_matches(a, LARGER, latent).iloc[0]
    assert (row["model"], row["latent"]) == (SMALL, within["pairs"][0]["latent_a"])
    # an extra latent of the larger SAE has no one-to-one partner, only a best match
    extra = next(i for i in range(6) if i not in matched)
    row = latent_matches(a, LARGER, extra).iloc[0]
    assert pd.isna(row["latent"]) and np.isnan(row["correlation"])
    assert row["best_latent"] == within["best_b"][extra][0]
    assert row["link"] == latent_link("a", SMALL, within["best_b"][extra][0])


def test_a_stale_comparison_is_not_shown(compared, tmp_path):
    a, b, _, _ = compared
    a2 = Workspace(shutil.copytree(a.root, tmp_path / "a"))
    assert len(latent_matches(a2, SMALL, 0)) == 1  # its own L4~L6 (b's file names workspace a, not this copy)
    shutil.copytree(b.models_dir / SMALL, a2.models_dir / LARGER, dirs_exist_ok=True)  # L6 replaced
    assert latent_matches(a2, SMALL, 0).empty
    assert latent_matches(a2, SMALL, 99).empty and latent_matches(a2, "no-such-model", 0).empty
