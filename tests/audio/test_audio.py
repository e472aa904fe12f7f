"""core.audio.read: any format/rate/channels -> 16 kHz mono float32; one clear error per bad file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from core.audio.read import cut, load_audio, save_wav
from core.errors import InputError

SR = 16000


def tone(freq=440.0, seconds=1.0, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x, sr):
    spec = np.abs(np.fft.rfft(x))
    return np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)]


def test_wav_round_trip(tmp_path):
    path = tmp_path / "a.wav"
    x = tone()
    save_wav(path, x, SR)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == len(x)
    assert np.max(np.abs(y - x)) < 1e-3  # 16-bit PCM quantisation
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_other_rate_and_stereo_resampled(tmp_path, rate):
    path = tmp_path / "stereo.flac"
    mono = tone(1000.0, 2.0, sr=rate)
    sf.write(path, np.stack([mono, mono], axis=1), rate)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 2 * SR) <= 2
    assert abs(dominant_freq(y, SR) - 1000.0) < 2.0


def test_ogg_read(tmp_path):
    path = tmp_path / "a.ogg"
    sf.write(path, tone(500.0, 1.0, sr=22050), 22050, format="OGG", subtype="VORBIS")
    y = load_audio(path)
    assert abs(len(y) - SR) < 400 and abs(dominant_freq(y, SR) - 500.0) < 3.0


def test_mp3_read(tmp_path):
    path = tmp_path / "a.mp3"
    sf.write(path, tone(500.0, 1.0, sr=22050), 22050, format="MP3", subtype="MPEG_LAYER_III")
    y = load_audio(path)
    assert abs(len(y) - SR) < 1200 and abs(dominant_freq(y, SR) - 500.0) < 3.0


def test_librosa_fallback_when_soundfile_fails(tmp_path, monkeypatch):
    import core.audio.read as audio_mod

    path = tmp_path / "a.wav"
    save_wav(path, tone(300.0, 1.0, sr=SR), SR)

    def refuse(_path):
        raise RuntimeError("format not supported by libsndfile")

    monkeypatch.setattr(audio_mod, "_read_soundfile", refuse)
    y = load_audio(path)
    assert len(y) == SR and abs(dominant_freq(y, SR) - 300.0) < 2.0


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEgarbage-not-audio" * 3)
    with pytest.raises(InputError, match=r"bad\.wav.*(unreadable|corrupt)"):
        load_audio(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.wav.*empty"):
        load_audio(path)


def test_header_only_file(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    with pytest.raises(InputError, match=r"zero\.wav.*empty"):
        load_audio(path)


def test_truncated_file(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, tone(seconds=2.0), SR)
    data = good.read_bytes()
    bad = tmp_path / "trunc.flac"
    bad.write_bytes(data[:60])  # header cut mid-way: no audio frames left
    with pytest.raises(InputError, match=r"trunc\.flac"):
        load_audio(bad)


def test_silence_only_file(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(SR, np.float32), SR)
    with pytest.raises(InputError, match=r"silent\.wav.*silence"):
        load_audio(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.wav.*not found"):
        load_audio(tmp_path / "nope.wav")


def test_cut():
    x = np.arange(SR * 3, dtype=np.float32)
    assert np.array_equal(cut(x, SR, 1.0, 2.0), x[SR : 2 * SR])
    assert len(cut(x, SR, -1.0, 0.5)) == SR // 2
    assert len(cut(x, SR, 2.5, 10.0)) == SR // 2
    assert len(cut(x, SR, 2.0, 1.0)) == 0
