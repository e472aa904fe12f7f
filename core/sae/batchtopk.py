"""BatchTopK SAE (Bussmann et al. 2024): during training the K x batch largest ReLU'd
pre-activations of the whole batch stay active; at inference a single threshold (an EMA of the
smallest selected activation) decides. SAELens loads it as a 'jumprelu' SAE with that threshold.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from core.sae.base import SAE


def batch_topk_dense(pre: Tensor, k: int) -> Tensor:
    """Keep the k * batch largest ReLU'd entries of the whole batch."""
    acts = pre.relu()
    flat = acts.reshape(-1)
    n = min(k * pre.shape[0], flat.numel())
    vals, idx = flat.topk(n, sorted=False)
    return torch.zeros_like(flat).scatter(0, idx, vals).reshape(pre.shape)


class BatchTopKSAE(SAE):
    architecture = "batchtopk"
    saelens_architecture = "jumprelu"
    unit_norm_decoder = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(()))

    def activate(self, pre: Tensor) -> Tensor:
        return pre.relu() * (pre > self.threshold).to(pre.dtype)

    def train_activate(self, pre: Tensor) -> Tensor:
        return batch_topk_dense(pre, int(self.cfg.k))

    def extra_state_tensors(self) -> dict[str, Tensor]:
        return {"threshold": self.threshold.detach().expand(self.cfg.d_sae).clone()}

    def load_extra_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.threshold.copy_(tensors["threshold"].reshape(-1)[0])

    def saelens_cfg(self) -> dict[str, Any]:
        # SAELens's jumprelu config has no k and drops unknown keys; readers of cfg.json still see K
        return {"k": int(self.cfg.k)}
