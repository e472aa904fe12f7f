"""TopK SAE (OpenAI, Gao et al. 2024): Linear -> TopK -> ReLU, unit-norm decoder, AuxK."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from core.sae.base import SAE


def topk_dense(pre: Tensor, k: int) -> Tensor:
    """Keep the k largest pre-activations of each row, ReLU them, zero the rest."""
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, idx, vals.relu())


class TopKSAE(SAE):
    architecture = "topk"
    saelens_architecture = "topk"
    unit_norm_decoder = True

    def activate(self, pre: Tensor) -> Tensor:
        return topk_dense(pre, int(self.cfg.k))

    def saelens_cfg(self) -> dict[str, Any]:
        return {"k": int(self.cfg.k), "rescale_acts_by_decoder_norm": False}
