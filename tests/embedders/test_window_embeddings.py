"""Window embeddings beside segment embeddings: resemblyzer's partials (the segment embedding is
their normalised mean, as the library computes it), the sliding window of the other embedders
(counts and content), and the worker pool carrying windows back in order."""

from __future__ import annotations

import numpy as np
import pytest

from core.democorpus.synthetic_voice import Speaker, utterance
from core.embedders import (
    WindowConfig,
    _torch_threads,
    embed_segments,
    embed_segments_with_windows,
    get_embedder,
    shutdown_pool,
)
from core.embedders.base import sliding_windows, window_starts
from core.errors import InputError

SPEAKER = Speaker(f0=140.0, tract=1.0, tilt=0.9, breath=0.02)


def test_resemblyzer_windows_are_its_partials_and_average_to_the_segment():
    from resemblyzer import VoiceEncoder

    from core.embedders.resemblyzer_encoder import normalize_volume

    emb = get_embedder("resemblyzer", device="cpu")
    audios = [
        utterance(SPEAKER, 4.3, seed=3),
        utterance(SPEAKER, 1.0, seed=4),
        utterance(SPEAKER, 6.0, seed=5),
    ]
    with _torch_threads(1):
        out = emb.embed_with_windows(audios, WindowConfig())
        ref = VoiceEncoder("cpu", verbose=False)
        partials = [ref.embed_utterance(normalize_volume(a), return_partials=True)[1] for a in audios]
    counts = [len(p) for p in partials]
    assert counts[1] == 1 and counts[2] > counts[0] > 1  # a short segment is one (padded) partial
    assert np.array_equal(out.window_segment, np.repeat(np.arange(3), counts))
    assert out.windows.shape == (sum(counts), 256) and out.windows.dtype == np.float32
    assert np.abs(out.windows - np.concatenate(partials)).max() < 1e-5  # the library's partials
    assert np.allclose(np.linalg.norm(out.windows, axis=1), 1.0, atol=1e-5)  # L2-normalised
    for row in range(3):  # naive reference: the segment is the normalised mean of its windows
        mean = out.windows[out.window_segment == row].mean(axis=0)
        assert np.abs(mean / np.linalg.norm(mean) - out.segments[row]).max() < 1e-5
    assert np.abs(out.segments - emb.embed(audios)).max() < 1e-6  # the same segment embeddings


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(1.0, 1), (1.6, 1), (2.3, 1), (2.4, 2), (4.0, 4), (8.0, 9)],
)
def test_sliding_window_count(seconds, expected):
    # windows of 1.6 s every 0.8 s that fit whole: 1 + floor((L - 1.6) / 0.8); shorter: one
    assert len(window_starts(round(seconds * 16000), WindowConfig())) == expected


def test_mfcc_stats_windows_embed_each_window_like_a_segment():
    from core.embedders.mfcc_stats import segment_embedding

    cfg = WindowConfig(length_s=1.0, hop_s=0.5)
    audios = [utterance(SPEAKER, 3.0, seed=1), utterance(SPEAKER, 0.6, seed=2)]
    out = get_embedder("mfcc-stats").embed_with_windows(audios, cfg)
    assert np.array_equal(out.window_segment, [0, 0, 0, 0, 0, 1])  # 0, .5, 1, 1.5, 2 s; then all of it
    assert np.array_equal(out.windows[1], segment_embedding(audios[0][8000:24000]))
    assert np.array_equal(out.windows[5], segment_embedding(audios[1]))
    assert np.array_equal(out.segments, embed_segments("mfcc-stats", audios, jobs=1, progress=False))
    pieces, owner = sliding_windows(audios, cfg)
    assert [len(p) for p in pieces] == [16000] * 5 + [len(audios[1])] and owner.tolist() == [0] * 5 + [1]


def test_worker_pool_carries_windows_back_in_segment_order():
    audios = [utterance(SPEAKER, 2.0 + 0.7 * i, seed=i) for i in range(5)]
    try:
        pooled = embed_segments_with_windows(
            "mfcc-stats", audios, jobs=2, batch_size=2, progress=False, pool=True
        )
    finally:
        shutdown_pool()
    single = embed_segments_with_windows("mfcc-stats", audios, jobs=1, progress=False)
    expected = [len(window_starts(len(a), WindowConfig())) for a in audios]
    assert np.array_equal(pooled.window_segment, np.repeat(np.arange(5), expected))  # offset per chunk
    for got, want in zip(pooled, single, strict=True):
        assert np.array_equal(got, want)
    assert pooled.segments.shape == (5, 120) and pooled.windows.shape == (sum(expected), 120)


def test_no_segments_no_windows_and_bad_window_settings():
    out = embed_segments_with_windows("mfcc-stats", [], jobs=1, progress=False)
    assert out.segments.shape == (0, 120) and out.windows.shape == (0, 120) and out.window_segment.size == 0
    with pytest.raises(InputError, match=r"window hop_s 2.0 is longer than length_s 1.0"):
        WindowConfig(length_s=1.0, hop_s=2.0)
    with pytest.raises(InputError, match=r"window length_s nan: must be a finite number"):
        WindowConfig(length_s=float("nan"))
