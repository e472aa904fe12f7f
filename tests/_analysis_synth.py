"""A small synthetic workspace with planted features, and tiny SAEs trained on it (shared by the
analyses tests: test_features, test_identification, test_grid, test_splitting, test_steering,
test_suggestions, test_report).

Embeddings (dim D) = speaker vector + noise + planted directions:
  * language es: + A * normalise(d_es + g_sex)  (g_female / g_male orthogonal sub-directions),
    so one "es" latent in a small SAE can split into "es female" / "es male" latents in a larger one;
  * class music: + B * d_music and no speaker voice.
Rows: split 'sae' (SAE training speakers) and 'feature' (disjoint speakers), like the paper.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from core.sae import SAEConfig, create_sae
from core.workspace.workspace import Workspace

D = 24
GENDER_OFFSET = 0.6  # how far es-female and es-male lie apart, relative to the es direction
N_VOICE_DIRS = 8  # speaker-identity directions (each speaker uses 2)


def _unit(v):
    return v / np.linalg.norm(v)


def planted_directions(seed: int = 123) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    return {"es": q[:, 0], "female": q[:, 1], "male": q[:, 2], "music": q[:, 3], "rest": q[:, 4:]}


def make_rows(n_speakers: int, per_speaker: int, split: str, spk_offset: int, rng, dirs, music_rate=0.15):
    rows, embs = [], []
    rest = dirs["rest"]
    for s in range(n_speakers):
        spk = f"spk{spk_offset + s:03d}"
        lang = "es" if s % 2 == 0 else "en"
        sex = "female" if (s // 2) % 2 == 0 else "male"
        # speaker identity: a sparse combination of 2 "rest" directions
        idx = rng.choice(N_VOICE_DIRS, 2, replace=False)
        voice = rest[:, idx] @ rng.uniform(0.6, 1.0, 2)
        for _ in range(per_speaker):
            is_music = rng.random() < music_rate
            if is_music:
                x = 1.6 * dirs["music"] + 0.15 * rng.normal(size=D)
                rows.append(dict(speaker=spk, language=None, gender=None, **{"class": "music"}, split=split))
            else:
                x = voice + 0.1 * rng.normal(size=D)
                if lang == "es":
                    x = x + 1.4 * _unit(dirs["es"] + GENDER_OFFSET * dirs[sex])
                rows.append(dict(speaker=spk, language=lang, gender=sex, **{"class": "voice"}, split=split))
            embs.append(x)
    return rows, embs


def build_workspace(
    name: str = "synth",
    *,
    seed: int = 0,
    n_sae_speakers: int = 80,
    n_feat_speakers: int = 48,
    per_speaker: int = 12,
    embedder: str = "synthetic",
) -> Workspace:
    rng = np.random.default_rng(seed)
    dirs = planted_directions()
    r1, e1 = make_rows(n_sae_speakers, per_speaker, "sae", 0, rng, dirs)
    r2, e2 = make_rows(n_feat_speakers, per_speaker, "feature", 1000, rng, dirs)
    meta = pd.DataFrame(r1 + r2)
    n = len(meta)
    seg = pd.DataFrame(
        {
            "segment_id": [f"s{i:05d}" for i in range(n)],
            "source": [f"call{i // 10}.wav" for i in range(n)],
            "start_s": np.zeros(n),
            "end_s": np.full(n, 5.0),
            "duration_s": np.full(n, 5.0),
        }
    )
    seg = pd.concat([seg, meta], axis=1)
    emb = np.asarray(e1 + e2, dtype=np.float32)
    return Workspace.create(name, seg, emb, embedder=embedder, sample_rate=16000)


def train_sae(
    x: np.ndarray, d_sae: int, k: int, *, steps: int = 300, seed: int = 0, lr: float = 3e-3, batch: int = 128
):
    torch.manual_seed(seed)
    cfg = SAEConfig(
        architecture="topk", d_in=x.shape[1], d_sae=d_sae, k=k, seed=seed, auxk_coefficient=1 / 32
    )
    sae = create_sae(cfg)
    xt = torch.as_tensor(x, dtype=torch.float32)
    sae.init_weights(b_dec=xt.mean(0))
    scale = float((xt - xt.mean(0)).pow(2).sum(-1).mean())
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    fired = torch.zeros(d_sae)
    for step in range(steps):
        idx = torch.randint(0, len(xt), (batch,), generator=gen)
        dead = fired < 0.5 if step > 50 else None
        out = sae.reference_loss(xt[idx], scale, dead)
        opt.zero_grad()
        out.loss.backward()
        sae.remove_parallel_grads()
        opt.step()
        sae.normalize_decoder()
        fired = 0.9 * fired + (out.latents > 0).any(0).float()
    sae.eval()
    return sae


def train_models(
    ws: Workspace, shapes=((6, 2), (16, 2)), steps: int = 300, *, seed: int = 0, suffix: str = ""
) -> list[str]:
    """Train tiny TopK SAEs on the 'sae' split and save them as the workspace's models, named
    model_name(...) + suffix (e.g. '-s1' for another seed)."""
    from core.sae.checkpoint import save_sae
    from core.training.grid import model_name

    seg = ws.segments
    x = np.asarray(ws.embeddings, dtype=np.float32)[(seg["split"] == "sae").to_numpy()]
    names = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention on the shared 2 cores
    try:
        saes = [train_sae(x, d_sae, k, steps=steps, seed=seed) for d_sae, k in shapes]
    finally:
        torch.set_num_threads(threads)
    for (d_sae, k), sae in zip(shapes, saes, strict=True):
        name = model_name("topk", d_sae, k) + suffix
        save_sae(
            sae,
            ws.models_dir / name,
            metrics={"mse": 0.0},
            info={
                "name": name,
                "workspace": ws.name,
                "fingerprint": ws.fingerprint,
                "embedder": ws.embedder,
                "d_in": ws.dim,
            },
        )
        names.append(name)
    return names


def trained_workspace(tmp_path_factory, tag: str = "ana") -> Workspace:
    """A synthetic workspace with two tiny TopK SAEs (6 and 16 latents, K=2) in its models/."""
    ws = build_workspace(str(tmp_path_factory.mktemp(tag) / "synth"))
    train_models(ws)
    return ws
