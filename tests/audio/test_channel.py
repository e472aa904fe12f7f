import numpy as np

from core.audio.channel import mu_law_round_trip, telephone_channel


def _tone(freq, sr=16000, seconds=1.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _rms(x):
    return float(np.sqrt(np.mean(x[2000:-2000] ** 2)))


def test_band_limits_telephone_band():
    in_band = telephone_channel(_tone(1000), 16000)
    low = telephone_channel(_tone(80), 16000)
    high = telephone_channel(_tone(6000), 16000)
    assert in_band.shape == (16000,) and in_band.dtype == np.float32
    assert _rms(in_band) > 0.3  # a 1 kHz tone passes (input rms 0.354)
    assert _rms(low) < 0.05 * _rms(in_band)
    assert _rms(high) < 0.01 * _rms(in_band)


def test_deterministic_without_noise_and_seeded_noise():
    x = _tone(700)
    np.testing.assert_array_equal(telephone_channel(x, 16000), telephone_channel(x, 16000))
    a = telephone_channel(x, 16000, noise_db=-40, rng=np.random.default_rng(3))
    b = telephone_channel(x, 16000, noise_db=-40, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, telephone_channel(x, 16000))


def test_mu_law_quantises_but_preserves_level():
    x = np.linspace(-1, 1, 1001, dtype=np.float32)
    y = mu_law_round_trip(x)
    assert np.max(np.abs(y - x)) < 0.04
    assert len(np.unique(y)) <= 255
