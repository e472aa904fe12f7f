"""Generated hold music renders as non-silent, musical audio with either renderer."""

from __future__ import annotations

import numpy as np
import pytest

from core.constants import SAMPLE_RATE
from core.democorpus.music import compose, hold_music, render, renderer


def test_renderer_is_known():
    assert renderer() in {"fluidsynth", "pretty_midi-synthesize"}


def test_hold_music_has_requested_length_and_sound():
    audio = hold_music(np.random.default_rng(0), 6.0)
    assert audio.dtype == np.float32 and audio.size == 6 * SAMPLE_RATE
    assert np.isfinite(audio).all()
    assert float(np.sqrt(np.mean(audio**2))) > 0.02
    # no long silent stretch inside the piece (the segmenter must see it as one region)
    frames = audio[SAMPLE_RATE // 2 : -SAMPLE_RATE // 2].reshape(-1, 800)
    assert (np.sqrt((frames**2).mean(axis=1)) > 1e-3).all()


def test_pieces_differ_and_are_deterministic():
    a = hold_music(np.random.default_rng(1), 4.0)
    b = hold_music(np.random.default_rng(2), 4.0)
    assert not np.allclose(a, b)
    assert np.array_equal(a, hold_music(np.random.default_rng(1), 4.0))


@pytest.mark.parametrize("method", ["pretty_midi-synthesize", "fluidsynth"])
def test_both_renderers(method):
    if method == "fluidsynth" and renderer() != "fluidsynth":
        pytest.skip("libfluidsynth not available here")
    pm = compose(np.random.default_rng(0), 3.0)
    assert len(pm.instruments) == 3 and all(inst.notes for inst in pm.instruments)
    audio = render(pm, method=method)
    assert audio.size >= 3 * SAMPLE_RATE
    assert np.isclose(np.abs(audio).max(), 0.5, atol=1e-3)
