"""The embedded default knows the truth behind its continuous attributes: each region's synthesis
parameters (espeak pitch, pitch range, words per minute, the call's channel noise, the F0 espeak
aims at and the syllables it spoke per second) are stored per region and per segment, every segment
is measured on its audio as stored, and within one voice variant the measured F0 and speaking rate
follow espeak's pitch and rate (Spearman >= 0.8) through the telephone channel (across variants:
tests/democorpus/test_demo_corpus.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from core.audio.attributes import measure_segments
from core.audio.channel import telephone_channel
from core.audio.read import cut, load_audio, resample
from core.constants import MEASURED_ATTRIBUTES, SAMPLE_RATE
from core.democorpus import build as demo_corpus
from core.democorpus import calls as ca
from core.democorpus.speech import Espeak, espeak_f0_hz

SEED, SCALE = 7, 0.05


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two calls of the small corpus, rendered as demo-corpus renders them: one with hold music
    (feature split), one with an announcement (sae split)."""
    speakers, plans = ca.plan_corpus(SEED, SCALE)
    kinds = [{it[0] for it in p.items} for p in plans]
    picked = [
        next(p for p, k in zip(plans, kinds, strict=True) if "music" in k),
        next(p for p, k in zip(plans, kinds, strict=True) if "announcement" in k),
    ]
    out = tmp_path_factory.mktemp("calls")
    results = demo_corpus.render_calls(picked, speakers, out, SEED, jobs=2, progress=False)
    return speakers, results, out


def test_regions_hold_the_synthesis_parameters(rendered):
    speakers, results, _ = rendered
    regions = pd.DataFrame([r for res in results for r in res.regions])
    assert set(ca.SYNTH_COLUMNS) <= set(regions.columns)
    assert all(pd.api.types.is_float_dtype(regions[c]) for c in ca.SYNTH_COLUMNS)
    voice = regions[regions["class"] == ca.CLASS_VOICE]
    for row in voice.itertuples():
        spk = speakers[row.speaker]
        assert (row.synth_pitch, row.synth_pitch_range, row.synth_wpm) == (spk.pitch, spk.range_, spk.rate)
        assert row.synth_f0_hz == spk.f0_hz()
    # syllables per second of speech: English about 155 wpm, Spanish faster (more syllables a word)
    assert voice["synth_rate"].between(2.5, 9.0).all()
    by_language = voice.groupby("language")["synth_rate"].mean()
    if len(by_language) == 2:
        assert by_language["es"] > by_language["en"]
    music = regions[regions["class"] == ca.CLASS_MUSIC]
    voice_only = ["synth_pitch", "synth_pitch_range", "synth_wpm", "synth_f0_hz", "synth_rate"]
    assert len(music) == 1 and music[voice_only].isna().all().all()
    ann = regions[regions["class"] == ca.CLASS_ANNOUNCEMENT]
    assert len(ann) == 1
    language = ann["language"].iloc[0]
    assert (
        tuple(ann[["synth_pitch", "synth_pitch_range", "synth_wpm"]].iloc[0]) == ca.IVR_VOICES[language][2:]
    )
    assert ann["synth_f0_hz"].iloc[0] == espeak_f0_hz(ca.ivr_spec(language))  # the IVR voice: no warp
    assert 2.5 < ann["synth_rate"].iloc[0] < 9.0
    # one line noise per call, the same for every region of it (music went through it too)
    per_call = regions.groupby("call")["synth_noise_db"]
    assert (per_call.nunique() == 1).all()
    assert per_call.first().between(-68, -60).all() and per_call.first().nunique() == 2


def test_segments_carry_the_parameters_and_are_measured_on_the_stored_audio(rendered):
    _, results, out = rendered
    table = demo_corpus.segments_table(results)
    for col in (*ca.SYNTH_COLUMNS, *MEASURED_ATTRIBUTES):
        assert pd.api.types.is_float_dtype(table[col]), col
    assert table.loc[table["class"] == ca.CLASS_MUSIC, "synth_wpm"].isna().all()
    assert table.loc[table["class"] == ca.CLASS_VOICE, "synth_wpm"].notna().all()
    audio = {src: load_audio(out / src, SAMPLE_RATE) for src in table["source"].unique()}
    pieces = [
        cut(audio[src], SAMPLE_RATE, s, e)
        for src, s, e in zip(table["source"], table["start_s"], table["end_s"], strict=True)
    ]
    expected = measure_segments(pieces, SAMPLE_RATE)
    np.testing.assert_allclose(table[list(MEASURED_ATTRIBUTES)].to_numpy(), expected.to_numpy(), rtol=1e-9)
    voice = table[table["class"] == ca.CLASS_VOICE]
    assert voice["f0_median_hz"].between(60, 450).all() and (voice["voiced_fraction"] > 0.3).all()
    assert voice["loudness_dbfs"].between(-35, -15).all()


def test_settings_carry_the_attributes_version():
    from core.audio import attributes

    assert demo_corpus.settings(0, 1.0)["attributes_version"] == attributes.ATTRIBUTES_VERSION


def _through_the_line(audio: np.ndarray, noise_db: float, rng) -> np.ndarray:
    """What render_call does to a call after synthesis: level, telephone channel, 8 kHz storage."""
    audio = ca._level(audio, -21.0)
    phone = np.clip(telephone_channel(audio, SAMPLE_RATE, noise_db=noise_db, rng=rng), -1.0, 1.0)
    return resample(resample(phone, SAMPLE_RATE, ca.STORE_RATE), ca.STORE_RATE, SAMPLE_RATE)


@pytest.mark.parametrize(
    ("accent", "variant"), [("en-us", "m3"), ("en-us", "f3"), ("es", "m1"), ("es", "f1")]
)
def test_measured_f0_and_rate_follow_espeak_pitch_and_rate(accent, variant):
    """One voice variant at a time: a variant shifts the pitch espeak starts from (f3 at pitch 25
    is higher than m3 at 75), so across variants espeak's pitch is not the F0 order. No audio
    colouring (its warp moves F0 and tempo by up to 6 %), the same sentences for every setting."""
    tts = Espeak()
    settings = [(pitch, wpm) for pitch in (25, 45, 65) for wpm in (130, 175, 220)]
    rows = []
    for i, (pitch, wpm) in enumerate(settings):
        speaker = ca.Speaker(
            "spk", "es" if accent == "es" else "en", accent, variant, "m", pitch, 30, wpm, "sae", 1.0, 0.0, ()
        )
        text_rng = np.random.default_rng(11)  # the same sentences at every setting
        turn = ca.synth_turn(tts, speaker, text_rng, 5.0, SAMPLE_RATE).audio
        rows.append(_through_the_line(turn, -64.0, np.random.default_rng(i)))
    measured = measure_segments(rows, SAMPLE_RATE)
    pitch, wpm = np.array(settings, dtype=float).T
    assert spearmanr(measured["f0_median_hz"], pitch).statistic >= 0.8
    assert spearmanr(measured["speech_rate"], wpm).statistic >= 0.8
