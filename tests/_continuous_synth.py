"""Workspaces whose SAE encodes a continuous attribute in a known way (the `continuous` tests of
the analysis, the CLI's hostile inputs, the page and the report share them).

Embeddings are D-dimensional; the SAE is a TopK SAE with hand-set weights (encoder = chosen unit
directions, so a latent fires exactly when its direction is present), saved with
core.sae.checkpoint like a trained model:

* "bins": the pitch (f0_median_hz, 80-280 Hz) falls in one of BANDS; a row holds the direction of
  its band, so latent i fires on band i only -> binning with ordered ranges;
* "linear": a row holds direction 0 scaled by (pitch - 70) / 210, so latent 0 rises with pitch
  over the whole range -> spearman ~ 1, no binning.
Every row also has small positive noise on the last NOISE_DIMS directions (latents that fire
everywhere: not concentrated). A `split` column marks half the speakers `feature` (analysed) and
`language`, `level` are a categorical and a constant column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sae_synth import segments_for

from core.sae import SAEConfig, create_sae
from core.sae.checkpoint import save_sae
from core.workspace.workspace import Workspace

D = 8
NOISE_DIMS = 2
BANDS = ((80.0, 130.0), (130.0, 180.0), (180.0, 230.0), (230.0, 280.0))
MODEL = "topk-L6-K2"


def pitch_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seg = segments_for(n, split=list(np.where(np.arange(n) % 20 < 10, "feature", "sae")))
    seg["speaker"] = [f"spk{i % 20}" for i in range(n)]
    seg["language"] = np.where(np.arange(n) % 2 == 0, "es", "en")
    seg["level"] = np.full(n, 3.0)
    seg["f0_median_hz"] = rng.uniform(BANDS[0][0], BANDS[-1][1], n)
    seg["speech_rate"] = rng.uniform(2.0, 6.0, n)
    return seg


def embeddings_for(pitch: np.ndarray, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    x = np.zeros((len(pitch), D))
    if kind == "bins":
        band = np.searchsorted([b[1] for b in BANDS[:-1]], pitch, side="right")
        x[np.arange(len(pitch)), band] = 1.0
    elif kind == "linear":
        x[:, 0] = (pitch - 70.0) / 210.0
    else:
        raise ValueError(kind)
    x[:, D - NOISE_DIMS :] = rng.uniform(0.02, 0.1, (len(pitch), NOISE_DIMS))
    return x.astype(np.float32)


def hand_set_sae(ws: Workspace, name: str = MODEL) -> None:
    """A TopK SAE (6 latents, K=2) whose latent i reads direction i (4 bands) and latents 4, 5 the
    noise directions; saved as ws's model `name`."""
    d_sae = 6
    sae = create_sae(SAEConfig(architecture="topk", d_in=D, d_sae=d_sae, k=2))
    w = torch.zeros(D, d_sae)
    for i in range(len(BANDS)):
        w[i, i] = 1.0
    for j in range(NOISE_DIMS):
        w[D - NOISE_DIMS + j, len(BANDS) + j] = 1.0
    with torch.no_grad():
        sae.W_enc.copy_(w)
        sae.W_dec.copy_(w.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    info = {
        "name": name,
        "workspace": ws.name,
        "fingerprint": ws.fingerprint,
        "embedder": "synthetic",
        "d_in": D,
    }
    save_sae(sae, ws.models_dir / name, metrics={"mse": 0.0}, info=info)


def pitch_workspace(root, kind: str = "bins", *, n: int = 600, seed: int = 0) -> Workspace:
    """A workspace at `root` of `kind` ("bins" or "linear", module docstring) with its SAE."""
    seg = pitch_rows(n, seed)
    ws = Workspace.create(
        root,
        seg,
        embeddings_for(seg["f0_median_hz"].to_numpy(), kind, seed),
        embedder="synthetic",
        sample_rate=16000,
    )
    hand_set_sae(ws)
    return ws
