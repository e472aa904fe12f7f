"""The report's figures over training seeds: per-seed values, mean and spread, reuse, staleness."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
from _analysis_synth import build_workspace

from core.analysis.report import write_report
from core.analysis.seeds import load_seed_spread, seed_spread, spread_rows
from core.cli import main
from core.training.config import TrainConfig
from core.training.grid import train_grid
from core.workspace.workspace import Workspace

GRID = {"latents": (8, 16), "ks": (2,), "epochs": 2}


@pytest.fixture(scope="module")
def spread_ws(tmp_path_factory):
    """A synthetic workspace trained at seed 0 with GRID, then spread over seeds 0 and 1."""
    torch.set_num_threads(1)
    ws = build_workspace(str(tmp_path_factory.mktemp("seeds") / "w"), n_sae_speakers=40, n_feat_speakers=24)
    train_grid(ws, TrainConfig(**GRID, seed=0), progress=False)
    out = seed_spread(ws, seeds=(0, 1), progress=False, **GRID)
    return ws, out


def test_spread_rows_are_mean_and_sample_sd():
    rows = spread_rows({0: {"a": 1.0, "b": 2.0}, 1: {"a": 3.0}, 2: {"a": 8.0}})
    a, b = rows
    assert a["figure"] == "a" and a["n"] == 3 and a["values"] == {"0": 1.0, "1": 3.0, "2": 8.0}
    assert a["mean"] == pytest.approx(4.0) and a["sd"] == pytest.approx(statistics.stdev([1, 3, 8]))
    assert (a["min"], a["max"]) == (1.0, 8.0)
    assert b["n"] == 1 and b["sd"] == 0.0


def test_seed_zero_reuses_the_workspace_models_and_seed_one_trains_a_replica(spread_ws):
    ws, out = spread_ws
    assert out["seeds"] == [0, 1]
    assert out["models_of"] == {"0": "workspace", "1": "cache/seeds/seed-1"}
    replica = Workspace(ws.cache_dir / "seeds" / "seed-1")
    assert replica.fingerprint == ws.fingerprint
    assert sorted(p.name for p in replica.models_dir.iterdir()) == ["topk-L16-K2", "topk-L8-K2"]
    w0 = (ws.models_dir / "topk-L8-K2" / "sae_weights.safetensors").read_bytes()
    w1 = (replica.models_dir / "topk-L8-K2" / "sae_weights.safetensors").read_bytes()
    assert w0 != w1  # another seed, other weights


def test_every_figure_has_both_seeds_and_the_spread_is_real(spread_ws):
    _, out = spread_ws
    names = {r["figure"] for r in out["figures"]}
    at_bar = "grid cells >= 90/90 (95% CI lower bounds)"
    assert {f"es: {at_bar}", f"music: {at_bar}", "es: focus cell recall"} <= names
    assert "es: best cell min(precision, recall) 95% CI lower bound" in names
    for row in out["figures"]:
        vals = list(row["values"].values())
        assert row["n"] == 2 and row["mean"] == pytest.approx(np.mean(vals))
    assert any(r["sd"] > 0 for r in out["figures"])  # two seeds do not give one answer


def test_a_rerun_trains_nothing(spread_ws, monkeypatch):
    ws, out = spread_ws

    def no_training(*a, **k):
        raise AssertionError("retrained although nothing changed")

    monkeypatch.setattr("core.training.grid.train_grid", no_training)
    assert seed_spread(ws, seeds=(0, 1), progress=False, **GRID) == out
    assert load_seed_spread(ws) == out


def test_the_report_shows_the_spread(spread_ws):
    ws, out = spread_ws
    report, page = write_report(ws, progress=False)
    assert report["seed_spread"]["seeds"] == [0, 1]
    assert "Spread over training seeds 0, 1" in page
    assert "es: focus cell recall" in page


def test_a_changed_workspace_makes_the_spread_stale(tmp_path):
    ws = build_workspace(str(tmp_path / "w"), n_sae_speakers=20, n_feat_speakers=12)
    train_grid(ws, TrainConfig(**GRID, seed=0), progress=False)
    seed_spread(ws, seeds=(0, 1), progress=False, **GRID)
    assert load_seed_spread(ws) is not None
    emb = np.array(ws.embeddings)
    emb[0] += 0.5
    Workspace.create(ws.root, ws.segments, emb, embedder=ws.embedder, sample_rate=16000)
    assert load_seed_spread(ws.root) is None


@pytest.mark.parametrize("seeds", ["0", "1,1", "-1,2"])
def test_bad_seeds_are_one_error_line(seeds, capsys, tmp_path):
    build_workspace(str(tmp_path / "w"), n_sae_speakers=4, n_feat_speakers=4, per_speaker=3)
    rc = main(["seeds", "--workspace", str(tmp_path / "w"), f"--seeds={seeds}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --seeds")


def test_a_replica_follows_a_renamed_column(tmp_path):
    """Same embeddings and values, a column renamed: the fingerprint may not change, the replica must."""
    from core.analysis.seeds import _replica

    ws = build_workspace(str(tmp_path / "w"), n_sae_speakers=4, n_feat_speakers=4, per_speaker=3)
    assert "accent" not in _replica(ws, 1).segments.columns
    renamed = ws.segments.rename(columns={"gender": "accent"})
    ws2 = Workspace.create(ws.root, renamed, np.array(ws.embeddings), embedder=ws.embedder, sample_rate=16000)
    assert "accent" in _replica(ws2, 1).segments.columns


def test_a_replica_keeps_the_window_embeddings(tmp_path):
    """A workspace with windows: its replica has them too (same fingerprint, and `--rows windows` can train)."""
    from core.analysis.seeds import _replica
    from core.workspace.workspace import Windows

    ws = build_workspace(str(tmp_path / "w"), n_sae_speakers=4, n_feat_speakers=4, per_speaker=3)
    emb = np.array(ws.embeddings)
    rows = np.repeat(np.arange(len(emb), dtype=np.int64), 2)
    windowed = Workspace.create(
        ws.root, ws.segments, emb, embedder=ws.embedder, sample_rate=16000, windows=Windows(emb[rows], rows)
    )
    rep = _replica(windowed, 1)
    assert rep.fingerprint == windowed.fingerprint and rep.windows.segment_rows.tolist() == rows.tolist()
    assert _replica(windowed, 1).root == rep.root and Workspace(rep.root).fingerprint == windowed.fingerprint
