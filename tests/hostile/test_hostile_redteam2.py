"""Red team on issues 10 and 12 (measured attributes, window embeddings, `train --pool`, bootstrap
intervals, `continuous`, `report --across`): the cases that were wrong before this file's fixes.

* `continuous` on an attribute with too few distinct values (two values left one quantile bin,
  and a "binning: no" answer from a test that could not say anything): refused, naming the values.
* one test speaker: its bootstrap interval was the point estimate itself ([100, 100]), so a cell
  could pass the lower-bound bar on one person; now [0, 100] with a note.
* a pool workspace changed or deleted after `train --pool`: the models were not flagged; now one
  `warning:` line names the pool workspace and the models, and the analysis still runs.
* `report --across W2` where W2 has no models, only unusable ones, another corpus, or is named
  twice: read as "no other embedder compared" or failed after every analysis had run; now
  refused up front, naming `--across W2`, nothing written.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from _analysis_synth import build_workspace
from _continuous_synth import pitch_workspace
from hostile_harness import assert_refused, run_cli, snapshot

from core.workspace.workspace import Workspace

TINY = ("--latents", "8", "--k", "2", "--epochs", "2", "--threads", "1")


# -- continuous: an attribute with too few values to bin -----------------------------------------
def _with_columns(ws: Workspace, **columns) -> Workspace:
    seg = ws.segments.assign(**columns)
    out = Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000)
    from _continuous_synth import hand_set_sae

    hand_set_sae(out)  # trained on this content: no "trained on other content" warning
    return out


@pytest.mark.parametrize(
    ("values", "needles"),
    [
        (lambda f0: np.where(f0 < 180, 1.0, 2.0), ["takes 2 distinct values (1, 2)", "too few to bin"]),
        (
            lambda f0: np.searchsorted([130.0, 180.0, 230.0], f0).astype(np.int64),
            ["takes 4 distinct values (0, 1, 2, 3)", "needs at least 5", "`identify` analyses it"],
        ),
    ],
    ids=["two values", "int with four values"],
)
def test_continuous_refuses_an_attribute_with_too_few_distinct_values(data_root, values, needles):
    ws = pitch_workspace(data_root / "p", "bins")
    _with_columns(ws, few=values(ws.segments["f0_median_hz"].to_numpy()))
    before = snapshot(data_root)
    out = run_cli("continuous", "--workspace", "p", "--attribute", "few")
    assert_refused(
        out, "workspace p", "attribute 'few'", "300 analysed segments", *needles,
        before=before, roots=[data_root], allow_new=False,
    )  # fmt: skip


def test_continuous_skips_a_few_valued_attribute_and_bins_the_rest(data_root):
    ws = pitch_workspace(data_root / "p", "bins")
    _with_columns(ws, few=np.arange(len(ws)) % 3)
    out = run_cli("continuous", "--workspace", "p", "--json")
    assert out.rc == 0 and not out.error_lines, out
    assert "warning: skipped: workspace p: attribute 'few' takes 3 distinct values" in out.err
    verdicts = {r["attribute"]: r["binning"] for r in map(json.loads, out.out.splitlines()) if "binning" in r}
    assert verdicts == {"f0_median_hz": True, "speech_rate": False}


def test_five_distinct_values_are_still_a_continuum(data_root):
    ws = pitch_workspace(data_root / "p", "bins")
    f0 = ws.segments["f0_median_hz"].to_numpy()
    _with_columns(ws, coarse=np.round((f0 - 80.0) / 50.0))  # 0..4: five steps of pitch
    out = run_cli("continuous", "--workspace", "p", "--attribute", "coarse", "--json")
    assert out.rc == 0, out
    verdict = json.loads(out.out.splitlines()[-1])
    assert verdict["attribute"] == "coarse" and verdict["binning"] is True


# -- intervals: one test speaker ---------------------------------------------------------------
def test_one_test_speaker_has_no_interval(trained_ws, data_root):
    """Two feature speakers whose segments hold both moods: the split puts one in test."""
    ws = Workspace.open("w")
    seg = ws.segments.copy()
    feat = np.flatnonzero(seg["split"].to_numpy() == "feature")
    seg.loc[feat, "speaker"] = np.where(np.arange(len(feat)) % 2 == 0, "fa", "fb")
    # the mood follows the language direction, so some latent detects it perfectly
    seg["mood"] = np.where(seg["language"].to_numpy() == "es", "happy", "calm")
    Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000)
    out = run_cli("identify", "--workspace", "w", "--attribute", "mood", "--positive", "happy")
    assert out.rc == 0, out
    assert "bootstrap interval over 1 test speakers" in out.out
    assert "note: one test speaker: no interval" in out.out
    out = run_cli("identify", "--workspace", "w", "--attribute", "mood", "--positive", "happy", "--json")
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert rows and all(r["n_test_speakers"] == 1 for r in rows)
    for r in rows:
        assert (r["precision_lo"], r["precision_hi"], r["recall_lo"], r["recall_hi"]) == (0.0, 1.0, 0.0, 1.0)
    assert max(r["f1"] for r in rows) > 0.7  # the point estimate stays; only its interval is unknown

    from core.analysis.grid import at_bar

    assert not at_bar(pd.DataFrame(rows)).any()  # no cell reaches the bar on one person


def test_two_test_speakers_still_get_a_bootstrap_interval():
    from core.analysis.intervals import BootstrapPlan

    plan = BootstrapPlan.from_groups(["a", "a", "b", "b"])
    ci = plan.intervals([True, False, True, True], [True, False, False, True])
    assert plan.note is None
    assert ci.precision_lo == pytest.approx(0.5) and ci.precision_hi == pytest.approx(1.0)
    assert ci.recall_lo == ci.recall_hi == pytest.approx(1.0)


# -- train --pool: the pool workspace changed or gone afterwards ---------------------------------
@pytest.fixture
def pooled(trained_ws, data_root):
    """w's model topk-L8-K2 trained with the rows of pool workspace p."""
    build_workspace("p", seed=1, n_sae_speakers=8, n_feat_speakers=4, per_speaker=6)
    out = run_cli("train", "--workspace", "w", *TINY, "--pool", "p")
    assert out.rc == 0, out
    return data_root / "p"


