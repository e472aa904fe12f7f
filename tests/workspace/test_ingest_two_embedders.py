"""One folder of audio ingested by two embedders (resemblyzer and mfcc-stats): the same segments
under the same ids, each workspace with its own embedder and dim (what `universality
--model-workspace` matches on)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import soundfile as sf

from core.audio.read import cut, load_audio
from core.cli import main as cli_main
from core.embedders.mfcc_stats import segment_embedding
from core.workspace.workspace import Workspace

SR = 16_000


def tones_and_noise(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A few harmonics of f0 with a slow tremolo, over light noise, 0.8 s of silence either side."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
    sound = 0.2 * tone * (0.7 + 0.3 * np.sin(2 * np.pi * 2.0 * t)) + 0.02 * rng.normal(size=t.size)
    pad = np.zeros(int(0.8 * SR))
    return np.concatenate([pad, sound, pad]).astype(np.float32)


def test_the_same_folder_ingested_twice_has_the_same_segment_ids(tmp_path):
    calls = tmp_path / "calls"
    (calls / "b").mkdir(parents=True)
    sf.write(calls / "a.wav", tones_and_noise(6.0, 150.0, 1), SR)
    sf.write(calls / "b" / "c.wav", tones_and_noise(5.0, 220.0, 2), SR)
    long = np.concatenate([tones_and_noise(7.0, 120.0, 3), tones_and_noise(6.5, 300.0, 4)])
    sf.write(calls / "d.wav", long, SR)  # two sounds with a silence between: two segments
    for name, embedder in (("rz", "resemblyzer"), ("mf", "mfcc-stats")):
        rc = cli_main(["ingest", str(calls), "--workspace", name, "--embedder", embedder, "--jobs", "1"])
        assert rc == 0
    rz, mf = Workspace.open("rz"), Workspace.open("mf")
    assert (rz.embedder, rz.dim, mf.embedder, mf.dim) == ("resemblyzer", 256, "mfcc-stats", 120)
    assert list(mf.segments["segment_id"]) == ["a#0000", "b/c#0000", "d#0000", "d#0001"]
    pd.testing.assert_frame_equal(rz.segments, mf.segments)
    assert rz.fingerprint != mf.fingerprint  # other embeddings, so another workspace
    # each row is the mfcc-stats embedding of exactly that stretch of its file
    seg = mf.segments.iloc[3]
    piece = cut(load_audio(calls / "d.wav"), SR, seg["start_s"], seg["end_s"])
    np.testing.assert_allclose(mf.embeddings[3], segment_embedding(piece), rtol=1e-3, atol=1e-3)
    assert mf.info.provenance["embedder"] == "mfcc-stats" and mf.info.provenance["checkpoint"] is None
