"""BatchTopK SAE (Bussmann et al. 2024): during training the K x batch largest ReLU'd
pre-activations of the whole batch stay active; at inference a single threshold (an EMA of the
smallest selected activation) decides. SAELens loads it as a 'jumprelu' SAE with that threshold.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from core.sae.base import SAE, SAEConfig, threshold_gate


def batch_topk(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Keep the k * batch largest ReLU'd entries of the whole batch -> (latents, the kept values)."""
    flat = pre.relu().reshape(-1)
    n = min(k * pre.shape[0], flat.numel())
    vals, idx = flat.topk(n, sorted=False)
    return torch.zeros_like(flat).scatter(0, idx, vals).reshape(pre.shape), vals


class BatchTopKSAE(SAE):
    architecture = "batchtopk"
    saelens_architecture = "jumprelu"
    unit_norm_decoder = True
    activation_bytes = (26.0, 18.0)  # measured: training step, inference pass

    def register_extra(self) -> None:
        self.register_buffer("threshold", torch.zeros(()))

    def activate(self, pre: Tensor) -> Tensor:
        return threshold_gate(pre, self.threshold)

    def train_activate(self, pre: Tensor, scale: float = 1.0) -> Tensor:
        return batch_topk(pre, int(self.cfg.k))[0]

    @classmethod
    def stack_tensors(cls, cfgs: list[SAEConfig]) -> dict[str, Tensor]:
        return {"threshold": torch.zeros(len(cfgs))}

    @classmethod
    def stack_activate(cls, stack, pre: Tensor, *, training: bool, scale: float = 1.0) -> Tensor:
        if not training:
            return threshold_gate(pre, stack.threshold[None, :, None])
        outs = []
        for m in range(stack.M):
            z, vals = batch_topk(pre[:, m, :], int(stack.ks[m]))
            outs.append(z)
            with torch.no_grad():
                pos = vals[vals > 0]
                if pos.numel():
                    # EMA of the smallest selected activation, started at the first batch's value
                    lr = 1.0 if float(stack.adam_step) == 0 else stack.cfgs[m].threshold_momentum
                    stack.threshold[m] = (1 - lr) * stack.threshold[m] + lr * pos.min()
        return torch.stack(outs, dim=1)

    @classmethod
    def extra_tensor_shapes(cls, cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
        return {"threshold": (cfg.d_sae,)}

    def extra_state_tensors(self) -> dict[str, Tensor]:
        return {"threshold": self.threshold.detach().expand(self.cfg.d_sae).clone()}

    @torch.no_grad()
    def load_extra_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.threshold.copy_(tensors["threshold"].reshape(-1)[0])

    def saelens_cfg(self) -> dict[str, Any]:
        # SAELens's jumprelu config has no k and drops unknown keys; readers of cfg.json still see K
        return {"k": int(self.cfg.k)}