IDENTIFY = ("identify", "--workspace", "w", "--attribute", "language", "--positive", "es")


def test_a_model_of_an_unchanged_pool_is_not_flagged(pooled):
    out = run_cli(*IDENTIFY)
    assert out.rc == 0 and "pool workspace" not in out.err, out


def test_a_pool_workspace_changed_after_training_is_said(pooled):
    first = run_cli(*IDENTIFY, "--json")
    build_workspace("p", seed=2, n_sae_speakers=8, n_feat_speakers=4, per_speaker=6)  # new content
    out = run_cli(*IDENTIFY, "--json")
    assert out.rc == 0 and not out.error_lines, out
    warns = [line for line in out.err.splitlines() if "pool workspace" in line]
    assert warns == [
        f"warning: model(s) topk-L8-K2 were trained with the rows of pool workspace p as it was; {pooled} "
        "has changed since (`python -m core train --pool p` retrains them)"
    ]
    assert out.out == first.out  # the same weights on the same rows: the same (stored) answer
    retrain = run_cli("train", "--workspace", "w", *TINY, "--pool", "p")
    assert "trained 1 model(s), 0 already up to date" in retrain.out, retrain
    assert "pool workspace" not in run_cli(*IDENTIFY).err


def test_a_pool_workspace_deleted_after_training_is_said(pooled):
    shutil.rmtree(pooled)
    out = run_cli("continuous", "--workspace", "w")  # any analysis command: the warning comes first
    assert (
        f"warning: model(s) topk-L8-K2 were trained with the rows of pool workspace p as it was; {pooled} is gone"
        in out.err
    )
    out = run_cli(*IDENTIFY)
    assert out.rc == 0 and "pool workspace p as it was" in out.err, out


# -- report --across: refused before any work ---------------------------------------------------
def _twin(trained_ws, name: str, *, segments=None, models: bool = True) -> Workspace:
    """w's corpus under another embedder name (with w's models when `models`)."""
    seg = pd.read_parquet(trained_ws / "segments.parquet") if segments is None else segments
    ws = Workspace.create(
        name, seg, np.load(trained_ws / "embeddings.npy"), embedder="other", sample_rate=16000
    )
    if models:
        shutil.copytree(trained_ws / "models", ws.models_dir)
    return ws


