"""The truth columns comparable across voices: espeak-ng's F0 rule (checked against the F0 measured
on flat speech), the syllable count of espeak-ng's own phonemes, and the speech time of a turn."""

from __future__ import annotations

import numpy as np
import pytest

from core.audio.attributes import measure_segment
from core.constants import SAMPLE_RATE
from core.democorpus import calls as ca
from core.democorpus.speech import (
    CONTOUR_HEIGHT,
    DEFAULT_VOICE_PITCH,
    Espeak,
    VoiceSpec,
    espeak_f0_hz,
    syllable_count,
    variant_pitch,
)
from core.errors import InputError

TEXT = "Thank you for calling, how can I help you today with your account?"


def test_variant_pitch_reads_the_voice_files():
    assert variant_pitch("m3") == (80, 122) and variant_pitch("f3") == (140, 240)
    assert variant_pitch("aunty") == (204, 176)  # a falling span is kept as written
    assert variant_pitch("adam") == DEFAULT_VOICE_PITCH  # no pitch line: espeak-ng's default
    with pytest.raises(InputError, match="unknown espeak voice variant 'nobody'"):
        variant_pitch("nobody")


def test_the_rule_by_hand():
    # m3 `pitch 80 122`: base (80 - 9) << 12, span 42 * 108; pitch 50 -> x 128/128, range 50 -> same span
    assert espeak_f0_hz(VoiceSpec("en-us", "m3", pitch=50, range_=50), contour=0) == 71.0
    assert (
        espeak_f0_hz(VoiceSpec("en-us", "m3", pitch=50, range_=50), contour=100)
        == 71.0 + 50 * 42 * 108 / 4096
    )
    # range 0: the span is gone and the base rises by 18 per unit of span lost (espeak's compensation)
    assert espeak_f0_hz(VoiceSpec("en-us", "m3", pitch=0, range_=0)) == pytest.approx(
        ((71 << 12) * 64 // 128 + 42 * 108 * 18) / 4096
    )
    # a higher pitch parameter, a higher F0; the contour height only matters with a span
    spec = VoiceSpec("es", "f1", pitch=30, range_=40)
    assert espeak_f0_hz(spec) < espeak_f0_hz(VoiceSpec("es", "f1", pitch=60, range_=40))
    assert espeak_f0_hz(spec, contour=CONTOUR_HEIGHT + 10) > espeak_f0_hz(spec)


@pytest.mark.parametrize("variant", ["m3", "f3", "adam", "aunty", "zac"])
def test_flat_speech_is_at_the_rule_f0(variant):
    """At range 0 espeak-ng speaks on one pitch: the measured F0 is the rule's to within 1 %."""
    tts = Espeak()
    for pitch in (25, 75):
        spec = VoiceSpec("en-us", variant, pitch=pitch, range_=0, rate=160)
        measured = measure_segment(tts.synth(TEXT, spec, SAMPLE_RATE), SAMPLE_RATE)["f0_median_hz"]
        assert measured == pytest.approx(espeak_f0_hz(spec), rel=0.01), (variant, pitch)


@pytest.mark.parametrize(
    ("accent", "variant"), [("en-us", "m1"), ("en-gb", "f3"), ("es", "m3"), ("es-419", "f1")]
)
def test_contour_height_reads_back_from_statements(accent, variant):
    """The calibrated CONTOUR_HEIGHT is where the median F0 of statements sits (within 5 of 254)."""
    from core.democorpus.text import EN_SENTENCES, ES_SENTENCES

    pool = ES_SENTENCES if accent.startswith("es") else EN_SENTENCES
    text = " ".join(s for s in pool[:6] if "{" not in s)
    spec = VoiceSpec(accent, variant, pitch=40, range_=60, rate=170)
    measured = measure_segment(Espeak().synth(text, spec, SAMPLE_RATE), SAMPLE_RATE)["f0_median_hz"]
    floor, per_step = (
        espeak_f0_hz(spec, contour=0),
        (espeak_f0_hz(spec, contour=100) - espeak_f0_hz(spec, 0)) / 100,
    )
    assert (measured - floor) / per_step == pytest.approx(CONTOUR_HEIGHT, abs=5)


@pytest.mark.parametrize(
    ("ipa", "nuclei"),
    [
        ("hˈaɪ", 1),  # a diphthong is one nucleus
        ("jˈuːʒuːəl", 3),  # "usual": a schwa after a long vowel is its own
        ("hˈiə", 2),  # "i" + schwa is no centring diphthong (only ɪə ʊə ɛə are)
        ("bˈɪəd", 1),  # ... and ɪə is one
        ("ɡɾˈaθjas", 2),  # Spanish glides are consonants
        ("ðˈia", 2),  # hiatus: two vowels, two nuclei
        ("bˈʌtn\u0329", 2),  # a syllabic n
        ("pleˈase", 3),
        ("", 0),
        ("ʃ ʃ", 0),
    ],
)
def test_syllable_count(ipa, nuclei):
    assert syllable_count(ipa) == nuclei


def test_phonemes_are_espeaks_own_and_count_digits_as_spoken():
    tts = Espeak()
    ipa = tts.phonemes("It's the 17 of March.", VoiceSpec("en-us", "m3"))
    assert "sˈɛvəntˌiːn" in ipa and syllable_count(ipa) == 7  # it's the se-ven-teen of march
    assert syllable_count(tts.phonemes("Gracias por llamar.", VoiceSpec("es", "f1"))) == 5
    with pytest.raises(InputError, match="empty text"):
        tts.phonemes("  ", VoiceSpec("en-us"))


def test_speech_seconds_leaves_out_long_pauses_only():
    sr = SAMPLE_RATE
    tone = (0.1 * np.sin(2 * np.pi * 200 * np.arange(sr) / sr)).astype(np.float32)  # 1 s of sound
    short_gap, long_gap = np.zeros(int(0.2 * sr), np.float32), np.zeros(int(0.5 * sr), np.float32)
    assert ca.speech_seconds(np.concatenate([tone, short_gap, tone]), sr) == pytest.approx(2.2, abs=0.011)
    assert ca.speech_seconds(np.concatenate([tone, long_gap, tone]), sr) == pytest.approx(2.0, abs=0.011)
    assert ca.speech_seconds(np.zeros(sr // 2, np.float32), sr) == 0.0
    assert ca.speech_seconds(np.zeros(10, np.float32), sr) == 0.0


def test_syllable_rate_counts_every_text_over_the_speech_time():
    tts = Espeak()
    spec = VoiceSpec("en-us", "m3", rate=160)
    one = tts.synth("Could you give me your account number, please?", spec, SAMPLE_RATE)
    gap = np.zeros(int(0.5 * SAMPLE_RATE), np.float32)
    twice = ca.Spoken(np.concatenate([one, gap, one]), ["Could you give me your account number, please?"] * 2)
    nuclei = 2 * syllable_count(tts.phonemes(twice.texts[0], spec))
    assert nuclei == 2 * 10  # could you give me your ac-count num-ber please
    rate = ca.syllable_rate(tts, twice, spec, SAMPLE_RATE)
    assert rate == pytest.approx(nuclei / ca.speech_seconds(twice.audio, SAMPLE_RATE))
    assert 3.0 < rate < 7.0  # English at 160 wpm
    assert np.isnan(ca.syllable_rate(tts, ca.Spoken(gap, ["silence"]), spec, SAMPLE_RATE))


def test_speaker_f0_is_the_rule_times_the_warp():
    spk = ca.Speaker("s", "en", "en-us", "f3", "f", 40, 30, 150, "sae", 1.05, 0.0, ())
    assert spk.f0_hz() == pytest.approx(espeak_f0_hz(spk.voice_spec()) * 1.05)
