"""core.dashboard.playback: catalogue segments cut server-side to WAV bytes; nothing by path."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from core.audio.read import save_wav
from core.dashboard.playback import segment_audio, segment_wav
from core.errors import NotFoundError
from core.workspace.workspace import Workspace

SR = 16_000


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("play")
    seg = pd.DataFrame(
        {
            "segment_id": ["a", "b", "c", "gone"],
            "source": ["ramp.wav", "ramp.wav", "stereo44k.wav", "missing.wav"],
            "start_s": [0.0, 1.5, 0.5, 0.0],
            "end_s": [1.0, 2.5, 1.0, 1.0],
            "duration_s": [1.0, 1.0, 0.5, 1.0],
        }
    )
    w = Workspace.create(root / "ws", seg, np.ones((4, 8), np.float32), embedder="x", sample_rate=SR)
    ramp = (np.arange(3 * SR) / (3 * SR)).astype(np.float32) * 0.9  # value encodes the time
    save_wav(w.audio_dir / "ramp.wav", ramp, SR)
    t = np.arange(44_100 * 2) / 44_100
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)], axis=1)
    sf.write(w.audio_dir / "stereo44k.wav", stereo, 44_100)
    (root / "secret.wav").write_bytes(b"not for you")
    return w


def test_cut_is_the_catalogue_range(ws):
    audio, sr = segment_audio(ws, "b")
    assert sr == SR and len(audio) == SR
    # the ramp value at 1.5 s is 0.45 (16-bit tolerance)
    assert abs(float(audio[0]) - 0.45) < 1e-3 and abs(float(audio[-1]) - 0.75) < 1e-3
    data, rate = sf.read(io.BytesIO(segment_wav(ws, "a")))
    assert rate == SR and len(data) == SR and abs(data[-1] - 0.3) < 1e-3


def test_other_rates_and_channels_are_mono_at_source_rate(ws):
    audio, sr = segment_audio(ws, "c")
    assert sr == 44_100 and audio.ndim == 1 and len(audio) == 22_050
    resampled, sr2 = segment_audio(ws, "c", sample_rate=SR)
    assert sr2 == SR and abs(len(resampled) - SR // 2) <= 2


@pytest.mark.parametrize("bad", ["nope", "../secret.wav", "/etc/passwd", "ramp.wav", ""])
def test_unknown_segment_ids_are_not_found(ws, bad):
    with pytest.raises(NotFoundError, match="no segment"):
        segment_wav(ws, bad)


def test_missing_source_is_not_found(ws):
    with pytest.raises(NotFoundError, match="not available"):
        segment_wav(ws, "gone")
