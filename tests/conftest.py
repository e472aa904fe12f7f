"""Shared fixtures. Every test builds its own small data; nothing reads ../shared or data/."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Point data_root() at a temporary folder so no test touches the user's data/."""
    root = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("VOXSAE_DATA", str(root))
    return root


def make_segments(n: int, *, speakers: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.arange(n, dtype=float) * 6.0
    return pd.DataFrame(
        {
            "segment_id": [f"seg{i:05d}" for i in range(n)],
            "source": [f"call{i % 3}.wav" for i in range(n)],
            "start_s": start,
            "end_s": start + 5.0,
            "duration_s": np.full(n, 5.0),
            "speaker": [f"spk{int(s)}" for s in rng.integers(0, speakers, n)],
        }
    )


@pytest.fixture
def segments_factory():
    return make_segments
