"""Measured attributes in the segment table: ingest measures every segment (and caches it with the
embedding, keyed on the attributes version), numeric metadata columns stay numbers through ingest
and import-embeddings, and the categorical views (associations, suggestions, summary) leave the
continuous columns to `continuous`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from core.audio import attributes
from core.audio.attributes import measure_segments
from core.audio.read import cut, load_audio
from core.audio.segmentation import SegmentationConfig
from core.constants import CACHE_DIR, MEASURED_ATTRIBUTES
from core.democorpus.synthetic_voice import Speaker, utterance
from core.workspace import ingest as ingest_mod
from core.workspace.import_embeddings import import_embeddings
from core.workspace.ingest import INGEST_CACHE, cache_key, ingest
from core.workspace.metadata import numeric_columns
from core.workspace.workspace import Workspace

SR = 16_000
LOW = Speaker(f0=100.0, tract=0.92, tilt=0.95, breath=0.01)
HIGH = Speaker(f0=230.0, tract=1.25, tilt=0.88, breath=0.03)


def _padded(x):
    pad = np.zeros(SR, np.float32)
    return np.concatenate([pad, x, pad]).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "calls"
    root.mkdir()
    sf.write(root / "low.wav", _padded(utterance(LOW, 10.0, seed=1)), SR)
    sf.write(root / "high.wav", _padded(utterance(HIGH, 6.0, seed=2)), SR)
    meta = tmp_path / "meta.csv"
    meta.write_text("file,speaker,age,score,note\nlow.wav,1001,34,0.5,a\nhigh.wav,1002,51,,b\n")
    return root, meta


def _ingest(root, **kw):
    return ingest(root, "w", jobs=1, progress=False, device="cpu", **kw)


def test_ingest_stores_the_measured_columns_as_measured_on_the_embedded_audio(folder):
    root, meta = folder
    ws = Workspace.open(_ingest(root, metadata=meta).workspace.root)  # as stored, reopened
    seg = ws.segments
    assert set(MEASURED_ATTRIBUTES) <= set(ws.continuous_attributes())
    assert all(seg[c].dtype == np.float64 for c in MEASURED_ATTRIBUTES)
    # the same function on the same cuts gives the stored values
    pieces = [
        cut(load_audio(root / src), SR, s, e)
        for src, s, e in zip(seg["source"], seg["start_s"], seg["end_s"], strict=True)
    ]
    expected = measure_segments(pieces, SR)
    np.testing.assert_allclose(seg[list(MEASURED_ATTRIBUTES)].to_numpy(), expected.to_numpy(), rtol=1e-9)
    # and they say what the voices are: one near 100 Hz, one near 230 Hz
    f0 = seg.groupby("source")["f0_median_hz"].median()
    assert f0["low.wav"] == pytest.approx(100.0, rel=0.1)
    assert f0["high.wav"] == pytest.approx(230.0, rel=0.1)
    assert (seg["voiced_fraction"] > 0.3).all() and (seg["speech_rate"] > 0).all()
    # 3 segments: every measured column has <= 20 values, yet none is counted as a category
    counted = ws.summary()
    assert counted["speakers"] == 2 and counted["note"] == {"a": 2, "b": 1}
    assert not {*MEASURED_ATTRIBUTES, "age", "score"} & set(counted)


def test_numeric_metadata_columns_are_numbers_and_labels_stay_text(folder):
    root, meta = folder
    seg = Workspace.open(_ingest(root, metadata=meta).workspace.root).segments
    assert seg["age"].dtype == np.int64 and sorted(seg["age"].unique()) == [34, 51]
    assert seg["score"].dtype == np.float64  # one empty value: float with NaN
    assert seg.loc[seg["source"] == "high.wav", "score"].isna().all()
    assert pd.api.types.is_string_dtype(seg["speaker"]) and set(seg["speaker"]) == {"1001", "1002"}  # labels
    assert pd.api.types.is_string_dtype(seg["note"])


def test_telephony_measures_what_is_embedded(folder):
    root, _ = folder
    plain = _ingest(root).workspace.segments
    phone = ingest(root, "t", jobs=1, progress=False, device="cpu", telephony=True).workspace.segments
    # the channel takes the 100 Hz fundamental away: the loudness drops, the pitch stays
    low_plain, low_phone = (t[t["source"] == "low.wav"].iloc[0] for t in (plain, phone))
    assert low_phone["loudness_dbfs"] < low_plain["loudness_dbfs"] - 1.0
    assert low_phone["f0_median_hz"] == pytest.approx(low_plain["f0_median_hz"], rel=0.05)


def test_cache_key_includes_the_attributes_version(monkeypatch):
    key = cache_key("abc", "resemblyzer", None, SegmentationConfig(), False)
    monkeypatch.setattr(ingest_mod, "ATTRIBUTES_VERSION", attributes.ATTRIBUTES_VERSION + 1)
    assert cache_key("abc", "resemblyzer", None, SegmentationConfig(), False) != key


def test_a_cache_entry_without_attributes_is_recomputed_not_reused(folder, monkeypatch):
    root, _ = folder
    first = _ingest(root)
    cache = first.workspace.root / CACHE_DIR / INGEST_CACHE
    entries = sorted(cache.glob("*.npz"))
    assert len(entries) == 2
    for entry in entries:  # as an ingest before the measured attributes wrote them
        with np.load(entry) as z:
            old = {k: z[k] for k in ("starts", "ends", "embeddings", "skipped")}
        np.savez(entry, **old)
    again = _ingest(root)
    assert again.cached == 0 and again.computed == 2
    pd.testing.assert_frame_equal(again.workspace.segments, first.workspace.segments)
    third = _ingest(root)  # and now from the cache, attributes included
    assert third.cached == 2
    pd.testing.assert_frame_equal(third.workspace.segments, first.workspace.segments)


def test_numeric_columns_rule():
    frame = pd.DataFrame(
        {
            "ints": ["1", " 2", "3"],
            "floats": ["1.5", "", "2"],
            "mixed": ["1", "x", "2"],
            "not_finite": ["1", "inf", "2"],
            "nan_text": ["1", "nan", "2"],
            "empty": ["", "", ""],
            "speaker": ["1", "2", "3"],
            "kept": ["4", "5", "6"],
        }
    )
    out = numeric_columns(frame, skip=("kept",))
    assert out["ints"].tolist() == [1, 2, 3] and out["ints"].dtype == np.int64
    assert out["floats"].dtype == np.float64 and out["floats"].isna().tolist() == [False, True, False]
    for col in ("mixed", "not_finite", "nan_text", "empty", "speaker", "kept"):
        assert out[col].tolist() == frame[col].tolist(), col


def _imported(tmp_path, n=40):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "emb.npy", rng.normal(size=(n, 8)).astype(np.float32))
    lines = ["segment_id,speaker,class,f0_median_hz,synth_pitch"]
    for i in range(n):
        f0 = f"{rng.uniform(80, 260):.3f}" if i % 7 else ""  # some without a pitch (music)
        lines.append(f"s{i:03d},spk{i % 4},{'music' if i % 7 == 0 else 'voice'},{f0},{20 + i}")
    (tmp_path / "meta.csv").write_text("\n".join(lines) + "\n")
    return import_embeddings(tmp_path / "emb.npy", "imp", metadata=tmp_path / "meta.csv")


def test_import_embeddings_keeps_numeric_columns_numeric(tmp_path):
    ws = Workspace.open(_imported(tmp_path).root)
    seg = ws.segments
    assert seg["f0_median_hz"].dtype == np.float64 and seg["f0_median_hz"].isna().sum() == 6
    assert seg["synth_pitch"].dtype == np.int64 and seg["synth_pitch"].iloc[3] == 23
    assert ws.continuous_attributes() == ["f0_median_hz", "synth_pitch"]
    assert pd.api.types.is_string_dtype(seg["class"])


def test_categorical_views_leave_continuous_columns_out(tmp_path):
    """40 segments: each numeric column has <= 40 distinct values, under the categorical limits
    (suggestions 50, associations 64), so only the numeric rule keeps them out."""
    from core.analysis.suggestions import candidate_attributes
    from core.dashboard.browse import association_attributes
    from core.workspace.summary import summary_lines

    ws = _imported(tmp_path)
    assert candidate_attributes(ws) == ["class"]
    assert association_attributes(ws) == ["class"]
    text = "\n".join(summary_lines(ws, probes=[]))
    assert "segments   40" in text and "class      music 6, voice 34" in text
