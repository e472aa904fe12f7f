"""Audio files for the hostile-input tests (shared by tests/audio and tests/hostile): voice-like
sound that segments into one 4-8 s piece, a real WAV whose header lies about its sample rate,
hours of zeros as a sparse file, a streamed FLAC whose header gives no length, and a file whose
name is not valid UTF-8."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000


def voice_like(seconds: float, f0: float, seed: int, sr: int = SR) -> np.ndarray:
    """Harmonics of f0 under a noisy syllable-rate envelope, with 0.5 s of silence either side."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 8))
    envelope = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, 6)))
    sound = 0.2 * tone * envelope + 0.01 * rng.normal(size=t.size)
    pad = np.zeros(sr // 2)
    return np.concatenate([pad, sound, pad]).astype(np.float32)


def write_voice(path: Path, seed: int, sr: int = SR, seconds: float = 6.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, voice_like(seconds, 110.0 + 25 * seed, seed, sr), sr)
    return path


def wav_saying_rate(path: Path, rate: int, seconds: float = 6.0) -> Path:
    """A real 16 kHz 16-bit WAV whose header is then patched to say `rate` Hz (the sample rate
    sits at byte 24 of the fmt chunk, the byte rate at 28)."""
    write_voice(path, seed=9, seconds=seconds)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"fmt " and int.from_bytes(data[24:28], "little") == SR
    data[24:28] = rate.to_bytes(4, "little")
    data[28:32] = (2 * rate).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def sparse_zeros_wav(path: Path, hours: float, sr: int = 8000) -> Path:
    """A WAV of `hours` of 16-bit zeros, written as a sparse file (no disk space used)."""
    sf.write(path, np.zeros(10, np.int16), sr, subtype="PCM_16")
    size = int(hours * 3600 * sr) * 2
    with open(path, "r+b") as fh:
        head = bytearray(fh.read(44))
        assert head[36:40] == b"data"
        head[4:8] = (36 + size).to_bytes(4, "little")
        head[40:44] = size.to_bytes(4, "little")
        fh.seek(0)
        fh.write(head)
        fh.truncate(44 + size)
    return path


def streamed_flac(path: Path, seed: int = 1, sr: int = SR, seconds: float = 6.0) -> Path:
    """Voice-like audio as a FLAC whose STREAMINFO says "total samples unknown" (0), as a streaming
    encoder writes one (legal FLAC); libsndfile then reports 2**63 - 1 frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, voice_like(seconds, 110.0 + 25 * seed, seed, sr), sr, format="FLAC")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    at = 8 + 10  # after the block header and the block/frame sizes: 20-bit rate, 3 + 5 bits, 36-bit count
    bits = int.from_bytes(data[at : at + 8], "big") & ~((1 << 36) - 1)
    data[at : at + 8] = bits.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def non_utf8_name(folder: Path, seed: int = 2) -> bytes:
    """A voice file in `folder` whose name holds the byte 0xff (not UTF-8); returns its name as bytes."""
    name = b"caf\xe9-\xff.wav"  # Latin-1 bytes, as an old archive or a Windows share may hold
    tmp = write_voice(folder / "tmp-rename.wav", seed=seed)
    os.rename(os.fsencode(tmp), os.fsencode(folder) + b"/" + name)
    return name
