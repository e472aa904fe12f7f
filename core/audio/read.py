"""Read any audio file as 16 kHz mono float32, write WAV atomically, cut time ranges.

soundfile (libsndfile) reads wav/flac/ogg/... directly; anything it cannot decode (mp3 on old
libsndfile, m4a through audioread) falls back to librosa. Resampling uses soxr (high quality).
Every failure the user can cause (unreadable, corrupt, truncated, empty, all-zero audio) is one
InputError naming the file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from core import atomic
from core.constants import SAMPLE_RATE
from core.errors import InputError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aiff", ".aif", ".au", ".wma")
"""File name endings `ingest` treats as audio (case-insensitive)."""

SILENCE_PEAK = 1e-5
"""A file whose absolute peak stays below this (about -100 dBFS) is treated as all silence."""


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data, int(sr)


def _read_librosa(path: Path) -> tuple[np.ndarray, int]:
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, sr = librosa.load(str(path), sr=None, mono=False)
    data = np.asarray(data, dtype=np.float32)
    data = data[:, None] if data.ndim == 1 else data.T  # librosa: [channels, samples]
    return data, int(sr)


def to_mono(data: np.ndarray) -> np.ndarray:
    """[samples] or [samples, channels] -> float32 [samples] (channel mean)."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(data, dtype=np.float32)


def resample(audio: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """float32 mono at `sr` -> float32 mono at `target_sr` (soxr, high quality)."""
    if sr == target_sr or audio.size == 0:
        return np.asarray(audio, dtype=np.float32)
    return np.asarray(soxr.resample(audio, sr, target_sr, quality="HQ"), dtype=np.float32)


def load_audio(path: str | os.PathLike, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Return the file as float32 mono at `target_sr` (any rate, channels, format).

    Raises InputError naming the file when it is missing, unreadable, corrupt or truncated to
    nothing, empty (0 samples) or all silence (peak below SILENCE_PEAK).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty audio file (0 bytes)")
    try:
        data, sr = _read_soundfile(path)
    except Exception as first:  # libsndfile cannot decode it: try librosa/audioread
        try:
            data, sr = _read_librosa(path)
        except Exception:
            reason = str(first).strip().splitlines()[0] if str(first).strip() else type(first).__name__
            raise InputError(f"{path}: unreadable or corrupt audio ({reason})") from None
    audio = to_mono(data)
    if audio.size == 0:
        raise InputError(f"{path}: empty audio (no samples; truncated or header only)")
    if not np.isfinite(audio).all():
        raise InputError(f"{path}: corrupt audio (contains NaN or inf samples)")
    if float(np.max(np.abs(audio))) < SILENCE_PEAK:
        raise InputError(f"{path}: audio is all silence (peak below {SILENCE_PEAK:g})")
    return resample(audio, sr, target_sr)


def save_wav(path: str | os.PathLike, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write float32 mono audio as 16-bit PCM WAV, atomically (temp file + rename)."""
    with atomic.atomic_path(path) as tmp:
        sf.write(
            str(tmp),
            np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0),
            int(sr),
            format="WAV",
            subtype="PCM_16",
        )


def wav_bytes(audio: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """The same WAV as save_wav, in memory (for playback)."""
    buf = io.BytesIO()
    sf.write(
        buf, np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), int(sr), format="WAV", subtype="PCM_16"
    )
    return buf.getvalue()


def cut(audio: np.ndarray, sr: int, start_s: float, end_s: float) -> np.ndarray:
    """Samples of `audio` between start_s and end_s (clipped to the signal; empty if inverted)."""
    n = len(audio)
    start = min(max(int(round(start_s * sr)), 0), n)
    end = min(max(int(round(end_s * sr)), start), n)
    return audio[start:end]
