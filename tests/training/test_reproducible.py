"""Same data + seed + thread count give bit-identical models: two runs of one grid write
byte-identical sae_weights.safetensors and metrics.json for every architecture (the README's
figures rest on this), on one torch thread and on two, and another seed gives other bytes (so
the comparison can fail)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sae_synth import segments_for, synthetic_embeddings

from core.sae.catalog import list_models
from core.training.config import TrainConfig
from core.training.grid import train_grid
from core.workspace.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
ARCHS = ("topk", "relu", "batchtopk", "jumprelu")


def _files(root) -> dict[str, tuple[bytes, bytes]]:
    """{model: (weights bytes, metrics bytes)} of the workspace at root."""
    return {
        m.name: ((m.path / "sae_weights.safetensors").read_bytes(), (m.path / "metrics.json").read_bytes())
        for m in list_models(Workspace.open(root))
    }


def _assert_identical(first: dict, second: dict, n_models: int) -> None:
    assert len(first) == n_models and first.keys() == second.keys()
    for name in first:
        assert second[name][0] == first[name][0], f"{name}: sae_weights.safetensors differs"
        assert second[name][1] == first[name][1], f"{name}: metrics.json differs"


def _train(root, x, seed: int, archs=ARCHS) -> dict[str, tuple[bytes, bytes]]:
    """A grid trained on x in a fresh workspace at root: two stacks per architecture, early
    stopping capped at 3 epochs."""
    ws = Workspace.create(root, segments_for(len(x)), x, embedder="synthetic", sample_rate=0)
    cfg = TrainConfig(archs=archs, latents=(8, 12), ks=(2, 3), lr=3e-3, max_epochs=3, seed=seed)
    train_grid(ws, cfg, progress=False)
    return _files(root)


def test_one_thread_same_data_and_seed_give_byte_identical_weights_and_metrics(tmp_path):
    x, _ = synthetic_embeddings(n=400, n_feat=12)
    first = _train(tmp_path / "a", x, seed=0)
    _assert_identical(first, _train(tmp_path / "b", x, seed=0), n_models=12)
    other_seed = _train(tmp_path / "c", x, seed=1, archs=("topk",))
    assert len(other_seed) == 4 and all(other_seed[name][0] != first[name][0] for name in other_seed)


_TWO_RUNS = """
import sys
import torch
from core.training.config import TrainConfig
from core.training.grid import train_grid
from core.workspace.workspace import Workspace

torch.set_num_threads(2)
for root in sys.argv[1:]:
    cfg = TrainConfig(archs={archs!r}, latents=(256,), ks=(4,), epochs=2, lr=3e-3)
    train_grid(Workspace.open(root), cfg, progress=False)
"""


@pytest.mark.slow
def test_two_threads_same_data_and_seed_give_byte_identical_weights_and_metrics(tmp_path):
    """In a child process: OMP_WAIT_POLICY=PASSIVE keeps two spinning OpenMP threads from
    stalling on a loaded 2-core machine (10x slower there), and it must be set before torch starts.
    Models large enough (a batch x 256 latents) that torch splits work between the threads."""
    x, _ = synthetic_embeddings(n=800, n_feat=12)
    roots = [tmp_path / name for name in ("a", "b")]
    for root in roots:
        Workspace.create(root, segments_for(len(x)), x, embedder="synthetic", sample_rate=0)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    code = _TWO_RUNS.format(archs=ARCHS)
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, roots)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_identical(_files(roots[0]), _files(roots[1]), n_models=4)
