"""TopK SAE (OpenAI, Gao et al. 2024): Linear -> TopK -> ReLU, unit-norm decoder, AuxK.

Its stacked encoder is the training fast path: the selection of every model's K latents runs
without autograd (`SAEStack._topk_select`), the K values are gathered by `GatherPre` (a sparse
encoder backward) and decoded by embedding_bag - no dense [N, d_sae] tensor with a gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from core.sae.base import SAE, StackCodes
from core.sae.sparse import GatherPre


def topk_dense(pre: Tensor, k: int) -> Tensor:
    """Keep the k largest pre-activations of each row, ReLU them, zero the rest."""
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, idx, vals.relu())


class TopKSAE(SAE):
    architecture = "topk"
    saelens_architecture = "topk"
    unit_norm_decoder = True
    compiled_cpu_step = True
    activation_bytes = (10.0, 10.0)  # measured: training step, inference pass

    def activate(self, pre: Tensor) -> Tensor:
        return topk_dense(pre, int(self.cfg.k))

    @classmethod
    def stack_codes(cls, stack, x: Tensor, *, training: bool, scale: float = 1.0) -> StackCodes:
        # training and inference alike: the K largest ReLU'd, as (flat indices, values)
        n, M, d_sae = x.shape[0], stack.M, stack.d_sae
        W = stack.W_enc.reshape(stack.d_in, M * d_sae)
        bias = (stack.b_enc - torch.einsum("md,dms->ms", stack.b_dec, stack.W_enc)).reshape(-1)
        with torch.no_grad():
            pre = torch.addmm(bias, x, W)  # [N, M*d_sae]; gradients flow through GatherPre only
        idx = stack._topk_select(pre.view(n, M, d_sae))

        def gather(flat_idx: Tensor) -> Tensor:
            return GatherPre.apply(x, W, bias, flat_idx, pre)

        return StackCodes(pre.view(n, M, d_sae), gather, idx=idx, vals=gather(idx).relu())

    def saelens_cfg(self) -> dict[str, Any]:
        return {"k": int(self.cfg.k), "rescale_acts_by_decoder_norm": False}
