"""Read any audio file as 16 kHz mono float32, write WAV atomically, cut time ranges.

soundfile (libsndfile) reads wav/flac/ogg/... directly; anything it cannot decode (mp3 on old
libsndfile, m4a through audioread) falls back to librosa. Resampling uses soxr (high quality).
Every failure the user can cause (unreadable, corrupt, truncated, empty, all-zero audio, a sample
rate no audio has, float samples far past full scale, a file too long to decode in the memory
there is, or longer than a caller's `max_seconds`) is one InputError naming the file, so `ingest`
can skip that file with its reason and go on with the rest of the folder.

A stream whose header gives no length (a FLAC from a streaming encoder: libsndfile then reports
2**63 - 1 frames) is read block by block, counting what it holds, instead of being taken for an
impossibly long file.
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
MAX_PEAK = 1e3
"""A float file whose samples reach this (60 dB past full scale) holds numbers, not sound:
segmentation's energy and the embedder's arithmetic overflow on it (+-3e38 read as silence)."""
UNKNOWN_FRAMES = 2**62
"""libsndfile's frame count for a stream without a length is SF_COUNT_MAX (2**63 - 1)."""

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 768_000
"""Sample rates taken as audio. Anything else is a corrupt header (0 Hz), or would make
resampling explode (1 Hz -> 16 kHz multiplies the samples 16,000-fold)."""

LONG_FILE_S = 600.0
"""A file longer than this is first scanned block by block for any sound (a 10-hour file of zeros
is refused without being decoded into memory) and its decoded size is checked against the memory
available before it is read whole."""
SCAN_BLOCK = 1 << 20  # frames per block of that scan
DECODE_COPIES = 3
"""Bytes a decode holds at once, in float32 samples per output sample (decoded, mono, resampled)."""


def check_rate(path: Path, sr: int) -> None:
    """InputError naming `path` when `sr` is no audio's sample rate (a corrupt header)."""
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise InputError(
            f"{path}: corrupt audio header (sample rate {sr} Hz; audio is {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)"
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_long_file(path: Path, fh: sf.SoundFile, target_sr: int) -> None:
    """For a long file: refuse all-silence without decoding it whole, and a decode that cannot fit.

    The scan reads 16-bit samples (libsndfile copies them without conversion: a 10-hour file in
    about half a second): a file with no sample at 16-bit resolution (-96 dBFS) is silence, far
    below the -60 dBFS floor under which segmentation finds no speech anyway.
    """
    sound = any(block.any() for block in fh.blocks(blocksize=SCAN_BLOCK, dtype="int16", always_2d=True))
    fh.seek(0)
    if not sound:
        raise InputError(f"{path}: audio is all silence (no sample above -96 dBFS)")
    seconds = fh.frames / fh.samplerate
    need = 4 * (fh.frames * fh.channels + fh.frames + DECODE_COPIES * int(seconds * target_sr))
    free = available_memory()
    if free is not None and need > free:
        raise InputError(
            f"{path}: too long to decode here ({seconds / 3600:.1f} h needs about {need / 2**30:.1f} GiB "
            f"of memory, {free / 2**30:.1f} GiB available); split it into shorter files"
        )


def _check_max(path: Path, seconds: float, max_seconds: float | None, *, more: bool = False) -> None:
    if max_seconds is not None and seconds > max_seconds:
        amount = f"more than {max_seconds / 60:g} min" if more else f"{seconds / 60:.1f} min"
        raise InputError(f"{path}: {amount} of audio; at most {max_seconds / 60:g} min is read here")


def _read_stream(path: Path, fh: sf.SoundFile, target_sr: int, max_seconds: float | None) -> np.ndarray:
    """All of a file whose header gives no length, block by block: refused as soon as it passes
    `max_seconds` or outgrows the memory available (a tiny FLAC of one repeated value can hold days)."""
    free = available_memory()
    # soundfile seeks to where it thinks each read ended, which libsndfile cannot do in a stream
    # without a length (psf_fseek fails): read it in order, as the unseekable stream it is
    fh._info.seekable = 0
    blocks, frames = [], 0
    while len(block := fh.read(SCAN_BLOCK, dtype="float32", always_2d=True)):
        blocks.append(block)
        frames += len(block)
        _check_max(path, frames / fh.samplerate, max_seconds, more=True)
        need = 4 * (frames * fh.channels + frames + DECODE_COPIES * int(frames / fh.samplerate * target_sr))
        if free is not None and need > free:
            raise InputError(
                f"{path}: too long to decode here (a stream without a length, past "
                f"{frames / fh.samplerate / 3600:.1f} h it needs more than the {free / 2**30:.1f} GiB of "
                "memory available); split it into shorter files"
            )
    return np.concatenate(blocks) if blocks else np.zeros((0, fh.channels), np.float32)


def _read_soundfile(
    path: Path, target_sr: int = SAMPLE_RATE, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    with sf.SoundFile(str(path)) as fh:
        sr = int(fh.samplerate)
        check_rate(path, sr)
        if fh.frames >= UNKNOWN_FRAMES:
            return _read_stream(path, fh, target_sr, max_seconds), sr
        _check_max(path, fh.frames / sr, max_seconds)
        if fh.seekable() and fh.frames / sr > LONG_FILE_S:
            _check_long_file(path, fh, target_sr)
        data = fh.read(dtype="float32", always_2d=True)
    return data, sr


def _decode_failure(exc: Exception, path: Path) -> str:
    """What libsndfile said, in words that fit: it reports content it cannot parse (random bytes in
    an .mp3) as 'File does not exist', which the caller has already ruled out."""
    text = (exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)).strip()
    if "does not exist" in text or "not a regular file" in text:
        text = f"not valid {path.suffix.lstrip('.').upper() or 'audio'} data: damaged, or not audio at all"
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


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


def load_audio(
    path: str | os.PathLike, target_sr: int = SAMPLE_RATE, *, max_seconds: float | None = None
) -> np.ndarray:
    """Return the file as float32 mono at `target_sr` (any rate, channels, format).

    Raises InputError naming the file when it is missing, unreadable, corrupt or truncated to
    nothing, empty (0 samples), all silence (peak below SILENCE_PEAK), beyond MAX_PEAK, at a
    sample rate outside MIN_SAMPLE_RATE..MAX_SAMPLE_RATE, longer than `max_seconds` (from the
    header before decoding, where it has a length), or (longer than LONG_FILE_S, or a stream
    without a length) too large for the memory there is.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty audio file (0 bytes)")
    try:
        data, sr = _read_soundfile(path, target_sr, max_seconds)
    except InputError:
        raise
    except Exception as first:  # libsndfile cannot decode it: try librosa/audioread
        try:
            data, sr = _read_librosa(path)
        except Exception:
            raise InputError(
                f"{path}: unreadable or corrupt audio ({_decode_failure(first, path)})"
            ) from None
        check_rate(path, sr)
        _check_max(path, len(data) / sr, max_seconds)
    audio = to_mono(data)
    if audio.size == 0:
        raise InputError(f"{path}: empty audio (no samples; truncated or header only)")
    if not np.isfinite(audio).all():
        raise InputError(f"{path}: corrupt audio (contains NaN or inf samples)")
    peak = float(np.max(np.abs(audio)))
    if peak < SILENCE_PEAK:
        raise InputError(f"{path}: audio is all silence (peak below {SILENCE_PEAK:g})")
    if peak >= MAX_PEAK:
        raise InputError(f"{path}: corrupt audio (samples reach {peak:.3g}; audio lies within -1..1)")
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
