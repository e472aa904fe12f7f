"""core.embedders: registry, resemblyzer (batched = library result, speaker separation,
multi-process = single-process), TitaNet .nemo round trip from an untrained small model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.democorpus.synthetic_voice import Speaker, utterance
from core.embedders import (
    EMBEDDERS,
    WindowConfig,
    _torch_threads,
    embed_segments,
    get_embedder,
    shutdown_pool,
)
from core.errors import InputError

SPEAKERS = [
    Speaker(f0=100.0, tract=0.92, tilt=0.95, breath=0.01),
    Speaker(f0=150.0, tract=1.05, tilt=0.80, breath=0.06),
    Speaker(f0=230.0, tract=1.25, tilt=0.88, breath=0.03),
]
TITANET_YAML = Path(__file__).resolve().parents[2] / "core" / "embedders" / "titanet_small.yaml"


def test_registry_and_unknown_name():
    assert {"resemblyzer", "titanet"} <= set(EMBEDDERS)
    with pytest.raises(InputError, match="unknown embedder 'xvec'"):
        get_embedder("xvec")
    with pytest.raises(InputError, match="unknown embedder"):
        embed_segments("xvec", [np.zeros(100, np.float32)])


def test_resemblyzer_shape_norm_and_matches_library():
    from resemblyzer import VoiceEncoder

    from core.embedders.resemblyzer_encoder import normalize_volume

    emb = get_embedder("resemblyzer", device="cpu")
    assert emb.name == "resemblyzer" and emb.dim == 256 and emb.sample_rate == 16000
    audios = [utterance(SPEAKERS[0], 4.0, seed=1), utterance(SPEAKERS[1], 6.5, seed=2, level=0.01)]
    out = emb.embed(audios)
    assert out.shape == (2, 256) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # our batched partial-utterance path gives the library's embed_utterance result exactly
    ref = VoiceEncoder("cpu", verbose=False)
    with _torch_threads(1):  # torch's default 2 threads crawl when other processes share the CPU
        for a, e in zip(audios, out, strict=True):
            assert np.abs(ref.embed_utterance(normalize_volume(a)) - e).max() < 1e-5
    # batch composition does not matter beyond float rounding (a batched matmul rounds by its
    # batch's shape, and oneDNN picks kernels by shape and thread count: bit equality was flaky)
    assert np.abs(emb.embed(audios[:1])[0] - out[0]).max() <= 1e-6


def test_resemblyzer_same_speaker_closer_than_cross_speaker():
    audios = [utterance(spk, 5.0, seed=10 * i + k) for i, spk in enumerate(SPEAKERS) for k in range(3)]
    labels = np.repeat(np.arange(len(SPEAKERS)), 3)
    out = embed_segments("resemblyzer", audios, jobs=1, progress=False, device="cpu")
    cos = out @ out.T
    for s in range(len(SPEAKERS)):
        block = cos[np.ix_(labels == s, labels == s)]
        same = block[~np.eye(3, dtype=bool)].mean()
        for o in range(len(SPEAKERS)):
            if o != s:
                cross = cos[np.ix_(labels == s, labels == o)].mean()
                assert same > cross + 0.05, (s, o, same, cross)
    np.fill_diagonal(cos, -np.inf)
    assert (labels[cos.argmax(axis=1)] == labels).all()  # nearest neighbour is the same speaker


def test_two_processes_equal_one_process():
    audios = [utterance(SPEAKERS[i % 3], 4.0 + 0.5 * (i % 4), seed=i) for i in range(6)]
    try:
        multi = embed_segments(
            "resemblyzer", audios, jobs=2, batch_size=2, progress=False, device="cpu", pool=True
        )
    finally:
        shutdown_pool()
    single = embed_segments("resemblyzer", audios, jobs=1, progress=False, device="cpu")
    assert multi.shape == (6, 256)
    assert np.abs(multi - single).max() < 1e-4


def test_titanet_needs_local_checkpoint(tmp_path):
    with pytest.raises(InputError, match=r"local \.nemo file.*--checkpoint"):
        get_embedder("titanet")
    with pytest.raises(InputError, match=r"missing\.nemo.*not found"):
        get_embedder("titanet", checkpoint=str(tmp_path / "missing.nemo"))
    bad = tmp_path / "broken.nemo"
    bad.write_bytes(b"not a tar archive")
    with pytest.raises(InputError, match=r"broken\.nemo.*not a loadable NeMo"):
        get_embedder("titanet", checkpoint=str(bad))


def make_titanet(path: Path) -> Path:
    """Build an untrained small TitaNet from the repo's config and save it as .nemo."""
    from omegaconf import OmegaConf, open_dict

    from core.embedders.titanet import _quiet_nemo

    _quiet_nemo()
    from nemo.collections.asr.models import EncDecSpeakerLabelModel

    cfg = OmegaConf.load(TITANET_YAML).model
    with open_dict(cfg):  # NeMo's get_embedding/infer_file read the rate from train_ds
        cfg.train_ds.sample_rate = 16000
    model = EncDecSpeakerLabelModel(cfg=cfg)
    model.save_to(str(path))
    return path


