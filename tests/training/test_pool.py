"""`train --pool`: a workspace's SAEs trained on its own and other workspaces' training rows, the
pool recorded and keyed, and a small workspace analysed with a pool-trained grid
(`--model-workspace`). Bad pools are in tests/hostile/test_hostile_pool.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _analysis_synth import build_workspace

from core.analysis.identification import identify, load_identification
from core.cli import main as cli_main
from core.constants import SAE_CFG_JSON, SAE_WEIGHTS_SAFETENSORS
from core.dashboard.overview import models_table
from core.sae.catalog import file_sha256, get_model
from core.training.config import TrainConfig
from core.training.grid import grid_specs, training_rows
from core.workspace.workspace import Workspace

TINY = ("--latents", "8", "--k", "2", "--epochs", "2", "--threads", "1")
MODEL = "topk-L8-K2"


@pytest.fixture
def two(monkeypatch):
    """'small' (the analysed workspace) and 'big' (another corpus in the same embedding space)."""
    small = build_workspace("small", seed=0, n_sae_speakers=12, n_feat_speakers=16, per_speaker=6)
    big = build_workspace("big", seed=1, n_sae_speakers=30, n_feat_speakers=4, per_speaker=6)
    return small, big


def _cfg(ws: Workspace) -> dict:
    return json.loads((ws.models_dir / MODEL / SAE_CFG_JSON).read_text())["voxsae"]


def _train(ws: str, *flags: str) -> int:
    return cli_main(["train", "--workspace", ws, *TINY, *flags])


def test_pooled_model_trains_on_the_union_and_records_its_pool(two, capsys):
    small, big = two
    assert _train("small", "--pool", "big") == 0
    ours = _cfg(small)
    n_small, n_big = len(training_rows(small)), len(training_rows(big))
    assert ours["training"]["n_train"] + ours["training"]["n_val"] == n_small + n_big
    assert ours["pool"] == [
        {"name": "big", "fingerprint": big.fingerprint, "path": str(big.root), "n_rows": n_big}
    ]
    # the overview names the pool with its rows
    table = models_table(small)
    assert table.loc[table["model"] == MODEL, "pool"].iloc[0] == (
        f"big ({n_big:,} rows, fingerprint {big.fingerprint[:8]})"
    )


def test_the_pool_keys_the_model_both_ways(two, capsys):
    small, _ = two
    assert _train("small") == 0
    alone = _cfg(small)
    weights_alone = (small.models_dir / MODEL / SAE_WEIGHTS_SAFETENSORS).read_bytes()
    assert (
        "pool" not in alone
        and get_model(small, MODEL).version
        == file_sha256(small.models_dir / MODEL / SAE_WEIGHTS_SAFETENSORS)[:16]
    )  # a model trained alone keeps the plain weights hash (no stored result goes stale)
    capsys.readouterr()
    assert _train("small", "--pool", "big") == 0
    assert "trained 1 model(s), 0 already up to date" in capsys.readouterr().out  # not reused
    pooled = _cfg(small)
    assert pooled["train_key"] != alone["train_key"]
    assert (small.models_dir / MODEL / SAE_WEIGHTS_SAFETENSORS).read_bytes() != weights_alone
    version = get_model(small, MODEL).version
    assert version != file_sha256(small.models_dir / MODEL / SAE_WEIGHTS_SAFETENSORS)[:16]  # the pool keys it
    assert _train("small", "--pool", "big") == 0
    assert "trained 0 model(s), 1 already up to date" in capsys.readouterr().out  # same pool: cached
    assert _train("small") == 0
    assert "trained 1 model(s), 0 already up to date" in capsys.readouterr().out  # alone again: retrained
    assert _cfg(small)["train_key"] == alone["train_key"]


def test_a_changed_pool_workspace_changes_the_key(two):
    small, big = two
    cfg = TrainConfig(latents=(8,), ks=(2,), epochs=2, pool=("big",))
    before = grid_specs(small, cfg)[0].key
    seg = big.segments
    Workspace.create("big", seg, np.asarray(big.embeddings) * 1.01, embedder=big.embedder, sample_rate=16000)
    assert grid_specs(small, cfg)[0].key != before
    assert grid_specs(small, TrainConfig(latents=(8,), ks=(2,), epochs=2))[0].key != before


def test_a_small_workspace_analysed_with_a_pool_trained_grid(two, capsys):
    small, big = two
    # the big workspace's grid, trained with the small one's rows too; the small one analyses with it
    assert _train("big", "--pool", "small") == 0
    assert _cfg(big)["pool"][0]["name"] == "small"
    res = identify("small", "language", "es", ["en"], model_workspace="big")
    m = res["models"][0]
    assert m["model"] == MODEL and m["model_workspace"] == "big"
    assert 0 <= m["precision_lo"] <= m["precision"] <= m["precision_hi"] <= 1
    assert load_identification("small", "language", "es", ["en"], model_workspace="big") is not None
    capsys.readouterr()
    assert (
        cli_main(
            ["identify", "--workspace", "small", "--attribute", "language", "--positive", "es"]
            + ["--model-workspace", "big", "--json"]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.splitlines()[0])["model"] == MODEL
    # retrained alone: the stored identification (keyed on the pooled model) is not shown again
    assert _train("big") == 0
    assert load_identification("small", "language", "es", ["en"], model_workspace="big") is None
