"""ReLU SAE with the decoder-norm-weighted L1 penalty (Anthropic, April 2024 update).

Decoder rows are free (not renormalised): the penalty sum_j z_j * ||W_dec_j|| stops the model
from shrinking latents by growing decoder rows. SAELens calls this architecture 'standard'.
"""

from __future__ import annotations

import math

from torch import Tensor

from core.sae.base import SAE


class ReLUSAE(SAE):
    architecture = "relu"
    saelens_architecture = "standard"
    unit_norm_decoder = False

    def activate(self, pre: Tensor) -> Tensor:
        return pre.relu()

    def penalty(self, z: Tensor, scale: float) -> Tensor:
        norms = self.W_dec.norm(dim=-1)
        return self.cfg.l1_coefficient * (z * norms).sum(-1).mean() / math.sqrt(scale)
