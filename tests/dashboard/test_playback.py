"""core.dashboard.playback: catalogue segments cut server-side to WAV bytes; nothing by path."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from dashboard_ws import ingested_with_escape, zero_hz_wav

from core.audio.read import save_wav
from core.dashboard.playback import segment_audio, segment_wav
from core.errors import InputError, NotFoundError
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


# -- only files under the workspace's audio folders are read (issue "Trust", item 3) -------------
@pytest.fixture()
def escaping_ws(tmp_path):
    """A workspace whose catalogue names sources in and outside its audio folder: audio/call.wav,
    `../outside.wav`, an absolute path elsewhere, a symlink pointing out and one pointing in."""
    audio = (np.arange(SR) / SR).astype(np.float32) * 0.5
    outside = tmp_path / "outside.wav"
    save_wav(outside, audio, SR)
    sources = {
        "inside": "call.wav",
        "up": "../../../outside.wav",  # audio/ -> ws/ -> data/ -> tmp_path
        "absolute": str(outside),
        "link-out": "link-out.wav",
        "link-in": "link-in.wav",
        "absolute-in": "",  # filled below: an absolute path inside audio/
        "dotdot-in": "sub/../call.wav",
    }
    seg = pd.DataFrame(
        {
            "segment_id": list(sources),
            "source": list(sources.values()),
            "start_s": 0.0,
            "end_s": 0.5,
            "duration_s": 0.5,
        }
    )
    root = tmp_path / "data" / "ws"
    seg.loc[seg["segment_id"] == "absolute-in", "source"] = str(root / "audio" / "call.wav")
    w = Workspace.create(root, seg, np.ones((len(seg), 4), np.float32), embedder="x", sample_rate=SR)
    save_wav(w.audio_dir / "call.wav", audio, SR)
    (w.audio_dir / "link-out.wav").symlink_to(outside)
    (w.audio_dir / "link-in.wav").symlink_to(w.audio_dir / "call.wav")
    return w


@pytest.mark.parametrize("segment", ["up", "absolute", "link-out"])
def test_sources_outside_the_audio_folder_are_refused_and_logged(escaping_ws, segment, caplog, monkeypatch):
    opened = []
    real_info = sf.info
    monkeypatch.setattr(sf, "info", lambda path, *a, **k: opened.append(path) or real_info(path, *a, **k))
    with caplog.at_level("WARNING", logger="core.workspace.workspace"), pytest.raises(InputError) as err:
        segment_wav(escaping_ws, segment)
    assert f"segment {segment!r}" in str(err.value) and "outside the workspace's audio folder" in str(
        err.value
    )
    assert opened == []  # never read
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "refused source" in caplog.records[0].getMessage()
    assert str((escaping_ws.root.parent.parent / "outside.wav").resolve()) in caplog.records[0].getMessage()


@pytest.mark.parametrize("segment", ["inside", "link-in", "absolute-in", "dotdot-in"])
def test_sources_inside_the_audio_folder_play(escaping_ws, segment):
    audio, sr = segment_audio(escaping_ws, segment)
    assert sr == SR and len(audio) == SR // 2
    assert abs(float(audio[SR // 4]) - 0.125) < 1e-3  # the ramp at 0.25 s


def test_ingested_sources_resolve_against_the_recorded_audio_root(tmp_path):
    """An ingested workspace plays files of the folder it was ingested from, nothing beside it."""
    calls = tmp_path / "calls"
    w = ingested_with_escape(tmp_path / "ws", calls, tmp_path / "private.wav")
    audio, _ = segment_audio(w, "a")
    assert np.allclose(audio, 0.25, atol=1e-3)
    assert w.source_path("a.wav") == (calls / "a.wav").resolve()
    with pytest.raises(InputError, match=r"'\.\./private\.wav' is outside"):
        segment_audio(w, "escape")


@pytest.mark.parametrize(
    ("source", "match"),
    [("a\x00b.wav", "not a usable path"), ("x" * 5000 + ".wav", "not a usable path")],
)
def test_unusable_source_paths_are_one_error(tmp_path, source, match):
    seg = pd.DataFrame(
        {"segment_id": ["s"], "source": [source], "start_s": 0.0, "end_s": 1.0, "duration_s": 1.0}
    )
    w = Workspace.create(tmp_path / "ws", seg, np.ones((1, 4), np.float32), embedder="x", sample_rate=SR)
    with pytest.raises(InputError, match=match) as err:
        segment_wav(w, "s")
    assert len(str(err.value)) < 400  # a 5000-character source is shortened


@pytest.fixture()
def timed_ws(tmp_path):
    rows = [
        ("past", 100.0, 105.0),
        ("before", -5.0, -1.0),
        ("minus-inf", -np.inf, 1.0),
        ("no-times", np.nan, np.nan),
        ("zero-hz", 0.0, 1.0),
        ("text", 0.0, 1.0),
    ]
    seg = pd.DataFrame(rows, columns=["segment_id", "start_s", "end_s"])
    seg.insert(1, "source", ["call.wav"] * 4 + ["zero.wav", "text.wav"])
    seg["duration_s"] = 1.0
    w = Workspace.create(
        tmp_path / "ws", seg, np.ones((len(seg), 4), np.float32), embedder="x", sample_rate=SR
    )
    save_wav(w.audio_dir / "call.wav", np.full(3 * SR, 0.2, np.float32), SR)
    (w.audio_dir / "zero.wav").write_bytes(zero_hz_wav())
    (w.audio_dir / "text.wav").write_text("not audio\n" * 100)
    return w


@pytest.mark.parametrize(
    ("segment", "match"),
    [
        ("past", r"\(100\.00-105\.00 s\) lies outside the audio \(0-3\.00 s\)"),
        ("before", "lies outside the audio"),
        ("minus-inf", "empty time range"),
        ("zero-hz", "corrupt audio header \\(sample rate 0 Hz"),
        ("text", "unreadable or corrupt audio"),
    ],
)
def test_bad_time_ranges_and_files_are_one_error(timed_ws, segment, match):
    with pytest.raises(InputError, match=match):
        segment_wav(timed_ws, segment)


def test_a_segment_without_times_plays_from_the_start(timed_ws):
    audio, sr = segment_audio(timed_ws, "no-times")
    assert sr == SR and len(audio) == 3 * SR and np.allclose(audio, 0.2, atol=1e-3)
