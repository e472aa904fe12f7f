"""ingest stores each segment's window embeddings (from the same embedding pass), aligned with
the segment table across files, through the per-file cache, recorded in provenance."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from core.audio.read import cut, load_audio
from core.democorpus.synthetic_voice import Speaker, utterance
from core.embedders.base import window_starts
from core.embedders.mfcc_stats import segment_embedding
from core.workspace.ingest import WINDOWS, ingest

SR = 16000
A = Speaker(f0=110.0, tract=0.95, tilt=0.9, breath=0.02)
B = Speaker(f0=210.0, tract=1.2, tilt=0.85, breath=0.03)


def _folder(tmp_path):
    root = tmp_path / "calls"
    root.mkdir()
    pad = np.zeros(SR, np.float32)
    sf.write(root / "a.wav", np.concatenate([pad, utterance(A, 10.0, seed=1), pad]), SR)  # 2 segments
    sf.write(root / "b.wav", np.concatenate([pad, utterance(B, 5.0, seed=2), pad]), SR)  # 1 segment
    return root


def test_mfcc_stats_ingest_stores_sliding_windows_aligned_with_the_segments(tmp_path):
    root = _folder(tmp_path)
    res = ingest(root, "w", embedder="mfcc-stats", jobs=1, progress=False)
    ws = res.workspace
    seg, win = ws.segments, ws.windows
    audio = {src: load_audio(root / src) for src in seg["source"].unique()}
    pieces = [cut(audio[r.source], SR, r.start_s, r.end_s) for r in seg.itertuples()]
    counts = [len(window_starts(len(p), WINDOWS)) for p in pieces]
    assert len(seg) == 3 and min(counts) >= 4
    assert win.segment_rows.tolist() == np.repeat(np.arange(3), counts).tolist()  # b.wav's rows after a.wav's
    last = pieces[2][round(0.8 * SR) : round(0.8 * SR) + round(1.6 * SR)]  # second window of b.wav's segment
    assert np.array_equal(win.embeddings[counts[0] + counts[1] + 1], segment_embedding(last))
    assert ws.info.provenance["windows"] == {"kind": "sliding", "length_s": 1.6, "hop_s": 0.8}
    again = ingest(root, "w", embedder="mfcc-stats", jobs=1, progress=False)  # every file from the cache
    assert again.cached == 2 and again.computed == 0
    assert np.array_equal(np.asarray(again.workspace.windows.embeddings), np.asarray(win.embeddings))
    assert again.workspace.fingerprint == ws.fingerprint


def test_resemblyzer_ingest_stores_the_partials_its_segments_average(tmp_path):
    root = _folder(tmp_path)
    ws = ingest(root, "r", jobs=1, progress=False, device="cpu").workspace
    emb, win = np.asarray(ws.embeddings), ws.windows
    assert ws.info.provenance["windows"]["kind"] == "resemblyzer partials"
    assert np.array_equal(np.unique(win.segment_rows), np.arange(len(emb)))
    for row in range(len(emb)):
        mean = np.asarray(win.embeddings)[win.segment_rows == row].mean(axis=0)
        assert np.abs(mean / np.linalg.norm(mean) - emb[row]).max() < 1e-5
