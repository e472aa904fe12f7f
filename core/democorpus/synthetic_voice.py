"""Voice-like audio from a source-filter model, for tests and benches (no TTS needed).

A 'speaker' is a fundamental frequency, a vocal-tract length (formant scale), a spectral tilt
and a breathiness; an utterance is a sequence of syllables (vowel formants from a small set,
intonation, an amplitude envelope with short pauses). Different speakers give clearly different
speaker embeddings; the same speaker saying different 'words' (seeds) gives similar ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from core.constants import SAMPLE_RATE

# (F1, F2, F3) of a few vowels for an adult male tract (Hz); other tracts scale them
VOWELS = np.array(
    [
        [730, 1090, 2440],
        [270, 2290, 3010],
        [530, 1840, 2480],
        [570, 840, 2410],
        [300, 870, 2240],
        [660, 1720, 2410],
    ],
    dtype=float,
)
BANDWIDTHS = np.array([80.0, 100.0, 140.0])


@dataclass(frozen=True)
class Speaker:
    f0: float = 120.0
    """Mean pitch in Hz."""
    tract: float = 1.0
    """Formant scale (1.0 adult male, about 1.2 adult female)."""
    tilt: float = 0.9
    """Glottal-source low-pass pole (higher = darker voice)."""
    breath: float = 0.02
    """Aspiration noise level relative to the voiced source."""


def speaker_from_index(i: int) -> Speaker:
    """A fixed, well-spread set of distinct speakers."""
    rng = np.random.default_rng(1000 + i)
    female = i % 2 == 1
    return Speaker(
        f0=float(rng.uniform(180, 260) if female else rng.uniform(85, 140)),
        tract=float(rng.uniform(1.12, 1.3) if female else rng.uniform(0.9, 1.05)),
        tilt=float(rng.uniform(0.8, 0.97)),
        breath=float(rng.uniform(0.005, 0.08)),
    )


def _resonator(x: np.ndarray, freq: float, bw: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bw / sr)
    theta = 2 * np.pi * freq / sr
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return scipy.signal.lfilter([1.0 - r], a, x)


def utterance(
    speaker: Speaker, seconds: float, *, seed: int = 0, sr: int = SAMPLE_RATE, level: float = 0.3
) -> np.ndarray:
    """float32 mono voice-like audio of `speaker`, `seconds` long, different content per seed."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    out = np.zeros(n)
    pos = 0
    while pos < n:
        syl = int(rng.uniform(0.12, 0.3) * sr)
        m = min(syl, n - pos)
        t = np.arange(m) / sr
        f0 = (
            speaker.f0
            * (1 + 0.08 * rng.standard_normal())
            * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
        )
        phase = np.cumsum(f0 / sr)
        pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(float)
        source = scipy.signal.lfilter([1.0], [1.0, -speaker.tilt], pulses)
        source = source + speaker.breath * rng.standard_normal(m) * np.max(np.abs(source))
        formants = VOWELS[rng.integers(len(VOWELS))] * speaker.tract
        voiced = sum(_resonator(source, f, b, sr) for f, b in zip(formants, BANDWIDTHS, strict=True))
        env = np.sin(np.pi * np.linspace(0, 1, m)) ** 0.5
        out[pos : pos + m] = voiced * env
        pos += m
        if rng.random() < 0.15:  # a short pause between words
            pos += int(rng.uniform(0.05, 0.2) * sr)
    out = out / (np.max(np.abs(out)) + 1e-9) * level
    return out.astype(np.float32)