def _across_refused(data_root, *across, needles):
    before = snapshot(data_root)
    argv = [a for name in across for a in ("--across", name)]
    out = run_cli("report", "--workspace", "w", *argv)
    line = assert_refused(out, *needles, before=before, roots=[data_root], allow_new=False)
    assert not (data_root / "w" / "analyses").exists()  # refused before analyze ran
    return out, line


def test_across_a_workspace_without_models(trained_ws, data_root):
    _twin(trained_ws, "w2", models=False)
    _across_refused(data_root, "w2", needles=["report: --across w2", "workspace w2 has no trained models"])


def test_across_a_workspace_whose_models_are_all_corrupt(trained_ws, data_root):
    other = _twin(trained_ws, "w2")
    for cfg in other.models_dir.glob("*/cfg.json"):
        cfg.write_text("{")
    _across_refused(
        data_root,
        "w2",
        needles=[
            "report: --across w2",
            "workspace w2: no usable model",
            "topk-L8-K2 (cfg.json",
            "topk-L16-K2",
        ],
    )


def test_across_a_workspace_with_one_corrupt_model_says_so_and_keeps_it(trained_ws, data_root, capsys):
    from core.analysis.universality import check_across

    other = _twin(trained_ws, "w2")
    (other.models_dir / "topk-L16-K2" / "cfg.json").write_text("[]")
    (checked,) = check_across(Workspace.open("w"), ["w2"])  # what `report` calls before any work
    assert checked.root == other.root
    err = capsys.readouterr().err
    assert "warning: " in err and "topk-L16-K2" in err and "not an object" in err


def test_across_another_corpus(trained_ws, data_root):
    seg = pd.read_parquet(trained_ws / "segments.parquet")
    _twin(trained_ws, "w3", segments=seg.assign(segment_id=[f"x{i}" for i in range(len(seg))]))
    _across_refused(data_root, "w3", needles=["report: --across w3", "share 0 segment id(s)", "at least 30"])


def test_across_the_same_workspace_twice(trained_ws, data_root):
    other = _twin(trained_ws, "w2")
    _across_refused(
        data_root, "w2", str(other.root), needles=[f"--across {other.root}:", "is already named (as w2)"]
    )


def test_across_a_workspace_of_the_same_embedder(trained_ws, data_root):
    seg = pd.read_parquet(trained_ws / "segments.parquet")
    same = Workspace.create(
        "w4", seg, np.load(trained_ws / "embeddings.npy"), embedder=Workspace.open("w").embedder,
        sample_rate=16000,
    )  # fmt: skip
    shutil.copytree(trained_ws / "models", same.models_dir)
    _across_refused(
        data_root, "w4", needles=["report: --across w4", "is embedded with", "too", "--model-workspace"]
    )


# -- train --rows windows: a window file edited by hand ------------------------------------------
def test_a_nan_window_is_named_by_its_window_and_file(trained_ws, data_root):
    from core.workspace.workspace import Windows

    ws = Workspace.open("w")
    emb = np.asarray(ws.embeddings)
    rows = np.repeat(np.arange(len(emb)), 3)
    Workspace.create(ws.root, ws.segments, emb, embedder="synthetic", sample_rate=16000,
                     windows=Windows(np.repeat(emb, 3, axis=0) * 0.9, rows))  # fmt: skip
    win = np.load(trained_ws / "windows.npy")
    sae_row = int(np.flatnonzero(ws.segments["split"].to_numpy() == "sae")[2])
    win[3 * sae_row + 1, 4] = np.nan  # the second window of a training segment, edited by hand
    np.save(trained_ws / "windows.npy", win)
    before = snapshot(data_root)
    out = run_cli("train", "--workspace", "w", *TINY, "--rows", "windows")
    sid = ws.segments["segment_id"].iloc[sae_row]
    assert_refused(
        out,
        "1 window row(s) contain NaN or inf",
        f"first: window {3 * sae_row + 1} of {trained_ws / 'windows.npy'}, segment row {sae_row}, segment {sid}",
        before=before,
        roots=[data_root],
    )
