"""ReLU SAE with the decoder-norm-weighted L1 penalty (Anthropic, April 2024 update).

Decoder rows are free (not renormalised): the penalty sum_j z_j * ||W_dec_j|| stops the model
from shrinking latents by growing decoder rows. SAELens calls this architecture 'standard'.
No K, no AuxK.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from core.sae.base import SAE, StackCodes


def weighted_l1(coef: Tensor | float, z: Tensor, W_dec: Tensor, scale: float) -> Tensor:
    """coef * mean over samples of sum_j z_j * ||W_dec_j|| / sqrt(scale); one model (z [N, d_sae],
    W_dec [d_sae, d_in]) or a stack (z [N, M, d_sae], W_dec [M, d_sae, d_in], coef [M]) alike."""
    return coef * (z * W_dec.norm(dim=-1)).sum(-1).mean(0) / math.sqrt(scale)


class ReLUSAE(SAE):
    architecture = "relu"
    saelens_architecture = "standard"
    unit_norm_decoder = False
    uses_k = False
    uses_auxk = False
    activation_bytes = (16.0, 10.0)  # measured: training step, inference pass

    def activate(self, pre: Tensor) -> Tensor:
        return pre.relu()

    def penalty(self, pre: Tensor, z: Tensor, scale: float) -> Tensor:
        return weighted_l1(self.cfg.l1_coefficient, z, self.W_dec, scale)

    @classmethod
    def stack_activate(cls, stack, pre: Tensor, *, training: bool, scale: float = 1.0) -> Tensor:
        return pre.relu()

    @classmethod
    def stack_penalty(cls, stack, codes: StackCodes, scale: float) -> Tensor:
        coef = torch.tensor([c.l1_coefficient for c in stack.cfgs], device=codes.pre.device)
        return weighted_l1(coef, codes.dense, stack.W_dec, scale)