def test_titanet_nemo_round_trip(tmp_path):
    ckpt = make_titanet(tmp_path / "titanet_small.nemo")
    emb = get_embedder("titanet", checkpoint=str(ckpt), device="cpu")
    assert emb.name == "titanet" and emb.dim == 192
    audios = [utterance(SPEAKERS[i], 2.0 + i, seed=i) for i in range(3)]
    out = embed_segments("titanet", audios, checkpoint=str(ckpt), progress=False, device="cpu")
    assert out.shape == (3, 192) and out.dtype == np.float32 and np.isfinite(out).all()
    again = emb.embed(audios[:1])
    assert np.allclose(again[0], out[0], atol=1e-4)  # deterministic, independent of padding
    # NeMo's own file API agrees with our batched forward
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, audios[0], 16000, subtype="FLOAT")
    ref = emb.model.get_embedding(str(wav)).cpu().numpy()[0]
    assert np.allclose(ref, out[0], atol=1e-3)


def test_ingest_with_titanet_checkpoint(tmp_path):
    import soundfile as sf

    from core.workspace.ingest import ingest

    ckpt = make_titanet(tmp_path / "tn.nemo")
    root = tmp_path / "audio"
    root.mkdir()
    sf.write(root / "a.wav", utterance(SPEAKERS[0], 5.0, seed=1), 16000)
    sf.write(root / "b.wav", utterance(SPEAKERS[2], 3.0, seed=2), 16000)
    res = ingest(root, "tn", embedder="titanet", checkpoint=str(ckpt), progress=False, device="cpu", jobs=1)
    ws = res.workspace
    assert ws.embedder == "titanet" and ws.dim == 192 and len(ws) == 2
    assert ws.info.provenance["checkpoint"] == str(ckpt.resolve())
    assert len(ws.info.provenance["checkpoint_sha256"]) == 64
    assert np.isfinite(np.asarray(ws.embeddings)).all()
    # windows: 1.6 s every 0.8 s embedded like segments (5 s -> 5 windows, 3 s -> 2), same pass
    from core.embedders.base import window_starts

    assert ws.info.provenance["windows"] == {"kind": "sliding", "length_s": 1.6, "hop_s": 0.8}
    counts = [len(window_starts(round(d * 16000), WindowConfig())) for d in ws.segments["duration_s"]]
    assert ws.windows.segment_rows.tolist() == np.repeat(np.arange(2), counts).tolist()
    assert ws.windows.embeddings.shape == (sum(counts), 192)


def test_resemblyzer_bad_weights_file(tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not torch")
    with pytest.raises(InputError, match=r"weights\.pt: not loadable resemblyzer weights"):
        embed_segments("resemblyzer", [np.zeros(16000, np.float32)] * 2, checkpoint=str(bad), pool=True)
    with pytest.raises(InputError, match=r"nothere\.pt: resemblyzer weights file not found"):
        get_embedder("resemblyzer", checkpoint=str(tmp_path / "nothere.pt"))


def test_a_job_count_is_held_to_the_machine(monkeypatch):
    import os

    from core.embedders import JOBS_PER_CPU, check_jobs

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert check_jobs(1, "ingest") == 1 and check_jobs(2 * JOBS_PER_CPU, "ingest") == 2 * JOBS_PER_CPU
    with pytest.raises(
        InputError,
        match=r"ingest: --jobs 9 is more worker processes .* \(at most 8: 4 per CPU core, 2 here\)",
    ):
        check_jobs(9, "ingest")
    with pytest.raises(InputError, match="demo-corpus: --jobs must be at least 1, got 0"):
        check_jobs(0, "demo-corpus")
