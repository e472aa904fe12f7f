"""The one interface every speaker embedder implements, and the per-window embeddings it can
return beside each segment's (SegmentEmbeddings, WindowConfig, sliding_windows)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from core.constants import SAMPLE_RATE
from core.errors import InputError


@dataclass(frozen=True)
class WindowConfig:
    """The sliding window that cuts a segment into sub-segment windows (embedders without windows
    of their own: TitaNet, mfcc-stats). Resemblyzer's windows are its own 1.6 s partial
    utterances (PARTIAL_WINDOW), whatever this says."""

    length_s: float = 1.6
    """Window length in seconds (resemblyzer's partial utterance length, so embedders compare)."""
    hop_s: float = 0.8
    """Seconds between the starts of two windows (half a window: each sample is in two)."""

    def __post_init__(self) -> None:
        for name in ("length_s", "hop_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise InputError(f"window {name} {value!r}: must be a finite number of seconds > 0")
        if self.hop_s > self.length_s:
            raise InputError(
                f"window hop_s {self.hop_s} is longer than length_s {self.length_s}: audio between "
                "windows would be in none"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class SegmentEmbeddings(NamedTuple):
    """Segment embeddings and the window embeddings of the same segments, from one pass."""

    segments: np.ndarray
    """float32 [N, dim]: one embedding per segment (what embed() returns)."""
    windows: np.ndarray
    """float32 [W, dim]: one embedding per window, the windows of segment 0 first, in time order."""
    window_segment: np.ndarray
    """int64 [W]: the segment row (0 .. N-1) of each window, non-decreasing."""


def window_starts(n_samples: int, cfg: WindowConfig, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Start samples of the windows of a segment of n_samples: 0, hop, 2 hop, ... while a whole
    window fits; a segment shorter than one window is one window (all of it)."""
    length = max(1, round(cfg.length_s * sample_rate))
    hop = max(1, round(cfg.hop_s * sample_rate))
    if n_samples <= length:
        return np.zeros(1, dtype=np.int64)
    return np.arange(0, n_samples - length + 1, hop, dtype=np.int64)


def sliding_windows(
    audios: list[np.ndarray], cfg: WindowConfig, sample_rate: int = SAMPLE_RATE
) -> tuple[list[np.ndarray], np.ndarray]:
    """(the window audio of every segment in order, int64 segment row of each window)."""
    length = max(1, round(cfg.length_s * sample_rate))
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    for row, audio in enumerate(audios):
        for start in window_starts(len(audio), cfg, sample_rate).tolist():
            pieces.append(audio[start : start + length])
            owner.append(row)
    return pieces, np.asarray(owner, dtype=np.int64)


class Embedder:
    """Turns 16 kHz mono float32 segments into fixed-size speaker embeddings.

    Subclasses set `name`, `dim`, `sample_rate` and implement `embed`; `embed_with_windows`
    embeds sliding windows (WindowConfig) the same way as segments unless a subclass has windows
    of its own (resemblyzer).
    """

    name: str = ""
    dim: int = 0
    sample_rate: int = SAMPLE_RATE
    checkpoint: str | None = None

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        """Embed a batch of segments -> float32 [len(audios), dim]."""
        raise NotImplementedError

    def window_settings(self, cfg: WindowConfig) -> dict:
        """What the windows of this embedder are, for a workspace's provenance."""
        return {"kind": "sliding", **cfg.to_dict()}

    def embed_with_windows(self, audios: list[np.ndarray], cfg: WindowConfig) -> SegmentEmbeddings:
        """The segments and their sliding windows, embedded together in one embed() call."""
        pieces, owner = sliding_windows(audios, cfg, self.sample_rate)
        both = self.embed([*audios, *pieces])
        n = len(audios)
        return SegmentEmbeddings(
            both[:n].astype(np.float32), both[n:].reshape(-1, both.shape[1]).astype(np.float32), owner
        )


def pick_device(device: str | None = None) -> str:
    """'cuda' when available (and not overridden), else 'cpu'."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
