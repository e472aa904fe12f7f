"""`summary` and probe_accuracy on constructed workspaces (no synthesis needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import NotFoundError
from core.workspace.summary import probe_accuracy, probe_groups, probe_scores, summary_lines
from core.workspace.workspace import Workspace


def _workspace(tmp_path, separable: bool, seed: int = 0) -> Workspace:
    rng = np.random.default_rng(seed)
    n_spk, per = 40, 8
    rows, emb = [], []
    for s in range(n_spk):
        lang = "es" if s % 2 else "en"
        centre = rng.normal(0, 1, 16)  # each speaker has its own voice
        for _k in range(per):
            x = centre + rng.normal(0, 0.3, 16)
            if separable:
                x[0] += 4.0 if lang == "es" else -4.0
            rows.append(dict(speaker=f"s{s}", language=lang, gender="f", **{"class": "voice"}, split="sae"))
            emb.append(x)
    for _m in range(60):  # music: no speaker, grouped by call
        x = rng.normal(0, 1, 16)
        x[1] += 5.0 if separable else 0.0
        rows.append(dict(speaker="", language="", gender="", **{"class": "music"}, split="sae"))
        emb.append(x)
    seg = pd.DataFrame(rows)
    n = len(seg)
    seg.insert(0, "segment_id", [f"x{i:04d}" for i in range(n)])
    seg.insert(1, "source", [f"call{i // 10}.flac" for i in range(n)])
    seg.insert(2, "start_s", 0.0)
    seg.insert(3, "end_s", 5.0)
    seg.insert(4, "duration_s", 5.0)
    seg["call"] = seg["source"].str.replace(".flac", "", regex=False)
    return Workspace.create(tmp_path / ("sep" if separable else "rand"), seg, np.array(emb, np.float32),
                            embedder="test", sample_rate=16000)  # fmt: skip


def test_probe_separable_vs_random(tmp_path):
    sep = _workspace(tmp_path, True)
    assert probe_accuracy(sep, "language", "es", "en") >= 0.97
    assert probe_accuracy(sep, "class", "music", "voice") >= 0.97
    rand = _workspace(tmp_path, False)
    # speaker-disjoint: a probe cannot memorise voices, so random labels stay near chance
    assert 0.25 <= probe_accuracy(rand, "language", "es", "en") <= 0.75
    scores = probe_scores(rand, "language", "es")  # negative=None: every other non-empty value
    assert scores["negative"] == "rest" and scores["n_positive"] == scores["n_negative"] == 160


def test_probe_groups_keep_speakers_and_calls_together():
    seg = pd.DataFrame({"source": ["a", "a", "b"], "speaker": ["s1", "", ""], "call": ["c1", "c1", "c2"]})
    assert list(probe_groups(seg)) == ["spk:s1", "call:c1", "call:c2"]


def test_probe_errors_name_the_problem(tmp_path):
    ws = _workspace(tmp_path, True)
    with pytest.raises(NotFoundError, match="accent"):
        probe_accuracy(ws, "accent", "es")
    with pytest.raises(NotFoundError, match="'fr'"):
        probe_accuracy(ws, "language", "fr", "en")


def test_summary_lines_and_cli(tmp_path, capsys):
    ws = _workspace(tmp_path, True)
    text = "\n".join(summary_lines(ws))
    assert "segments   380" in text and "speakers 40" in text
    assert "language: es vs en  accuracy" in text and "class: music vs voice  accuracy" in text
    from core.cli import main

    assert main(["summary", "--workspace", str(ws.root)]) == 0
    out = capsys.readouterr().out
    assert "linear probes" in out and "split sae" in out
    assert main(["summary", "--workspace", str(tmp_path / "missing")]) == 2
