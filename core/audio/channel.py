"""A telephone channel: what a call centre's audio went through before it reached the embedder.

Band-limit to 300-3400 Hz, down to 8 kHz, mu-law companding (G.711), light line noise, back up
to the working rate. Used on every sound of the embedded default corpus, and by
`ingest --telephony` to put wideband recordings into the same domain.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import soxr

TELEPHONE_RATE = 8_000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
MU = 255.0


def mu_law_round_trip(audio: np.ndarray, bits: int = 8) -> np.ndarray:
    """Encode to `bits`-bit mu-law and decode again (the quantisation G.711 applies)."""
    x = np.clip(audio, -1.0, 1.0)
    encoded = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    levels = 2 ** (bits - 1) - 1
    quantised = np.round(encoded * levels) / levels
    return (np.sign(quantised) * ((1.0 + MU) ** np.abs(quantised) - 1.0) / MU).astype(np.float32)


def telephone_channel(
    audio: np.ndarray,
    sr: int,
    *,
    band_hz: tuple[float, float] = TELEPHONE_BAND_HZ,
    noise_db: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Return `audio` (float32 mono at `sr`) as heard through a phone line, at the same rate.

    noise_db: line-noise level relative to full scale (e.g. -50); None adds none, so the channel
    is deterministic without an rng.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.size == 0:
        return x.copy()
    low, high = band_hz
    sos = scipy.signal.butter(4, [low, min(high, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    y = scipy.signal.sosfilt(sos, x).astype(np.float32)
    narrow = soxr.resample(y, sr, TELEPHONE_RATE) if sr != TELEPHONE_RATE else y
    if noise_db is not None:
        gen = rng if rng is not None else np.random.default_rng(0)
        narrow = narrow + gen.normal(0.0, 10 ** (noise_db / 20.0), narrow.shape).astype(np.float32)
    narrow = mu_law_round_trip(narrow)
    out = soxr.resample(narrow, TELEPHONE_RATE, sr) if sr != TELEPHONE_RATE else narrow
    out = np.asarray(out, dtype=np.float32)
    # resampling can differ by a sample; keep the caller's length so timings stay aligned
    if out.size >= x.size:
        return out[: x.size]
    return np.pad(out, (0, x.size - out.size))
