"""What a grid training run is asked to do (TrainConfig) and what it did (TrainResult)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

PAPER_LATENTS = (100, 200, 300, 400, 500, 600)
PAPER_KS = (5, 10, 15, 20, 25, 30, 35)


@dataclass
class TrainConfig:
    """One grid training run. Everything except `device` enters the models' cache key."""

    archs: tuple[str, ...] = ("topk",)
    """Architectures to train (names of core.sae.ARCHITECTURES: 'topk', 'relu', 'batchtopk', 'jumprelu')."""
    latents: tuple[int, ...] = PAPER_LATENTS
    """Latent dims of the grid (the paper: 100-600 step 100)."""
    ks: tuple[int, ...] = PAPER_KS
    """K values of the grid (the paper: 5-35 step 5); architectures without K (relu, jumprelu) ignore them."""
    epochs: int | None = None
    """Exactly this many epochs, no early stop (None: early stop, at most max_epochs)."""
    max_epochs: int = 100
    """Cap on epochs when early stopping: a safety net, not the usual stop (on the embedded
    default the 42 models stop between epochs 28 and 56 when their validation NMSE is stable)."""
    tol: float = 2e-3
    """Early stop when validation NMSE improves by less than this fraction of its best ..."""
    patience: int = 2
    """... for this many consecutive epochs."""
    batch_size: int = 1024
    """Samples per step (shrunk to n_train // 32, at least 32, on small corpora)."""
    lr: float = 1e-3
    """Adam learning rate."""
    seed: int = 0
    """Seeds the train/validation split, the data order and every model's initialisation."""
    val_fraction: float = 0.1
    """Fraction of the training rows held out for validation."""
    l1_coefficient: float = 0.3
    """L1 weight for relu models."""
    auxk_coefficient: float = 1.0 / 32.0
    """AuxK weight for topk / batchtopk (0 turns it off)."""
    device: str | None = None
    """'cpu', 'cuda' or None (CUDA when present)."""
    sae_options: dict[str, float] = field(default_factory=dict)
    """Architecture options (SAE.options, e.g. jumprelu's l0_coefficient): each applies to the
    architectures of the grid that have it; unset ones take the architecture's default. They
    enter the key through each model's SAE config."""

    def key_fields(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("archs", "latents", "ks", "device", "sae_options"):
            d.pop(k)
        return d


class TrainResult(NamedTuple):
    trained: list[str]
    """Models trained by this run (a resumed run counts those finished before the crash too)."""
    cached: list[str]
    """Models already up to date (not retrained)."""
    state_path: Path
    """The resumable training state file (gone once the run finished)."""
