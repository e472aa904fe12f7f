"""Measured attributes on synthesised signals whose truth is known, clean and through the
telephone channel (300-3400 Hz, 8 kHz, mu-law: a 120 Hz fundamental is below its band)."""

from __future__ import annotations

import numpy as np
import pytest

from core.audio.attributes import measure_segment, measure_segments
from core.audio.channel import telephone_channel
from core.constants import MEASURED_ATTRIBUTES
from core.errors import InputError

SR = 16_000


def harmonic(f0, seconds: float = 4.0, dbfs: float = -20.0, harmonics: int = 20) -> np.ndarray:
    """A voice-like tone: `harmonics` harmonics of f0 (Hz, or one value per sample: a glide)
    falling 6 dB per octave, scaled to an RMS of `dbfs`."""
    n = int(seconds * SR)
    track = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(track) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)).astype(np.float32)


def bursts(per_second: float, seconds: float = 4.0, f0: float = 150.0) -> np.ndarray:
    """`per_second` voiced bursts a second (half on, half off, 10 ms ramps): syllables."""
    t = np.arange(int(seconds * SR)) / SR
    gate = (np.sin(2 * np.pi * per_second * t) > 0).astype(np.float32)
    ramp = np.hanning(160)
    gate = np.convolve(gate, ramp / ramp.sum(), mode="same")
    return (harmonic(f0, seconds) * gate).astype(np.float32)


def phone(x: np.ndarray) -> np.ndarray:
    return telephone_channel(x, SR, noise_db=-60, rng=np.random.default_rng(0))


def test_one_float_row_per_segment_in_the_contract_order():
    table = measure_segments([harmonic(120), harmonic(220, 5.0)], SR)
    assert list(table.columns) == list(MEASURED_ATTRIBUTES)
    assert len(table) == 2 and (table.dtypes == "float64").all()
    assert measure_segments([], SR).shape == (0, len(MEASURED_ATTRIBUTES))


@pytest.mark.parametrize("channel", [lambda x: x, phone], ids=["clean", "telephone"])
@pytest.mark.parametrize("f0", [120.0, 220.0])
def test_f0_of_a_harmonic_tone_within_two_percent(f0, channel):
    row = measure_segment(channel(harmonic(f0)), SR)
    assert row["f0_median_hz"] == pytest.approx(f0, rel=0.02)
    assert row["f0_range_hz"] < 0.05 * f0  # a steady tone has no range
    assert row["voiced_fraction"] > 0.9


def test_male_fundamental_below_the_telephone_band_is_found_from_its_harmonics():
    # 100 Hz is 10 dB down at the channel's 300 Hz high-pass and beyond; the period survives
    row = measure_segment(phone(harmonic(100.0)), SR)
    assert row["f0_median_hz"] == pytest.approx(100.0, rel=0.02)


@pytest.mark.parametrize("channel", [lambda x: x, phone], ids=["clean", "telephone"])
def test_f0_range_of_a_glide_is_its_5_to_95_percent_span(channel):
    glide = harmonic(np.linspace(100.0, 200.0, 4 * SR))  # linear: 5-95 % of the time is 90 Hz
    row = measure_segment(channel(glide), SR)
    assert row["f0_range_hz"] == pytest.approx(90.0, rel=0.08)
    assert row["f0_median_hz"] == pytest.approx(150.0, rel=0.03)


def test_loudness_follows_the_level_in_dbfs():
    loud, quiet = measure_segments([harmonic(150, dbfs=-20), harmonic(150, dbfs=-30)], SR)["loudness_dbfs"]
    assert loud == pytest.approx(-20.0, abs=0.5)
    assert quiet == pytest.approx(-30.0, abs=0.5)


def test_loudness_is_of_the_non_silent_part_only():
    tone = harmonic(150, seconds=2.0, dbfs=-20)
    padded = np.concatenate([np.zeros(2 * SR, np.float32), tone, np.zeros(2 * SR, np.float32)])
    assert measure_segment(padded, SR)["loudness_dbfs"] == pytest.approx(-20.0, abs=0.5)


@pytest.mark.parametrize("channel", [lambda x: x, phone], ids=["clean", "telephone"])
def test_speech_rate_counts_bursts_per_second(channel):
    slow, fast = measure_segments([channel(bursts(3)), channel(bursts(6))], SR)["speech_rate"]
    assert slow == pytest.approx(3.0, rel=0.15)
    assert fast == pytest.approx(6.0, rel=0.15)


