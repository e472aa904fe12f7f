"""Fixtures of the hostile-input suite: a trained workspace (and one with every analysis stored)
copied fresh into each test's own VOXSAE_DATA, its metadata as a CSV, and a tmpfs to fill up or
make read-only."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hostile_harness import run_cli, small_disk

WORKSPACE = "w"
"""Name of the trained workspace each test gets in its data root."""
MODELS = ("topk-L8-K2", "topk-L16-K2")


@pytest.fixture(scope="session")
def _trained_template(tmp_path_factory) -> Path:
    """Once per test process: the synthetic analyses workspace with a tiny trained grid (L8, L16 x K2)."""
    import torch
    from _analysis_synth import build_workspace

    from core.training.config import TrainConfig
    from core.training.grid import train_grid

    root = tmp_path_factory.mktemp("hostile_template") / WORKSPACE
    ws = build_workspace(str(root), n_sae_speakers=40, n_feat_speakers=24, per_speaker=10)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_grid(ws, TrainConfig(latents=(8, 16), ks=(2,), epochs=2), progress=False)
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture
def data_root(_isolated_data_root) -> Path:
    """This test's VOXSAE_DATA (empty but for what the test puts there)."""
    return Path(_isolated_data_root)


@pytest.fixture
def trained_ws(_trained_template, data_root) -> Path:
    """A fresh copy of the trained workspace at VOXSAE_DATA/w."""
    dest = data_root / WORKSPACE
    shutil.copytree(_trained_template, dest)
    return dest


@pytest.fixture(scope="session")
def _analysed_template(_trained_template, tmp_path_factory) -> Path:
    """Once per test process: the trained workspace after `analyze` and `dashboard-cache --no-umap`
    (every analysis result, the activations and the latent indexes stored)."""
    import os

    root = tmp_path_factory.mktemp("hostile_analysed")
    shutil.copytree(_trained_template, root / WORKSPACE)
    old = os.environ.get("VOXSAE_DATA")
    os.environ["VOXSAE_DATA"] = str(root)
    try:
        for argv in (("analyze",), ("dashboard-cache", "--no-umap")):
            out = run_cli(*argv, "--workspace", WORKSPACE)
            assert out.rc == 0, out
    finally:
        os.environ["VOXSAE_DATA"] = old or ""
    return root / WORKSPACE


@pytest.fixture
def analysed_ws(_analysed_template, data_root) -> Path:
    """A fresh copy of the analysed workspace at VOXSAE_DATA/w."""
    return Path(shutil.copytree(_analysed_template, data_root / WORKSPACE))


@pytest.fixture
def metadata_csv(trained_ws, tmp_path) -> Path:
    """The trained workspace's segments (metadata columns included) as a CSV, one row per embedding."""
    import pandas as pd

    seg = pd.read_parquet(trained_ws / "segments.parquet")
    path = tmp_path / "meta.csv"
    seg.to_csv(path, index=False)
    return path


@pytest.fixture
def embeddings_npy(trained_ws, tmp_path) -> Path:
    path = tmp_path / "emb.npy"
    np.save(path, np.load(trained_ws / "embeddings.npy"))
    return path


@pytest.fixture
def disk(tmp_path):
    """A 256 KiB tmpfs at tmp_path/disk: fill it (hostile_harness.fill_disk) or remount it read-only."""
    with small_disk(tmp_path / "disk", "256k") as path:
        yield path
