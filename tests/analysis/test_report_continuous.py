"""The report's "Continuous attributes: is there binning?" section on a workspace whose SAE bins
the pitch and not the speech rate: verdict, figure and top latents per measured attribute,
computed through the store."""

from __future__ import annotations

import json

import pytest
from _continuous_synth import MODEL, pitch_workspace

from core.analysis.continuous import KIND, QUESTION
from core.analysis.report import write_report

pytestmark = pytest.mark.slow


def test_the_report_answers_binning_per_measured_attribute(tmp_path):
    ws = pitch_workspace(tmp_path / "p", "bins")
    report, page = write_report(ws, progress=False)
    sec = report["continuous"]
    assert sec["question"] == QUESTION and sec["model"] == MODEL
    by = {a["attribute"]: a for a in sec["attributes"]}
    assert list(by) == ["f0_median_hz", "speech_rate"]  # the measured ones, in their order; not `level`
    f0, rate = by["f0_median_hz"], by["speech_rate"]
    assert f0["binning"] is True and f0["binning_latents"] == [0, 1, 2, 3]
    assert f0["models_binning"] == [MODEL] and f0["n_models"] == 1
    assert f0["reading"].startswith(f"{MODEL}: binning: yes, 4 latents")
    # pitch here is drawn per row, not per speaker: the speaker control keeps the binning
    assert f0["reading"].endswith(
        "binning holds in 1 of 1 models; on the speaker control (speaker means permuted) in 1 of 1"
    )
    assert f0["models_binning_control"] == [MODEL]
    assert [t["latent"] for t in f0["top"]][:4] == [0, 1, 2, 3]
    assert rate["binning"] is False and rate["models_binning"] == []
    assert sec["answer"] == (
        f"{MODEL} bins f0_median_hz (1 of 2 attributes); between speakers only (the binning vanishes in most "
        "models when the speakers' means are permuted): none"
    )
    assert sec["between_speakers_only"] == []
    # the HTML: the question, a figure per attribute (inline chart + its spec), the tables
    assert f"<h2>{QUESTION}</h2>" in page
    assert page.count('data-chart="continuous-') == 2
    assert "<h3>f0_median_hz</h3>" in page and "<h3>speech_rate</h3>" in page
    stored = sorted(p.name for p in (ws.analyses_dir / KIND).glob("*.json"))
    assert stored == [f"{MODEL}~f0_median_hz.json", f"{MODEL}~speech_rate.json"]
    # a second report reuses the stored results
    stamps = {p: p.stat().st_mtime_ns for p in (ws.analyses_dir / KIND).glob("*.json")}
    again, _ = write_report(ws, progress=False)
    assert again["continuous"] == json.loads(json.dumps(sec))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
