"""core.audio.read: any format/rate/channels -> 16 kHz mono float32; one clear error per bad file."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf
from bad_audio import sparse_zeros_wav, wav_saying_rate

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


# -- headers no audio has, content libsndfile cannot parse, files too long to decode ------------
@pytest.mark.parametrize("rate", [0, 1, 3999, 10_000_000])
def test_a_sample_rate_no_audio_has_is_refused(tmp_path, rate):
    path = wav_saying_rate(tmp_path / "odd.wav", rate)
    with pytest.raises(
        InputError,
        match=rf"odd\.wav: corrupt audio header \(sample rate {rate} Hz; audio is 4000-768000 Hz\)",
    ):
        load_audio(path)


def test_lowest_accepted_rate_reads(tmp_path):
    path = wav_saying_rate(tmp_path / "slow.wav", 4000, seconds=1.0)  # 32,000 samples (padding included)
    assert len(load_audio(path)) == 8 * SR  # said to be 8 s at 4 kHz: 8 s at 16 kHz


@pytest.mark.parametrize("suffix", [".mp3", ".wav", ".flac"])
def test_random_bytes_are_corrupt_audio_not_a_missing_file(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(8000))
    with pytest.raises(InputError) as err:
        load_audio(path)
    message = str(err.value)
    assert message.startswith(f"{path}: unreadable or corrupt audio (")
    assert "does not exist" not in message and "regular file" not in message
    if suffix == ".mp3":
        assert "not valid MP3 data: damaged, or not audio at all" in message


def test_ten_hours_of_zeros_is_refused_without_decoding_it(tmp_path):
    import time
    import tracemalloc

    path = sparse_zeros_wav(tmp_path / "zeros.wav", 10.0)  # 288M samples: 1.1 GiB decoded
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(
            InputError, match=r"zeros\.wav: audio is all silence \(no sample above -96 dBFS\)"
        ):
            load_audio(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB held"
    assert time.perf_counter() - t0 < 20


def test_a_long_file_reads_as_a_short_one_and_is_refused_when_memory_is_short(tmp_path, monkeypatch):
    import core.audio.read as audio_mod

    path = tmp_path / "long.flac"
    x = np.zeros(12 * SR, np.float32)
    x[-SR:] = tone(440.0, 1.0)  # sound only in the last second: the scan must reach it
    sf.write(path, x, SR)
    short = load_audio(path)
    monkeypatch.setattr(audio_mod, "LONG_FILE_S", 10.0)
    assert np.array_equal(load_audio(path), short)
    monkeypatch.setattr(audio_mod, "available_memory", lambda: 1_000_000)
    with pytest.raises(
        InputError,
        match=r"long\.flac: too long to decode here \(0\.0 h needs about 0\.0 GiB of memory, 0\.0 GiB available\); split it",
    ):
        load_audio(path)


# -- streams without a length, numbers that are not sound, a caller's length limit ---------------
def test_a_streamed_flac_without_a_length_reads_in_full(tmp_path):
    from bad_audio import streamed_flac, voice_like

    path = streamed_flac(tmp_path / "stream.flac", seed=2)
    assert sf.info(str(path)).frames == 2**63 - 1  # what libsndfile says for "length unknown"
    expected = voice_like(6.0, 160.0, 2)  # what streamed_flac encoded (16-bit FLAC: 1e-4 steps)
    audio = load_audio(path)
    assert audio.shape == expected.shape and np.abs(audio - expected).max() < 1e-3


def test_a_stream_is_refused_once_it_passes_max_seconds_or_the_memory(tmp_path, monkeypatch):
    from bad_audio import streamed_flac

    import core.audio.read as audio_mod

    path = streamed_flac(tmp_path / "stream.flac", seconds=20.0)
    with pytest.raises(InputError, match=r"stream\.flac: more than 0\.25 min of audio; at most 0\.25 min"):
        load_audio(path, max_seconds=15.0)
    assert len(load_audio(path, max_seconds=30.0)) == 21 * SR
    monkeypatch.setattr(audio_mod, "SCAN_BLOCK", SR)
    monkeypatch.setattr(audio_mod, "available_memory", lambda: 4 * 8 * SR * 4)  # room for about 6 s
    with pytest.raises(
        InputError, match=r"stream\.flac: too long to decode here \(a stream without a length"
    ):
        load_audio(path)


def test_max_seconds_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, tone(440.0, 6.0), SR)
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(
        InputError, match=r"long\.wav: 0\.1 min of audio; at most 0\.0333333 min is read here"
    ):
        load_audio(path, max_seconds=2.0)


@pytest.mark.parametrize(("peak", "refused"), [(3e38, True), (1e3, True), (999.0, False), (1.5, False)])
def test_float_samples_far_past_full_scale_are_corrupt(tmp_path, peak, refused):
    path = tmp_path / "wild.wav"
    x = tone(440.0, 1.0)
    x[100] = peak
    sf.write(path, x, SR, subtype="FLOAT")
    if refused:
        why = f"wild.wav: corrupt audio (samples reach {peak:.3g}; audio lies within -1..1)"
        with pytest.raises(InputError, match=re.escape(why)):
            load_audio(path)
    else:
        assert float(np.abs(load_audio(path)).max()) == pytest.approx(peak, rel=1e-3)
