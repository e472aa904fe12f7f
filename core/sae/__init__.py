"""SAE architectures behind one registry (SAELens style: one file per architecture).

create_sae(SAEConfig(architecture="topk", d_in=192, d_sae=200, k=20)) -> TopKSAE
"""

from __future__ import annotations

from core.sae.base import SAE, LossOutput, SAEConfig, SAEOutput, geometric_median
from core.sae.batchtopk import BatchTopKSAE
from core.sae.relu import ReLUSAE
from core.sae.topk import TopKSAE

ARCHITECTURES: dict[str, type[SAE]] = {
    "topk": TopKSAE,
    "relu": ReLUSAE,
    "batchtopk": BatchTopKSAE,
}


def create_sae(cfg: SAEConfig) -> SAE:
    """A freshly initialised SAE of cfg.architecture."""
    return ARCHITECTURES[cfg.architecture](cfg)


__all__ = [
    "ARCHITECTURES",
    "SAE",
    "BatchTopKSAE",
    "LossOutput",
    "ReLUSAE",
    "SAEConfig",
    "SAEOutput",
    "TopKSAE",
    "create_sae",
    "geometric_median",
]
