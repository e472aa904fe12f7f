"""core.analysis.continuous: Spearman per latent against a naive scipy loop, the binning test's
ranges and mi against naive per-latent loops, the verdict on workspaces built to bin or to track
an attribute, and the store (reused while fresh, recomputed when the attribute changes)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from _continuous_synth import BANDS, MODEL, pitch_workspace
from sklearn.metrics import mutual_info_score

from core.analysis.continuous import (
    ACTIVATION_LEVELS,
    KIND,
    MIN_ACTIVE_SPEARMAN,
    ContinuousSettings,
    bin_statistics,
    continuous,
    group_ranks,
    load_continuous,
    ordered_cover,
    quantile_bins,
    result_name,
    spearman_columns,
)
from core.analysis.store import ResultStore
from core.cli import main as cli_main
from core.workspace.workspace import Workspace


def _sparse(n=400, d=14, seed=0):
    """Random sparse activations with ties, a dead latent, a latent active once, a monotone one."""
    rng = np.random.default_rng(seed)
    attr = np.round(rng.normal(size=n), 1)  # tied values, like a discrete synthesis parameter
    z = np.maximum(rng.normal(size=(n, d)) - 0.8, 0) * (rng.random((n, d)) < 0.6)
    z[:, 0] = 0
    z[:, 1] = 0
    z[7, 1] = 2.0
    z[:, 2] = np.maximum(attr, 0)
    z[:, 3] = np.round(z[:, 3], 1)  # tied activations
    r, c = np.nonzero(z > 0)
    return z, attr, r, c, z[r, c]


def test_group_ranks_are_scipy_average_ranks_per_group():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 5, 200)
    v = np.round(rng.normal(size=200), 1)
    got = group_ranks(g, v)
    for k in range(5):
        np.testing.assert_allclose(got[g == k], scipy.stats.rankdata(v[g == k]))


def test_spearman_matches_a_naive_scipy_loop_over_latents():
    z, attr, r, c, v = _sparse()
    rho, rho_act, m = spearman_columns(r, c, v, attr, z.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on the constant columns it returns NaN for
        for j in range(z.shape[1]):
            ref = scipy.stats.spearmanr(z[:, j], attr).statistic
            on = z[:, j] > 0
            ref_act = (
                scipy.stats.spearmanr(z[on, j], attr[on]).statistic
                if on.sum() >= MIN_ACTIVE_SPEARMAN
                else np.nan
            )
            assert m[j] == on.sum()
            np.testing.assert_allclose(rho[j], ref, atol=1e-10, equal_nan=True)
            np.testing.assert_allclose(rho_act[j], ref_act, atol=1e-10, equal_nan=True)
    assert np.isnan(rho[0]) and np.isnan(rho_act[1])  # dead; active once
    assert rho[2] > 0.85


def test_bin_ranges_and_mi_match_naive_loops():
    z, attr, r, c, v = _sparse(seed=2)
    n, d = z.shape
    edges, which = quantile_bins(attr, 10)
    nb = len(edges) - 1
    st = bin_statistics(r, c, v, which, nb, d, 0.8)
    pop = np.bincount(which, minlength=nb)
    for j in range(2, d):
        share = np.array([z[which == b, j].mean() for b in range(nb)])
        share = share / share.sum()
        # the shortest window holding >= 80 %, the heaviest of that width
        best = min(
            (hi - lo, -share[lo : hi + 1].sum(), lo, hi)
            for lo in range(nb)
            for hi in range(lo, nb)
            if share[lo : hi + 1].sum() >= 0.8 - 1e-9
        )
        assert (st.bin_lo[j], st.bin_hi[j]) == (best[2], best[3])
        assert st.mass_in_range[j] == pytest.approx(-best[1])
        on = z[:, j] > 0
        in_range = (which >= best[2]) & (which <= best[3])
        assert st.firing_in_range[j] == pytest.approx(on[in_range].sum() / pop[best[2] : best[3] + 1].sum())
        # mi: off, or the quantile level of the active value among the latent's active values
        level = np.zeros(n, int)
        ranks = scipy.stats.rankdata(z[on, j])
        level[on] = 1 + np.minimum(
            ((ranks - 0.5) / on.sum() * ACTIVATION_LEVELS).astype(int), ACTIVATION_LEVELS - 1
        )
        assert st.mi[j] == pytest.approx(mutual_info_score(level, which) / np.log(2), abs=1e-9)


def test_ordered_cover_takes_ordered_ranges_sharing_at_most_one_bin():
    #               0       1       2       3       4       5
    lo = np.array([0, 2, 3, 5, 0, 6])
    hi = np.array([2, 4, 6, 9, 9, 9])
    mi = np.array([0.5, 0.4, 0.9, 1.5, 0.1, 0.8])
    # 0 [0-2], 1 [2-4] share bin 2, then 3 [5-9]: all 10 bins (0, 2, 5 too, with less mi);
    # 2 [3-6] shares 2 bins with 1; 4 is no candidate
    chosen, covered = ordered_cover(lo, hi, mi, np.array([True, True, True, True, False, True]))
    assert (chosen, covered) == ([0, 1, 3], 10)
    # without 3: 5 [6-9] after 1 leaves bin 5 out; after 2 [3-6] it shares bin 6 -> 0, 2, 5 covers all
    chosen, covered = ordered_cover(lo, hi, mi, np.array([True, True, True, False, False, True]))
    assert (chosen, covered) == ([0, 2, 5], 10)
    assert ordered_cover(lo, hi, mi, np.zeros(6, bool)) == ([], 0)


def test_quantile_bins_merge_tied_edges():
    attr = np.array([1.0] * 60 + [2.0] * 20 + [3.0] * 20)
    edges, which = quantile_bins(attr, 10)
    assert edges.tolist() == [1.0, 2.0, 3.0]
    assert np.bincount(which).tolist() == [60, 40]


def test_latents_that_fire_on_pitch_bands_bin_it_in_order(tmp_path):
    ws = pitch_workspace(tmp_path / "bins", "bins")
    res = continuous(ws, MODEL, "f0_median_hz")
    assert res.binning is True
    assert res.binning_latents == [0, 1, 2, 3]  # the band latents, ordered along the pitch
    assert res.rows_from == "feature split" and res.n_rows == 300
    by = res.latents.set_index("latent")
    width = (res.edges[-1] - res.edges[0]) / (len(res.edges) - 1) * 1.6  # a quantile bin, and margin
    for i, (lo, hi) in enumerate(BANDS):
        assert lo - width <= by.at[i, "range_lo"] < by.at[i, "range_hi"] <= hi + width
        assert by.at[i, "mass_in_range"] >= 0.8
        assert by.at[i, "concentrated"]
        assert by.at[i, "mi"] > 0.4
    lows = [by.at[i, "range_lo"] for i in range(4)]
    highs = [by.at[i, "range_hi"] for i in range(4)]
    assert lows == sorted(lows) and highs == sorted(highs)
    # neighbours share at most the quantile bin their boundary falls in
    assert all(by.at[i, "bin_hi"] <= by.at[i + 1, "bin_lo"] for i in range(3))
    assert res.cover >= 0.8
    # the noise latents fire on every band: not concentrated, little information
    assert not by.at[4, "concentrated"] and not by.at[5, "concentrated"]
    assert by.at[4, "mi"] < 0.1
    # the pitch-band latents know nothing of the speech rate
    assert continuous(ws, MODEL, "speech_rate").binning is False


def test_a_latent_tracking_pitch_linearly_is_no_binning(tmp_path):
    ws = pitch_workspace(tmp_path / "linear", "linear")
    res = continuous(ws, MODEL, "f0_median_hz")
    assert res.binning is False and res.binning_latents == []
    by = res.latents.set_index("latent")
    assert by.at[0, "spearman"] > 0.99 and by.at[0, "spearman_active"] > 0.99
    assert not by.at[0, "concentrated"]
    assert by.at[0, "bin_hi"] - by.at[0, "bin_lo"] + 1 > 5  # 80 % of a linear ramp needs most bins
    assert "strongest monotone latent 0 (spearman +1.00)" in res.verdict()


def test_stored_result_is_reused_and_recomputed_when_the_attribute_changes(tmp_path):
    ws = pitch_workspace(tmp_path / "bins", "bins")
    res = continuous(ws, MODEL, "f0_median_hz")
    path = ResultStore(ws).path(KIND, result_name(MODEL, "f0_median_hz"))
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    again = load_continuous(ws, MODEL, "f0_median_hz")
    assert again is not None and again.binning_latents == res.binning_latents
    assert continuous(ws, MODEL, "f0_median_hz").cover == res.cover and path.stat().st_mtime_ns == stamp
    # other settings are another result
    assert load_continuous(ws, MODEL, "f0_median_hz", settings=ContinuousSettings(n_bins=5)) is None
    # the attribute column reversed: the old result is stale, the new one ranks the bands backwards
    seg = ws.segments.copy()
    seg["f0_median_hz"] = 360.0 - seg["f0_median_hz"]
    ws2 = Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000)
    assert load_continuous(ws2, MODEL, "f0_median_hz") is None
    flipped = continuous(ws2, MODEL, "f0_median_hz")
    assert flipped.binning_latents == [3, 2, 1, 0]


def test_no_split_column_analyses_every_segment(tmp_path):
    ws = pitch_workspace(tmp_path / "bins", "bins")
    seg = ws.segments.drop(columns=["split"])
    ws2 = Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000)
    res = continuous(ws2, MODEL, "f0_median_hz")
    assert res.rows_from == "all segments" and res.n_rows == 600 and res.binning


def test_non_finite_values_are_left_out(tmp_path):
    ws = pitch_workspace(tmp_path / "bins", "bins")
    seg = ws.segments.copy()
    seg.loc[seg.index[:40], "f0_median_hz"] = np.nan  # e.g. music: no F0
    seg.loc[seg.index[40:50], "f0_median_hz"] = np.inf
    ws2 = Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000)
    feature = (seg["split"] == "feature").to_numpy()
    finite = np.isfinite(seg["f0_median_hz"].to_numpy())
    res = continuous(ws2, MODEL, "f0_median_hz")
    assert res.n_rows == int((feature & finite).sum()) < 300
    assert res.binning


def test_cli_json_rows(tmp_path, capsys):
    ws = pitch_workspace(tmp_path / "bins", "bins")
    assert cli_main(["continuous", "--workspace", str(ws.root), "--attribute", "f0_median_hz", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    latent_rows, verdicts = rows[:-1], rows[-1:]
    assert verdicts == [
        {"model": MODEL, "attribute": "f0_median_hz", "binning": True, "latents": [0, 1, 2, 3]}
    ]
    keys = {
        "model",
        "attribute",
        "latent",
        "spearman",
        "spearman_active",
        "range_lo",
        "range_hi",
        "mass_in_range",
        "mi",
    }
    assert all(set(r) == keys for r in latent_rows)
    assert sorted(r["latent"] for r in latent_rows) == list(range(6))
    frame = pd.DataFrame(latent_rows).set_index("latent")
    assert frame.loc[0, "spearman_active"] is None or np.isnan(
        frame.loc[0, "spearman_active"]
    )  # constant 1.0
    assert frame.loc[3, "spearman"] > 0.5 and frame.loc[0, "spearman"] < -0.5


def test_cli_text_every_attribute(tmp_path, capsys):
    ws = pitch_workspace(tmp_path / "bins", "bins")
    assert cli_main(["continuous", "--workspace", str(ws.root)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert f"{MODEL} / f0_median_hz: 300 segments (feature split)" in out
    assert "binning: yes, 4 latents" in out and f"{MODEL} / speech_rate" in out
    # `level` is constant on the analysed rows: skipped and said, not the command's error
    assert "warning: skipped: workspace bins: attribute 'level' is constant (3)" in captured.err


# -- the speaker control --------------------------------------------------------------------------
def test_speaker_control_moves_each_speakers_mean_and_keeps_its_deviations():
    from core.analysis.continuous import speaker_control

    values = np.array([1.0, 3.0, 10.0, 12.0, 100.0])
    speakers = np.array(["a", "a", "b", "b", "c"])
    out = speaker_control(values, speakers, seed=3)
    means = {"a": 2.0, "b": 11.0, "c": 100.0}
    # deviations within a speaker are kept; the means are a permutation of the speakers' means
    assert out[1] - out[0] == 2.0 and out[3] - out[2] == 2.0
    new_means = [out[:2].mean(), out[2:4].mean(), out[4]]
    assert sorted(new_means) == sorted(means.values())
    assert new_means != list(means.values())  # seed 3 moves them (seeded: the same every run)
    np.testing.assert_array_equal(out, speaker_control(values, speakers, seed=3))


def test_binning_between_speakers_vanishes_on_the_speaker_control(tmp_path):
    from _continuous_synth import embeddings_for, hand_set_sae, pitch_rows

    from core.analysis.continuous import continuous

    # each speaker has one pitch (plus a little intonation): the band latents are voice groups
    seg = pitch_rows(600, 0)
    rng = np.random.default_rng(5)
    centre = {s: rng.uniform(BANDS[0][0] + 5, BANDS[-1][1] - 5) for s in seg["speaker"].unique()}
    seg["f0_median_hz"] = [centre[s] + rng.normal(0, 2) for s in seg["speaker"]]
    ws = Workspace.create(
        tmp_path / "voices", seg, embeddings_for(seg["f0_median_hz"].to_numpy(), "bins", 0),
        embedder="synthetic", sample_rate=16000,
    )  # fmt: skip
    hand_set_sae(ws)
    res = continuous(ws, MODEL, "f0_median_hz")
    assert res.binning and res.control_binning is False
    assert "speaker control: binning no" in res.control_text()
    # pitch drawn per row (the shared fixture): the binning follows pitch within speakers too
    per_row = continuous(pitch_workspace(tmp_path / "rows", "bins"), MODEL, "f0_median_hz")
    assert per_row.binning and per_row.control_binning is True
