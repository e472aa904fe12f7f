"""A small workspace for the core.dashboard tests: one second per segment, any metadata."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.workspace.workspace import Workspace


def small_workspace(root, embeddings: np.ndarray, **columns) -> Workspace:
    """Workspace at `root`: one segment s0, s1, ... (0-1 s of x.wav) per embedding row, with
    `columns` as metadata."""
    n = len(embeddings)
    seg = pd.DataFrame(
        {
            "segment_id": [f"s{i}" for i in range(n)],
            "source": "x.wav",
            "start_s": 0.0,
            "end_s": 1.0,
            "duration_s": 1.0,
            **columns,
        }
    )
    return Workspace.create(root, seg, np.asarray(embeddings, np.float32), embedder="x", sample_rate=0)


@pytest.fixture(scope="session")
def make_workspace():
    return small_workspace
