"""Continuous attributes measured from each segment's audio: pitch, level, rate, noise, voicing.

    from core.audio.attributes import measure_segments
    table = measure_segments(pieces, 16_000)   # one row per segment, columns MEASURED_ATTRIBUTES

Columns (core.constants.MEASURED_ATTRIBUTES, all float64):
  f0_median_hz     median F0 of the voiced frames (Hz)
  f0_range_hz      95th minus 5th percentile of the voiced frames' F0 (Hz)
  loudness_dbfs    RMS level of the non-silent frames (dB re a full-scale RMS of 1.0)
  speech_rate      syllable nuclei per second of speech (pauses of PAUSE_S or longer left out)
  snr_db           loud-frame power (SNR_SPEECH_PCT percentile of the frame powers) over the
                   noise floor (their SNR_NOISE_PCT percentile), in dB: 0 or more; a sound with
                   no pauses to show its floor (a steady tone, noise) reads near 0
  voiced_fraction  share of the segment's frames that are voiced (0-1)

NaN where a value is undefined: F0 median and range when no frame is voiced (silence, noise, most
unpitched sounds), loudness, rate and SNR when no frame rises above digital silence, everything
for a segment shorter than one analysis frame. Frames quieter than MIN_POWER_DB count as digital
silence: the SNR of a segment whose pauses are exact zeros reads as its level above that floor.
The segment's mean (a DC offset) is removed first, and samples that are not finite count as 0.

Pitch is YIN (de Cheveigné & Kawahara 2002), vectorised over frames with numpy: the difference
function through one FFT per frame, the cumulative mean normalised difference, the first dip
under YIN_THRESHOLD (parabolic interpolation), and a frame is voiced when that dip's
aperiodicity is under VOICING_THRESHOLD and the frame is within SPEECH_RANGE_DB of the loud
frames. It runs at 8 kHz on FMIN_HZ-FMAX_HZ: audio through the telephone channel (300-3400 Hz)
has lost a male voice's fundamental (~100 Hz), but the harmonics above 300 Hz still repeat at
the fundamental's period, which is what YIN finds. The F0 median and range leave out voiced
frames more than OCTAVE_ERROR octaves from the voiced median (YIN's octave errors). Speaking
rate counts peaks of a smoothed 300-2000 Hz energy envelope (where vowels are loud) that are
voiced frames, at least RATE_PROMINENCE_DB above the dips around them and RATE_MIN_GAP_S apart.
Everything per frame is numpy over frames; the only Python loop is over segments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft
import scipy.signal
import soxr

from core.constants import MEASURED_ATTRIBUTES
from core.errors import InputError

ATTRIBUTES_VERSION = 1
"""Bump when a measurement changes: part of ingest's cache key and the demo's settings."""

ANALYSIS_RATE = 8_000
"""Pitch and rate are measured at 8 kHz: the telephone band holds nothing above 4 kHz."""
HOP_S = 0.010
"""Frame hop (s)."""
WINDOW_S = 0.025
"""YIN integration window and level frame (s)."""
FMIN_HZ, FMAX_HZ = 60.0, 450.0
"""F0 search range: from deep male voices (below the telephone band) to high female ones."""
YIN_THRESHOLD = 0.15
"""A dip of the normalised difference under this is taken as the period (the first one)."""
VOICING_THRESHOLD = 0.50
"""A frame is voiced when its aperiodicity (the normalised difference at its period) is under this
(telephone speech is far from periodic: at 0.3 half of a low male voice's vowels read unvoiced)."""
OCTAVE_ERROR = 0.75
"""F0 statistics leave out voiced frames more than this many octaves from the voiced median: YIN's
octave errors (a period halved where the band-limited second harmonic dominates, or doubled)."""
SPEECH_RANGE_DB = 35.0
"""A frame is non-silent when within this many dB of the segment's loud frames (95th percentile)."""
MIN_POWER_DB = -100.0
"""Frame power floor (dBFS): digital silence."""
SNR_SPEECH_PCT, SNR_NOISE_PCT = 90.0, 5.0
"""Percentiles of the frame powers taken as speech and as the noise floor."""
RATE_BAND_HZ = (300.0, 2000.0)
"""Band of the envelope whose peaks are syllable nuclei (vowel energy)."""
RATE_SMOOTH_S = 0.05
"""Moving-average length of the envelope (s)."""
RATE_PROMINENCE_DB = 3.0
"""A nucleus stands this many dB above the dips on either side."""
RATE_MIN_GAP_S = 0.10
"""Nuclei are at least this far apart (at most 10 syllables per second)."""
PAUSE_S = 0.30
"""Silent runs at least this long are pauses, not speech time (de Jong & Wempe's articulation rate)."""


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """[n_frames, length] strided view; frames start every hop samples (the last one fits)."""
    return np.lib.stride_tricks.sliding_window_view(x, length)[::hop]


def _yin(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per frame: F0 (Hz) and aperiodicity (CMND at the chosen period); and the window length.

    Frames hop HOP_S and span WINDOW_S plus the longest period searched."""
    hop = int(round(HOP_S * sr))
    win = int(round(WINDOW_S * sr))
    tau_min = max(2, int(np.floor(sr / FMAX_HZ)))
    tau_max = int(np.ceil(sr / FMIN_HZ))
    length = win + tau_max + 1
    if x.size < length:
        return np.zeros(0), np.zeros(0), win
    x = x.astype(np.float32)
    frames = _frames(x, length, hop)
    nfft = scipy.fft.next_fast_len(length, real=True)
    # r[t] = sum_{j < win} x[j] x[j + t]: one FFT of the frame, one of its first window (float32:
    # twice as fast, and the difference function needs no more)
    spec = scipy.fft.rfft(frames, nfft, axis=1)
    head = scipy.fft.rfft(frames[:, :win], nfft, axis=1)
    corr = scipy.fft.irfft(np.conj(head) * spec, nfft, axis=1)[:, : tau_max + 1].astype(np.float64)
    # energy of x[t : t + win] for every frame and lag t, from one running sum of the signal
    csum = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    sliding = csum[win:] - csum[:-win]  # sliding[i] = energy of x[i : i + win]
    energy = _frames(sliding, tau_max + 1, hop)[: len(frames)]
    diff = np.maximum(energy[:, :1] + energy - 2.0 * corr, 0.0)
    # cumulative mean normalised difference d'(t) = d(t) t / sum_{k<=t} d(k); d'(0) = 1
    lags = np.arange(tau_max + 1)
    running = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(running, 1e-12)
    search = cmnd[:, tau_min : tau_max + 1]
    # the first local minimum under the threshold, else the global minimum
    local_min = np.zeros(search.shape, dtype=bool)
    local_min[:, 1:-1] = (search[:, 1:-1] <= search[:, :-2]) & (search[:, 1:-1] <= search[:, 2:])
    below = local_min & (search < YIN_THRESHOLD)
    best = np.where(below.any(axis=1), below.argmax(axis=1), search.argmin(axis=1))
    rows = np.arange(len(search))
    # parabolic interpolation of the dip (not at the edges)
    inner = np.clip(best, 1, search.shape[1] - 2)
    a, b, c = search[rows, inner - 1], search[rows, inner], search[rows, inner + 1]
    denom = a - 2.0 * b + c
    shift = np.where(
        (best == inner) & (np.abs(denom) > 1e-12), 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0
    )
    period = tau_min + best + np.clip(shift, -1.0, 1.0)
    return sr / period, search[rows, best], win


def _frame_power_db(x: np.ndarray, win: int, hop: int, n_frames: int) -> np.ndarray:
    """Mean power (dBFS, floored at MIN_POWER_DB) of n_frames frames of win samples."""
    frames = _frames(x.astype(np.float64), win, hop)[:n_frames]
    power = np.mean(frames**2, axis=1)
    return 10.0 * np.log10(np.maximum(power, 10 ** (MIN_POWER_DB / 10)))


def pause_frames(silent: np.ndarray, min_frames: int) -> np.ndarray:
    """Frames that belong to a run of silent frames at least min_frames long."""
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long = (ends - starts) >= min_frames
    marks = np.zeros(silent.size + 1, dtype=np.int64)
    np.add.at(marks, starts[long], 1)
    np.add.at(marks, ends[long], -1)
    return np.cumsum(marks[:-1]) > 0


def voiced_f0_stats(f0v: np.ndarray) -> tuple[float, float]:
    """(median, 95th minus 5th percentile) of the voiced frames' F0 after leaving out octave errors.

    The reference is the lower median, a frame's own value: with an even count split into two
    clusters more than OCTAVE_ERROR apart, the plain median falls between them and would leave
    out every frame (a very low voice read half at its octave)."""
    ref = float(np.sort(f0v)[(len(f0v) - 1) // 2])
    kept = f0v[np.abs(np.log2(f0v / ref)) <= OCTAVE_ERROR]
    lo, hi = np.percentile(kept, [5, 95])
    return float(np.median(kept)), float(hi - lo)


def measure_segment(audio: np.ndarray, sr: int) -> dict[str, float]:
    """The MEASURED_ATTRIBUTES of one mono segment at sr (see the module docstring)."""
    out = dict.fromkeys(MEASURED_ATTRIBUTES, float("nan"))
    wide = np.asarray(audio, dtype=np.float32).ravel()
    wide = np.where(np.isfinite(wide), wide, np.float32(0.0))
    if wide.size:  # a DC offset is no sound: YIN would call a constant perfectly periodic
        wide = wide - np.float32(wide.mean())
    x = soxr.resample(wide, sr, ANALYSIS_RATE) if sr != ANALYSIS_RATE else wide
    f0, aperiodicity, win = _yin(x, ANALYSIS_RATE)
    n = f0.size
    if n == 0:
        return out
    # levels from the audio as given (all of its band), on the same frame times as the pitch
    db = _frame_power_db(wide, int(round(WINDOW_S * sr)), int(round(HOP_S * sr)), n)
    n = db.size  # (a rate that does not divide evenly can leave one frame fewer)
    f0, aperiodicity = f0[:n], aperiodicity[:n]
    if db.max() <= MIN_POWER_DB:
        out["voiced_fraction"] = 0.0
        return out
    loud_db = float(np.percentile(db, 95))
    non_silent = (db > loud_db - SPEECH_RANGE_DB) & (db > MIN_POWER_DB)
    voiced = non_silent & (aperiodicity < VOICING_THRESHOLD)
    out["voiced_fraction"] = float(voiced.mean())
    if voiced.any():
        out["f0_median_hz"], out["f0_range_hz"] = voiced_f0_stats(f0[voiced])
    out["loudness_dbfs"] = float(10 * np.log10(np.mean(10 ** (db[non_silent] / 10))))
    out["snr_db"] = float(np.percentile(db, SNR_SPEECH_PCT) - np.percentile(db, SNR_NOISE_PCT))
    # speaking rate: voiced peaks of the smoothed vowel-band envelope per second of speech
    sos = scipy.signal.butter(2, RATE_BAND_HZ, btype="bandpass", fs=ANALYSIS_RATE, output="sos")
    band_db = _frame_power_db(scipy.signal.sosfilt(sos, x), win, int(round(HOP_S * ANALYSIS_RATE)), n)
    smooth = max(1, int(round(RATE_SMOOTH_S / HOP_S)))
    envelope = np.convolve(band_db, np.ones(smooth) / smooth, mode="same")
    peaks, _ = scipy.signal.find_peaks(
        envelope,
        prominence=RATE_PROMINENCE_DB,
        distance=max(1, int(round(RATE_MIN_GAP_S / HOP_S))),
    )
    nuclei = int(np.count_nonzero(voiced[peaks]))
    speech_frames = n - int(np.count_nonzero(pause_frames(~non_silent, int(round(PAUSE_S / HOP_S)))))
    if speech_frames > 0:
        out["speech_rate"] = nuclei / (speech_frames * HOP_S)
    return out


def measure_segments(audios: list[np.ndarray], sr: int) -> pd.DataFrame:
    """One row per segment (same order), columns MEASURED_ATTRIBUTES, float64; NaN where undefined."""
    if not (isinstance(sr, int | np.integer) and sr > 0):
        raise InputError(f"measure_segments: the sample rate must be a positive integer, got {sr!r}")
    rows = [measure_segment(a, int(sr)) for a in audios]
    return pd.DataFrame(rows, columns=list(MEASURED_ATTRIBUTES), dtype="float64")


__all__ = ["ATTRIBUTES_VERSION", "measure_segment", "measure_segments", "pause_frames"]
