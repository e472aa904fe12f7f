"""Synthetic ground truth for SAE tests: sparse non-negative combinations of known unit directions;
and the one-torch-thread fixture the SAE and training tests share (their conftest.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread per test process: the test machine is shared, and two BLAS threads per
    process oversubscribe its 2 cores badly."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def synthetic_embeddings(
    n: int = 3000, d_in: int = 16, n_feat: int = 24, active: int = 3, noise: float = 0.01, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 [n, d_in], true directions [n_feat, d_in] unit rows)."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(n_feat, d_in))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    x = np.zeros((n, d_in))
    for i in range(n):
        idx = rng.choice(n_feat, size=active, replace=False)
        x[i] = rng.uniform(0.5, 1.5, size=active) @ dirs[idx]
    x += noise * rng.normal(size=x.shape)
    return x.astype(np.float32), dirs


def segments_for(n: int, split: list[str] | None = None) -> pd.DataFrame:
    start = np.arange(n, dtype=float) * 6.0
    df = pd.DataFrame(
        {
            "segment_id": [f"s{i:06d}" for i in range(n)],
            "source": ["a.wav"] * n,
            "start_s": start,
            "end_s": start + 5.0,
            "duration_s": np.full(n, 5.0),
            "speaker": [f"spk{i % 7}" for i in range(n)],
        }
    )
    if split is not None:
        df["split"] = split
    return df


def windowed_workspace(root, x: np.ndarray, cycle: int, noise_seed: int, windows: bool = True):
    """A synthetic workspace of x's rows, 2 of 3 in the sae split; segment i has 1 + i % cycle
    windows (its embedding + noise), or none at all (windows=False)."""
    from core.workspace.workspace import Windows, Workspace

    n = len(x)
    split = ["sae" if i % 3 else "feature" for i in range(n)]
    owner = np.repeat(np.arange(n, dtype=np.int64), 1 + np.arange(n) % cycle)
    noise = np.random.default_rng(noise_seed).normal(scale=0.05, size=(len(owner), x.shape[1]))
    win = Windows((x[owner] + noise).astype(np.float32), owner) if windows else None
    return Workspace.create(root, segments_for(n, split), x, embedder="synthetic", sample_rate=0, windows=win)


def recovery(W_dec: np.ndarray, dirs: np.ndarray) -> float:
    """Mean over true directions of the max cosine to a learned decoder row."""
    w = W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True).clip(1e-12)
    return float((dirs @ w.T).max(axis=1).mean())
