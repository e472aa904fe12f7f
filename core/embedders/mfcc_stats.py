"""`mfcc-stats`: a classical speaker representation that ships with its code (no weights, no torch,
numpy and scipy only).

Per segment (16 kHz mono): MFCCs 1-20 of a 40-band log-mel spectrum (25 ms windows, 10 ms hop,
20-8000 Hz; c0, the frame's loudness, is left out: it says more about the channel and the
microphone than about the speaker), their deltas and delta-deltas (9-frame Savitzky-Golay
filters); the embedding is the mean and the standard deviation of each of those 60 per-frame
values over the segment's frames (the numbers librosa.feature.mfcc and librosa.feature.delta
give, computed without librosa: see mel_basis):

    [mean mfcc(20), mean delta(20), mean delta2(20), sd mfcc(20), sd delta(20), sd delta2(20)]  -> 120-d

The values are cepstra of dB spectra, left in their own units (nothing is fitted to a corpus), so a
segment's embedding is a function of its audio alone: deterministic, and the same whatever batch
it is embedded in. A second embedder of the same audio lets `python -m core universality` ask
whether the features an SAE finds are shared across embedders (ingest one folder twice: the
segment ids match, segmentation does not depend on the embedder).
"""

from __future__ import annotations

import functools

import numpy as np

from core.constants import SAMPLE_RATE
from core.embedders.base import Embedder
from core.errors import InputError

N_MFCC = 20  # coefficients 1..20 (c0 dropped)
N_MELS = 40
N_FFT = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
FMIN, FMAX = 20.0, 8000.0
DELTA_WIDTH = 9
AMIN, TOP_DB = 1e-10, 80.0  # librosa.power_to_db's floor and range
PER_FRAME = 3 * N_MFCC  # mfcc, delta, delta-delta
DIM = 2 * PER_FRAME  # mean and standard deviation of each
_F_SP, _BREAK_HZ = 200.0 / 3, 1000.0  # Slaney's mel scale: 200/3 Hz per mel up to 1 kHz ...
_BREAK_MEL, _LOGSTEP = _BREAK_HZ / _F_SP, np.log(6.4) / 27.0  # ... then logarithmic


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    return np.where(hz >= _BREAK_HZ, _BREAK_MEL + np.log(np.maximum(hz, 1e-9) / _BREAK_HZ) / _LOGSTEP, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= _BREAK_MEL, _BREAK_HZ * np.exp(_LOGSTEP * (mel - _BREAK_MEL)), _F_SP * mel)


@functools.lru_cache(maxsize=1)
def mel_basis():
    """Sparse float32 [N_MELS, n_fft // 2 + 1]: triangular Slaney-normalised mel filters, the same
    as librosa.filters.mel (tested), built here because that one call imports numba (5 s, in
    every worker process). Sparse, not a BLAS matmul: each filter spans a few bins, and a
    threaded BLAS on a busy 2-core machine took 25x longer than one thread for this product."""
    import scipy.sparse

    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    width = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return scipy.sparse.csr_matrix(weights.astype(np.float32))


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    import scipy.signal

    return scipy.signal.get_window("hann", N_FFT, fftbins=True).astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """float32 [n_frames, N_MELS]: the dB mel power spectrum as librosa.feature.mfcc computes it
    (centred, zero-padded frames; power_to_db with top_db 80), several times faster: scipy's
    float32 rfft and a sparse filter bank (librosa's einsum took 60 % of its time)."""
    import scipy.fft

    y = np.asarray(audio, dtype=np.float32)
    if y.size < N_FFT:  # shorter than one window: zero-padded to one, as librosa.util.fix_length would
        y = np.pad(y, (0, N_FFT - y.size))
    y = np.pad(y, N_FFT // 2)  # centred frames, as librosa's stft (pad_mode 'constant')
    n_frames = 1 + (y.size - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP][:n_frames]
    spec = scipy.fft.rfft(frames * _window(), axis=1)
    power = spec.real**2 + spec.imag**2
    mel = (mel_basis() @ power.T).T
    db = 10.0 * np.log10(np.maximum(mel, AMIN))
    return np.maximum(db, db.max() - TOP_DB)


def frame_features(audio: np.ndarray) -> np.ndarray:
    """float64 [PER_FRAME, n_frames]: MFCC 1-20, their deltas and delta-deltas, frame by frame."""
    import scipy.fft
    import scipy.signal

    cepstra = scipy.fft.dct(log_mel(audio).astype(np.float64), type=2, norm="ortho", axis=1)
    mfcc = cepstra[:, 1 : N_MFCC + 1].T
    # librosa.feature.delta is this filter; mode 'nearest' rather than its default 'interp' keeps
    # it defined however few frames a segment has
    d1 = scipy.signal.savgol_filter(mfcc, DELTA_WIDTH, polyorder=1, deriv=1, axis=-1, mode="nearest")
    d2 = scipy.signal.savgol_filter(mfcc, DELTA_WIDTH, polyorder=2, deriv=2, axis=-1, mode="nearest")
    return np.concatenate([mfcc, d1, d2])


def segment_embedding(audio: np.ndarray) -> np.ndarray:
    """float32 [DIM]: the mean and standard deviation over frames of frame_features(audio)."""
    feats = frame_features(audio)
    return np.concatenate([feats.mean(axis=1), feats.std(axis=1)]).astype(np.float32)


class MfccStatsEmbedder(Embedder):
    name = "mfcc-stats"
    dim = DIM
    sample_rate = SAMPLE_RATE

    def __init__(self, *, checkpoint: str | None = None, device: str | None = None):
        if checkpoint:
            raise InputError(
                f"embedder 'mfcc-stats' has no weights and takes no --checkpoint (got {checkpoint})"
            )
        self.checkpoint = None
        self.device = "cpu"  # numpy/librosa only: a GPU has nothing to do here

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(audios), self.dim), dtype=np.float32)
        for i, audio in enumerate(audios):  # each segment is one vectorised pass over its frames
            out[i] = segment_embedding(audio)
        return out
