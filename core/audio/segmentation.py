"""Non-silent regions and 4-8 s segments (paper section III-A: SoX silence removal, 4-8 s pieces).

The default detector works in the spirit of SoX's `silence` effect: frame RMS energy (librosa
frames), a threshold relative to the file's own loud frames with an absolute floor, short gaps
bridged, very short blips ignored, a little padding. `method="silero"` uses the silero-vad
package instead when it is installed (it ships its model; nothing is downloaded).

segment_audio() then turns regions into segments: a region longer than max_s is cut into equal
pieces within [min_s, max_s]; a region shorter than min_s is dropped, except that a short file
(at most max_s long) that yields no such segment becomes one segment of its non-silent span
(first sound to last sound) when that span is at least short_min_s: a 2-4 s clip of speech.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from core.errors import InputError

METHODS = ("energy", "silero")


class Region(NamedTuple):
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class SegmentationConfig:
    """How audio is cut into segments. Part of the ingest cache key: change a field, re-segment."""

    min_s: float = 4.0
    """Shortest segment in seconds; non-silent regions shorter than this are dropped."""
    max_s: float = 8.0
    """Longest segment in seconds; longer regions are cut into equal pieces within [min_s, max_s]."""
    short_min_s: float = 2.0
    """A short file (<= max_s) with no min_s region still becomes one segment if its sound spans this long."""
    method: str = "energy"
    """'energy' (SoX-like frame-energy detector) or 'silero' (needs the silero-vad package)."""
    frame_s: float = 0.030
    """Energy detector: analysis frame length in seconds."""
    hop_s: float = 0.010
    """Energy detector: hop between frames in seconds (boundary resolution)."""
    relative_db: float = -35.0
    """Energy detector: a frame is sound when louder than (the file's loud-frame level + this) dB."""
    loud_percentile: float = 95.0
    """Energy detector: percentile of frame levels that defines the file's 'loud frames' level."""
    floor_db: float = -60.0
    """Energy detector: absolute floor in dBFS; frames quieter than this are always silence."""
    min_silence_s: float = 0.5
    """Silences shorter than this inside sound do not split a region (pauses between words)."""
    min_sound_s: float = 0.1
    """Sound bursts shorter than this (clicks, blips) are ignored."""
    pad_s: float = 0.05
    """Seconds of context added on both sides of each region (clipped to the file)."""

    def __post_init__(self) -> None:
        numbers = {k: v for k, v in asdict(self).items() if k != "method"}
        bad = [f"{k}={v}" for k, v in numbers.items() if not math.isfinite(v)]
        if bad:
            raise InputError(f"segmentation: settings must be finite numbers, got {', '.join(bad)}")
        if self.method not in METHODS:
            raise InputError(
                f"segmentation method {self.method!r} unknown (choose from {', '.join(METHODS)})"
            )
        if not 0 < self.min_s <= self.max_s:
            raise InputError(
                f"segmentation: need 0 < min_s <= max_s, got min_s={self.min_s}, max_s={self.max_s}"
            )
        if not 0 < self.short_min_s <= self.min_s:
            raise InputError(f"segmentation: need 0 < short_min_s <= min_s, got {self.short_min_s}")
        if not 0 < self.hop_s <= self.frame_s:
            raise InputError(f"segmentation: need 0 < hop_s <= frame_s, got {self.hop_s}, {self.frame_s}")

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------
def frame_levels_db(audio: np.ndarray, sr: int, cfg: SegmentationConfig) -> np.ndarray:
    """RMS level in dBFS of each frame; frame i is centred on sample i * hop."""
    import librosa

    frame = max(1, int(round(cfg.frame_s * sr)))
    hop = max(1, int(round(cfg.hop_s * sr)))
    rms = librosa.feature.rms(
        y=np.asarray(audio, dtype=np.float32), frame_length=frame, hop_length=hop, center=True
    )[0]
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index pairs of the True runs of a boolean array."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def _clean(regions: list[Region], duration: float, cfg: SegmentationConfig) -> list[Region]:
    """Bridge short silences, drop blips, pad, clip and merge overlaps."""
    merged: list[Region] = []
    for reg in regions:
        if merged and reg.start_s - merged[-1].end_s < cfg.min_silence_s:
            merged[-1] = Region(merged[-1].start_s, reg.end_s)
        else:
            merged.append(reg)
    out: list[Region] = []
    for reg in merged:
        if reg.duration_s < cfg.min_sound_s:
            continue
        start = max(0.0, reg.start_s - cfg.pad_s)
        end = min(duration, reg.end_s + cfg.pad_s)
        if out and start <= out[-1].end_s:
            out[-1] = Region(out[-1].start_s, end)
        else:
            out.append(Region(start, end))
    return out


def _energy_regions(audio: np.ndarray, sr: int, cfg: SegmentationConfig) -> list[Region]:
    levels = frame_levels_db(audio, sr, cfg)
    if levels.size == 0:
        return []
    loud = float(np.percentile(levels, cfg.loud_percentile))
    threshold = max(loud + cfg.relative_db, cfg.floor_db)
    hop_s = max(1, int(round(cfg.hop_s * sr))) / sr
    duration = len(audio) / sr
    # frame i is centred at i*hop: a run of frames [a, b) covers [a*hop - hop/2, (b-1)*hop + hop/2]
    return [
        Region(max(0.0, (a - 0.5) * hop_s), min(duration, (b - 0.5) * hop_s))
        for a, b in _runs(levels > threshold)
    ]


def _silero_regions(audio: np.ndarray, sr: int, cfg: SegmentationConfig) -> list[Region]:
    try:
        import silero_vad  # optional: ships its ONNX/JIT model inside the package
    except ImportError:
        raise InputError(
            "segmentation method 'silero' needs the silero-vad package (pip install silero-vad); "
            "use method 'energy' otherwise"
        ) from None
    import torch

    if sr not in (8000, 16000):  # the model runs at 8 or 16 kHz
        from core.audio.read import resample

        audio, sr = resample(audio, sr, 16000), 16000
    stamps = silero_vad.get_speech_timestamps(
        torch.from_numpy(np.asarray(audio, dtype=np.float32)),
        _silero_model(),
        sampling_rate=sr,
        return_seconds=True,
        speech_pad_ms=0,  # padding is ours (cfg.pad_s)
    )
    return [Region(float(s["start"]), float(s["end"])) for s in stamps]


@functools.lru_cache(maxsize=1)
def _silero_model():
    import silero_vad

    return silero_vad.load_silero_vad()  # the JIT model inside the package; nothing downloaded


def find_nonsilent(audio: np.ndarray, sr: int, cfg: SegmentationConfig | None = None) -> list[Region]:
    """Non-silent regions of `audio` (float32 mono at `sr`), in order, non-overlapping."""
    cfg = cfg or SegmentationConfig()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0:
        return []
    raw = _silero_regions(audio, sr, cfg) if cfg.method == "silero" else _energy_regions(audio, sr, cfg)
    return _clean(raw, len(audio) / sr, cfg)


def split_region(region: Region, cfg: SegmentationConfig) -> list[Region]:
    """Cut one region into equal pieces within [min_s, max_s] (none if shorter than min_s)."""
    dur = region.duration_s
    if dur < cfg.min_s:
        return []
    n = max(1, math.ceil(dur / cfg.max_s - 1e-9))
    if dur / n < cfg.min_s:
        # no equal split fits [min_s, max_s] (only when max_s < 2 * min_s): take as many
        # max_s pieces as fit, centred in the region
        n = max(1, int(dur // cfg.max_s))
        length = cfg.max_s
        offset = region.start_s + (dur - n * length) / 2.0
    else:
        length = dur / n
        offset = region.start_s
    return [Region(offset + i * length, offset + (i + 1) * length) for i in range(n)]


def segment_audio(audio: np.ndarray, sr: int, cfg: SegmentationConfig | None = None) -> list[Region]:
    """min_s..max_s pieces of the non-silent audio, in order (see module docstring)."""
    cfg = cfg or SegmentationConfig()
    regions = find_nonsilent(audio, sr, cfg)
    if not regions:
        return []
    segments: list[Region] = []
    for reg in regions:
        segments.extend(split_region(reg, cfg))
    if not segments and len(audio) / sr <= cfg.max_s:
        # a short clip (one utterance): keep its whole non-silent span when long enough
        span = Region(regions[0].start_s, regions[-1].end_s)
        return [span] if span.duration_s >= cfg.short_min_s else []
    return segments
