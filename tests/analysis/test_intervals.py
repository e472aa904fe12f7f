"""core.analysis.intervals: the bootstrap over test speakers behind every grid cell's precision and
recall interval, checked against a naive loop bootstrap, and wired through identify and the grid."""

from __future__ import annotations

import numpy as np
import pytest
from _analysis_synth import build_workspace, train_models, trained_workspace

from core.analysis.grid import at_bar, best_cell, compute_grid, interval_table, load_grid
from core.analysis.identification import identify, load_identification
from core.analysis.intervals import (
    NO_SPEAKER_NOTE,
    BootstrapConfig,
    BootstrapPlan,
    resample_indices,
    resample_weights,
)
from core.errors import InputError
from core.workspace.workspace import Workspace


def _speaker_data(n_speakers: int, per_speaker: int = 6, seed: int = 0):
    """Labels and a noisy detector whose hit rate differs by speaker (what makes speakers the unit)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"spk{i}" for i in range(n_speakers)], per_speaker)
    y = np.repeat(np.arange(n_speakers) % 2 == 0, per_speaker)
    hit = np.repeat(rng.uniform(0.5, 1.0, n_speakers), per_speaker)
    false_alarm = np.repeat(rng.uniform(0.0, 0.3, n_speakers), per_speaker)
    u = rng.random(len(y))
    pred = np.where(y, u < hit, u < false_alarm)
    return groups, y, pred


def _naive(groups, y, pred, cfg: BootstrapConfig):
    """The reference: one resample at a time, the drawn speakers' segments concatenated, scored by
    sklearn, percentiles taken."""
    from sklearn.metrics import precision_score, recall_score

    labels = np.unique(groups.astype(str))
    rows_of = {i: np.flatnonzero(groups == lab) for i, lab in enumerate(labels)}
    ps, rs = [], []
    for drawn in resample_indices(len(labels), cfg):
        rows = np.concatenate([rows_of[int(g)] for g in drawn])
        ps.append(precision_score(y[rows], pred[rows], zero_division=0))
        rs.append(recall_score(y[rows], pred[rows], zero_division=0))
    a = (1 - cfg.level) / 2
    return (*np.quantile(ps, [a, 1 - a]), *np.quantile(rs, [a, 1 - a]))


def test_matches_a_naive_loop_bootstrap_with_the_same_seed():
    groups, y, pred = _speaker_data(30)
    cfg = BootstrapConfig(resamples=200, seed=7)
    ci = BootstrapPlan.from_groups(groups, cfg).intervals(pred, y)
    np.testing.assert_allclose(ci, _naive(groups, y, pred, cfg), rtol=0, atol=1e-12)
    # the point estimate lies inside, and the interval is not degenerate
    from sklearn.metrics import precision_score, recall_score

    p, r = precision_score(y, pred), recall_score(y, pred)
    assert ci.precision_lo < p < ci.precision_hi and ci.recall_lo < r < ci.recall_hi


def test_weights_count_every_draw_of_every_resample():
    cfg = BootstrapConfig(resamples=50, seed=3)
    w = resample_weights(9, cfg)
    idx = resample_indices(9, cfg)
    assert w.shape == (50, 9) and (w.sum(axis=1) == 9).all()
    assert w[4, 2] == (idx[4] == 2).sum() and w[17, 8] == (idx[17] == 8).sum()


def test_intervals_shrink_with_more_speakers():
    widths = []
    for n in (20, 80, 320):
        groups, y, pred = _speaker_data(n, seed=1)
        ci = BootstrapPlan.from_groups(groups).intervals(pred, y)
        widths.append((ci.precision_hi - ci.precision_lo, ci.recall_hi - ci.recall_lo))
    (p20, r20), (p80, r80), (p320, r320) = widths
    assert p20 > p80 > p320 and r20 > r80 > r320
    assert p320 < 0.5 * p20 and r320 < 0.5 * r20  # ~ 1/sqrt(n): 4x the speakers, about half the width


def test_resampling_speakers_is_wider_than_resampling_segments():
    # segments of one speaker move together: treating them as independent understates the spread
    groups, y, pred = _speaker_data(40, per_speaker=10, seed=2)
    by_speaker = BootstrapPlan.from_groups(groups).intervals(pred, y)
    by_segment = BootstrapPlan.from_groups(np.arange(len(y)), unit="segment").intervals(pred, y)
    assert by_speaker.recall_hi - by_speaker.recall_lo > by_segment.recall_hi - by_segment.recall_lo


@pytest.mark.parametrize(
    "field, value",
    [("resamples", 0), ("resamples", 2.5), ("seed", -1), ("level", 1.0), ("level", float("nan"))],
)
def test_bad_settings_refused(field, value):
    with pytest.raises(InputError, match=f"bootstrap {field}"):
        BootstrapConfig(**{field: value})


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return trained_workspace(tmp_path_factory, "intervals")


def test_identify_and_grid_carry_intervals_and_counts(ws):
    res = identify(ws, "language", "es", ["en"])
    ds_speakers = set(ws.segments["speaker"].iloc[load_feature_test_rows(ws)])
    assert res["bootstrap"]["unit"] == "speaker" and res["bootstrap"]["note"] is None
    assert res["bootstrap"]["n_groups"] == len(ds_speakers)
    for m in res["models"]:
        assert m["precision_lo"] <= m["precision"] <= m["precision_hi"]
        assert m["recall_lo"] <= m["recall"] <= m["recall_hi"]
        assert m["n_test_speakers"] == len(ds_speakers) and m["n_test_segments"] == res["n_test"]
    df = compute_grid(ws, "language", "es", ["en"], identification=res)
    stored = load_grid(ws, "language", "es", ["en"])
    cols = ["precision_lo", "precision_hi", "recall_lo", "recall_hi", "n_test_speakers", "n_test_segments"]
    assert stored[cols].equals(df[cols])
    table = interval_table(df)
    row = df.iloc[0]
    assert table.loc[0, "precision [95% CI]"] == (
        f"{100 * row['precision']:.1f} [{100 * row['precision_lo']:.1f}, {100 * row['precision_hi']:.1f}]"
    )
    assert table.loc[0, "test speakers"] == len(ds_speakers)


def load_feature_test_rows(ws):
    from core.analysis.datasets import load_feature_dataset

    return load_feature_dataset(ws, "language", "es", ["en"]).test_rows


def test_bootstrap_settings_key_the_stored_result(ws):
    default = identify(ws, "language", "es", ["en"])
    other = identify(ws, "language", "es", ["en"], bootstrap=BootstrapConfig(resamples=50, seed=1))
    assert other["inputs"]["content_key"] != default["inputs"]["content_key"]
    assert other["bootstrap"]["resamples"] == 50
    # the point estimates are the same; the intervals were recomputed, not reused
    a, b = default["models"][0], other["models"][0]
    assert a["precision"] == b["precision"]
    assert (a["precision_lo"], a["recall_lo"]) != (b["precision_lo"], b["recall_lo"])
    back = identify(ws, "language", "es", ["en"])
    assert back["models"][0]["precision_lo"] == a["precision_lo"]
    assert load_identification(ws, "language", "es", ["en"])["bootstrap"]["resamples"] == 1000


def test_the_bar_is_judged_on_lower_bounds():
    import pandas as pd

    df = pd.DataFrame(
        {
            "model": ["a", "b", "c"],
            "precision": [0.95, 0.97, 0.99],
            "precision_lo": [0.85, 0.92, 0.91],
            "recall": [0.96, 0.93, 0.95],
            "recall_lo": [0.91, 0.90, 0.88],
            "f1": [0.955, 0.95, 0.97],
        }
    )
    # every point estimate is >= 90/90; only b's lower bounds are
    assert list(at_bar(df)) == [False, True, False]
    assert best_cell(df)["model"] == "b"
    assert best_cell(df.iloc[[0, 2]]) is None


def test_without_a_speaker_column_the_segments_are_resampled_and_said(tmp_path):
    base = build_workspace(str(tmp_path / "base"), n_sae_speakers=30, n_feat_speakers=24, per_speaker=8)
    seg = base.segments.drop(columns=["speaker"])
    ws = Workspace.create(
        str(tmp_path / "nospk"), seg, np.asarray(base.embeddings), embedder="synthetic", sample_rate=16000
    )
    train_models(ws, shapes=((6, 2),), steps=80)
    res = identify(ws, "language", "es", ["en"])
    assert res["bootstrap"]["unit"] == "segment" and res["bootstrap"]["note"] == NO_SPEAKER_NOTE
    assert res["bootstrap"]["n_groups"] == res["n_test"]
    m = res["models"][0]
    assert m["n_test_speakers"] is None and m["interval_unit"] == "segment"
    assert m["precision_lo"] <= m["precision"] <= m["precision_hi"]
    df = compute_grid(ws, "language", "es", ["en"], identification=res)
    assert df["n_test_speakers"].isna().all() and (df["n_test_segments"] == res["n_test"]).all()