def test_speech_rate_leaves_long_pauses_out_of_speech_time():
    syllables = bursts(4, seconds=2.0)
    with_pause = np.concatenate([syllables, np.zeros(2 * SR, np.float32), syllables])
    assert measure_segment(with_pause, SR)["speech_rate"] == pytest.approx(4.0, rel=0.15)


def test_snr_ordered_and_near_the_true_value():
    rng = np.random.default_rng(1)
    speech = bursts(4)  # on at -20 dBFS, off half the time: the pauses show the noise floor
    rows = measure_segments(
        [speech + rng.normal(0, 10 ** (db / 20), speech.size).astype(np.float32) for db in (-40.0, -60.0)],
        SR,
    )
    noisy, clean = rows["snr_db"]
    assert noisy == pytest.approx(20.0, abs=4.0)
    assert clean == pytest.approx(40.0, abs=4.0)
    assert clean > noisy + 15


def test_silence_and_noise_have_no_f0():
    rng = np.random.default_rng(2)
    rows = measure_segments(
        [np.zeros(4 * SR, np.float32), rng.normal(0, 0.05, 4 * SR).astype(np.float32)], SR
    )
    silence, noise = rows.iloc[0], rows.iloc[1]
    assert np.isnan(silence["f0_median_hz"]) and np.isnan(silence["f0_range_hz"])
    assert np.isnan(silence["loudness_dbfs"]) and np.isnan(silence["snr_db"])
    assert silence["voiced_fraction"] == 0.0
    assert np.isnan(noise["f0_median_hz"]) and np.isnan(noise["f0_range_hz"])
    assert noise["voiced_fraction"] < 0.05
    assert noise["loudness_dbfs"] == pytest.approx(-26.0, abs=0.5)  # it has a level, not a pitch
    assert noise["snr_db"] < 3.0  # noise over its own floor
    assert noise["speech_rate"] < 0.5


def test_a_dc_offset_is_no_sound_and_changes_nothing():
    tone = harmonic(150)
    plain, offset, constant = measure_segments(
        [tone, tone + 0.3, np.full(4 * SR, 0.3, np.float32)], SR
    ).to_dict("records")
    assert offset == pytest.approx(plain, rel=1e-3, abs=1e-3)
    assert np.isnan(constant["f0_median_hz"]) and np.isnan(constant["loudness_dbfs"])
    assert constant["voiced_fraction"] == 0.0


def test_samples_that_are_not_finite_count_as_silence(recwarn):
    tone = harmonic(150)
    broken = tone.copy()
    broken[1000:1100] = np.nan
    broken[5000] = np.inf
    row = measure_segment(broken, SR)
    assert row["f0_median_hz"] == pytest.approx(150.0, rel=0.02)
    assert all(np.isfinite(v) for v in row.values())
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_segment_shorter_than_one_frame_is_all_nan():
    row = measure_segment(harmonic(150, seconds=0.01), SR)
    assert all(np.isnan(row[c]) for c in MEASURED_ATTRIBUTES)


def test_other_sample_rates_measure_the_same():
    x = harmonic(180)
    at_8k = telephone_channel(x, SR)[::2].copy()  # band-limited first, so decimation is clean
    row = measure_segment(at_8k, 8_000)
    assert row["f0_median_hz"] == pytest.approx(180.0, rel=0.02)


@pytest.mark.parametrize("sr", [0, -16000, 16000.5, "16k"])
def test_a_bad_sample_rate_is_one_clear_error(sr):
    with pytest.raises(InputError, match="sample rate must be a positive integer"):
        measure_segments([harmonic(120)], sr)


def test_voiced_f0_two_clusters_an_octave_apart_keep_one():
    from core.audio.attributes import voiced_f0_stats

    # an even count split into two clusters: the plain median falls between them (and left out
    # every frame: an IndexError from an empty percentile); the lower median keeps the low cluster
    f0 = np.array([50.0] * 10 + [110.0] * 10)
    median, span = voiced_f0_stats(f0)
    assert median == 50.0 and span == 0.0
    median, span = voiced_f0_stats(np.array([100.0, 102.0, 98.0, 200.0]))  # 200: an octave error
    assert median == 100.0 and span == pytest.approx(101.8 - 98.2)
