"""The one interface every speaker embedder implements."""

from __future__ import annotations

import numpy as np

from core.constants import SAMPLE_RATE


class Embedder:
    """Turns 16 kHz mono float32 segments into fixed-size speaker embeddings.

    Subclasses set `name`, `dim`, `sample_rate` and implement `embed`.
    """

    name: str = ""
    dim: int = 0
    sample_rate: int = SAMPLE_RATE
    checkpoint: str | None = None

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        """Embed a batch of segments -> float32 [len(audios), dim]."""
        raise NotImplementedError


def pick_device(device: str | None = None) -> str:
    """'cuda' when available (and not overridden), else 'cpu'."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
