"""`continuous` as a hostile user would call it: an attribute that is not numeric, unknown, a
segment column, too sparse or constant on the analysed rows; an unknown model; a workspace with no
continuous attribute, or none usable, or no models; a corrupt stored result under --json; a
read-only disk.

Each refusal: exit 2, one `error:` line naming the input and what is wrong, no traceback, every
file byte-identical and nothing left behind (the command stores nothing before it has checked
its inputs).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _continuous_synth import MODEL, pitch_workspace
from hostile_harness import assert_refused, read_only, run_cli, snapshot

from core.workspace.workspace import Workspace

CONTINUOUS = "continuous attributes: level, f0_median_hz, speech_rate"


@pytest.fixture
def ws(data_root) -> Workspace:
    """The pitch-band workspace (its SAE bins f0_median_hz) at VOXSAE_DATA/p."""
    return pitch_workspace(data_root / "p", "bins")


def refused(data_root, *argv, needles, workspace="p"):
    before = snapshot(data_root)
    out = run_cli("continuous", "--workspace", workspace, *argv)
    return assert_refused(out, *needles, before=before, roots=[data_root], allow_new=False)


def _rewrite(ws: Workspace, **columns) -> Workspace:
    seg = ws.segments.copy()
    for name, values in columns.items():
        if values is None:
            seg = seg.drop(columns=[name])
        else:
            seg[name] = values
    return Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000)


@pytest.mark.parametrize(
    ("attribute", "needles"),
    [
        (
            "language",
            ["workspace p", "attribute 'language' is not numeric", "holds str values", CONTINUOUS],
        ),
        ("pitch", ["workspace p", "no attribute 'pitch'", CONTINUOUS]),
        ("duration_s", ["'duration_s' is a segment column, not an attribute", CONTINUOUS]),
        ("level", ["attribute 'level' is constant (3) on the 300 analysed segments (feature split)"]),
        ("", ["no attribute ''"]),
    ],
    ids=["not numeric", "unknown", "segment column", "constant", "empty"],
)
def test_a_bad_attribute(ws, data_root, attribute, needles):
    refused(data_root, "--attribute", attribute, needles=needles)


def test_a_boolean_column_is_not_a_continuum(ws, data_root):
    _rewrite(ws, flag=np.arange(len(ws)) % 2 == 0)
    refused(
        data_root, "--attribute", "flag", needles=["attribute 'flag' is not numeric", "holds bool values"]
    )


def test_an_attribute_with_too_few_finite_values(ws, data_root):
    f0 = ws.segments["f0_median_hz"].to_numpy().copy()
    f0[20:] = np.nan  # e.g. every segment but a few is music: no F0
    f0[:5] = np.inf
    _rewrite(ws, f0_median_hz=f0)
    refused(
        data_root,
        "--attribute",
        "f0_median_hz",
        needles=[
            "attribute 'f0_median_hz' has 5 finite value(s) among the 300 analysed segments",
            "at least 30",
        ],
    )


def test_an_unknown_model(ws, data_root):
    refused(data_root, "--model", "topk-L99-K2", needles=["workspace p", "no model 'topk-L99-K2'", MODEL])


def test_a_workspace_with_no_continuous_attribute(ws, data_root):
    _rewrite(ws, level=None, f0_median_hz=None, speech_rate=None)
    refused(data_root, needles=["workspace p has no continuous attributes", "numeric metadata columns"])


def test_a_workspace_whose_continuous_attributes_are_all_unusable(ws, data_root):
    _rewrite(ws, f0_median_hz=None, speech_rate=np.full(len(ws), np.nan))
    refused(
        data_root,
        needles=[
            "no continuous attribute can be analysed",
            "'level' is constant",
            "'speech_rate' has 0 finite",
        ],
    )


def test_a_workspace_without_models(ws, data_root):
    shutil.rmtree(ws.models_dir)
    refused(data_root, "--attribute", "f0_median_hz", needles=["workspace p", "no trained models"])


def test_an_unknown_workspace(data_root):
    refused(data_root, needles=["nope"], workspace="nope")


def test_json_with_a_corrupt_stored_result_recomputes_and_prints_only_json(ws, data_root):
    first = run_cli("continuous", "--workspace", "p", "--attribute", "f0_median_hz", "--json")
    assert first.rc == 0, first
    stored = next((ws.analyses_dir / "continuous").glob("*.json"))
    stored.write_text('{"latents": [1, 2')  # a write that was cut off
    out = run_cli("continuous", "--workspace", "p", "--attribute", "f0_median_hz", "--json")
    assert out.rc == 0 and not out.error_lines, out
    assert "corrupt stored result" in out.err and str(stored) in out.err  # said once, on stderr
    rows = [json.loads(line) for line in out.out.splitlines()]  # stdout stays JSON rows only
    assert rows == [json.loads(line) for line in first.out.splitlines()]
    assert rows[-1]["binning"] is True and rows[-1]["latents"] == [0, 1, 2, 3]
    assert json.loads(stored.read_text())["binning"] is True  # rewritten whole


def test_a_skipped_attribute_is_a_warning_not_json(ws, data_root):
    out = run_cli("continuous", "--workspace", "p", "--json")
    assert out.rc == 0 and not out.error_lines, out
    assert "warning: skipped: workspace p: attribute 'level' is constant" in out.err
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert {r["attribute"] for r in rows} == {"f0_median_hz", "speech_rate"}


def test_a_read_only_workspace(disk, monkeypatch):
    monkeypatch.setenv("VOXSAE_DATA", str(disk))
    pitch_workspace(disk / "p", "bins")
    before = snapshot(disk)
    with read_only(disk):
        out = run_cli("continuous", "--workspace", "p", "--attribute", "f0_median_hz")
    assert_refused(out, "cannot write", "Read-only file system", before=before, roots=[disk], allow_new=False)
