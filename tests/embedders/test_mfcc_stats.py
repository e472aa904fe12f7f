"""core.embedders.mfcc_stats: librosa's MFCC + deltas exactly, mean/sd layout, determinism,
batch independence, the worker pool, and that it tells voices apart."""

from __future__ import annotations

import numpy as np
import pytest
from bad_audio import voice_like

from core.embedders import EMBEDDER_DIMS, EMBEDDERS, embed_segments, get_embedder, shutdown_pool
from core.embedders.mfcc_stats import DIM, N_MFCC, frame_features, mel_basis, segment_embedding
from core.errors import InputError

SR = 16_000


def _librosa_features(y: np.ndarray) -> np.ndarray:
    """The documented recipe, computed by librosa itself."""
    import librosa

    y = np.pad(y, (0, max(0, 400 - y.size)))
    mfcc = librosa.feature.mfcc(
        y=y, sr=SR, n_mfcc=21, n_fft=400, hop_length=160, n_mels=40, fmin=20.0, fmax=8000.0
    )[1:]
    d1 = librosa.feature.delta(mfcc, width=9, order=1, mode="nearest")
    d2 = librosa.feature.delta(mfcc, width=9, order=2, mode="nearest")
    return np.concatenate([mfcc, d1, d2])


def test_registered_with_a_fixed_dimension():
    assert "mfcc-stats" in EMBEDDERS and EMBEDDER_DIMS["mfcc-stats"] == DIM == 120
    emb = get_embedder("mfcc-stats")
    assert (emb.name, emb.dim, emb.sample_rate, emb.checkpoint) == ("mfcc-stats", 120, SR, None)


def test_mel_filters_are_librosas():
    import librosa

    ref = librosa.filters.mel(sr=SR, n_fft=400, n_mels=40, fmin=20.0, fmax=8000.0)
    ours = mel_basis().toarray()
    assert ours.shape == ref.shape == (40, 201)
    assert np.abs(ours - ref).max() < 1e-6 * ref.max()


def test_frame_features_are_librosas_mfcc_and_deltas():
    rng = np.random.default_rng(3)
    for n in (0, 250, 555, 5 * SR + 77):  # empty, shorter than a window, a few frames, 5 s
        y = (voice_like(n / SR, 140.0, seed=4)[:n] + 0.01 * rng.normal(size=n)).astype(np.float32)
        ours, ref = frame_features(y), _librosa_features(y)
        assert ours.shape == ref.shape == (3 * N_MFCC, ref.shape[1])
        scale = np.abs(ref).max(axis=1, keepdims=True) + 1.0
        assert np.abs(ours - ref).max() / scale.min() < 1e-4, n


def test_embedding_is_mean_then_sd_of_the_frame_features():
    y = voice_like(6.0, 120.0, seed=1)
    feats = _librosa_features(y)
    emb = segment_embedding(y)
    assert emb.shape == (120,) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[:60], feats.mean(axis=1), atol=1e-3)
    np.testing.assert_allclose(emb[60:], feats.std(axis=1), atol=1e-3)
    assert (emb[60:] >= 0).all()
    # a steady tone barely moves: the sd of its cepstra is a small fraction of a voice's
    t = np.arange(6 * SR) / SR
    steady = segment_embedding((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
    assert emb[60:80].mean() > 2.0 and steady[60:80].mean() < 0.25 * emb[60:80].mean()


def test_silence_is_finite_and_flat():
    emb = segment_embedding(np.zeros(4 * SR, np.float32))
    assert np.isfinite(emb).all() and np.abs(emb).max() < 1e-9  # a flat dB spectrum: cepstra 1-20 are 0


def test_deterministic_and_independent_of_the_batch():
    audios = [voice_like(4.0 + i, 110.0 + 30 * i, seed=i) for i in range(3)]
    emb = get_embedder("mfcc-stats")
    together = emb.embed(audios)
    assert together.shape == (3, 120) and np.isfinite(together).all()
    assert np.array_equal(together, emb.embed(audios))
    alone = np.stack([emb.embed([a])[0] for a in audios])
    assert np.array_equal(together, alone)


def test_same_voice_closer_than_another_voice():
    f0s = (100.0, 160.0, 240.0)
    audios = [voice_like(5.0, f0, seed=10 * i + k) for i, f0 in enumerate(f0s) for k in range(3)]
    labels = np.repeat(np.arange(3), 3)
    out = embed_segments("mfcc-stats", audios, jobs=1, progress=False)
    dist = np.linalg.norm(out[:, None] - out[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    assert (labels[dist.argmin(axis=1)] == labels).all()


def test_worker_pool_equals_this_process():
    audios = [voice_like(4.0, 100.0 + 20 * i, seed=i) for i in range(4)]
    try:
        pooled = embed_segments("mfcc-stats", audios, jobs=2, batch_size=2, progress=False, pool=True)
    finally:
        shutdown_pool()
    single = embed_segments("mfcc-stats", audios, jobs=1, progress=False, device="cuda")  # runs on CPU
    assert np.array_equal(pooled, single)


def test_a_checkpoint_is_refused():
    with pytest.raises(InputError, match="'mfcc-stats' has no weights and takes no --checkpoint"):
        get_embedder("mfcc-stats", checkpoint="/tmp/x.nemo")
