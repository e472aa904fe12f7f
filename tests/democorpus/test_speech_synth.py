"""espeak-ng through ctypes: both languages speak, voices differ, perturbation colours audio."""

from __future__ import annotations

import numpy as np
import pytest

from core.constants import SAMPLE_RATE
from core.democorpus.speech import (
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    Espeak,
    Perturbation,
    VoiceSpec,
    perturb,
    random_perturbation,
    synth,
    variant_gender,
)
from core.errors import InputError


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _log_spectrum(x: np.ndarray) -> np.ndarray:
    n = 1024
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 2]
    spec = np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)).mean(axis=0)
    return np.log(spec + 1e-6)


@pytest.mark.parametrize(
    "text,voice",
    [
        ("Thank you for calling, how can I help you today?", "en-us"),
        ("Thank you for calling, how can I help you today?", "en-gb"),
        ("Gracias por llamar, ¿en qué puedo ayudarle hoy?", "es"),
        ("Gracias por llamar, ¿en qué puedo ayudarle hoy?", "es-419"),
    ],
)
def test_synthesises_speech_in_both_languages(text, voice):
    audio = synth(text, VoiceSpec(voice, "f3", pitch=50, range_=50, rate=170))
    assert audio.dtype == np.float32
    assert 1.0 < audio.size / SAMPLE_RATE < 6.0  # a sentence, at 16 kHz
    assert np.isfinite(audio).all()
    assert _rms(audio) > 0.02
    assert np.abs(audio).max() <= 1.0


def test_engine_is_one_per_process_at_22050():
    assert Espeak() is Espeak()
    assert Espeak().rate_hz == 22_050


def test_different_voices_and_parameters_differ():
    text = "My account number is five five two one."
    female = synth(text, VoiceSpec("en-us", "f3", pitch=60))
    male = synth(text, VoiceSpec("en-us", "m3", pitch=40))
    # timbre: long-term spectra differ clearly
    assert np.abs(_log_spectrum(female) - _log_spectrum(male)).mean() > 0.3
    # rate: a faster rate makes shorter audio
    slow = synth(text, VoiceSpec("en-us", "m3", rate=130))
    fast = synth(text, VoiceSpec("en-us", "m3", rate=230))
    assert fast.size < 0.8 * slow.size
    # same settings, the same speech: espeak-ng carries a little state between syntheses
    # (lengths move by a few samples), which is why demo-corpus renders each call in a fresh process
    again = synth(text, VoiceSpec("en-us", "m3", pitch=40))
    assert abs(again.size - male.size) < 0.01 * male.size


def test_perturbation_changes_audio_but_keeps_it_sane():
    audio = synth("Please hold for a moment.", VoiceSpec("es", "m2"))
    p = random_perturbation(np.random.default_rng(3))
    out = perturb(audio, SAMPLE_RATE, p)
    assert np.isfinite(out).all() and out.dtype == np.float32
    assert abs(out.size - audio.size / p.warp) < 0.01 * audio.size
    assert np.abs(_log_spectrum(out) - _log_spectrum(audio[: out.size])).mean() > 0.05
    assert np.array_equal(perturb(audio, SAMPLE_RATE, Perturbation()), audio)


def test_variant_genders_and_bad_voice():
    assert all(variant_gender(v) == "f" for v in FEMALE_VARIANTS)
    assert all(variant_gender(v) == "m" for v in MALE_VARIANTS)
    with pytest.raises(InputError, match="variant"):
        variant_gender("robosoft")
    with pytest.raises(InputError, match="no voice"):
        synth("hello", VoiceSpec("xx-nowhere", "f3"))
    with pytest.raises(InputError, match="empty"):
        synth("   ", VoiceSpec("en-us"))


def test_breathy_voice_is_the_same_in_another_process_a_second_later():
    # espeak-ng seeds the noise of breathy/rough variants (f2: breath, roughness) from the clock;
    # the demo corpus must not depend on when it was built
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = (
        "import hashlib; from core.democorpus.speech import synth, VoiceSpec; "
        "a = synth('Gracias por llamar, un agente le atenderá en breve.', VoiceSpec('es', 'f2', 55, 35, 175)); "
        "print(a.size, hashlib.md5(a.tobytes()).hexdigest())"
    )
    repo = Path(__file__).resolve().parents[2]
    outs = []
    for _ in range(2):
        outs.append(
            subprocess.run(
                [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
            ).stdout
        )
        time.sleep(1.1)
    assert outs[0] == outs[1] and int(outs[0].split()[0]) > 16000
