"""SAE architectures behind one registry (SAELens style: one file per architecture), the
training fast path that runs many models of one architecture at once (`stack`, with its kernels
in `sparse` and `cpu_topk`, and on CPU the TopK step compiled whole in `cpu_topk_step`), checkpoints in SAELens's format (`checkpoint`), the catalogue of a
workspace's models (`catalog`) and their cached activations (`activations`).

    create_sae(SAEConfig(architecture="topk", d_in=192, d_sae=200, k=20)) -> TopKSAE

Adding an architecture: one file here with one `SAE` subclass (see core.sae.base for what it
declares), its module in the import line below and one line in ARCHITECTURES, its tests. Nothing
else names architectures.

May import: core.constants, core.errors, core.atomic, core.workspace. Nothing above.
"""

from __future__ import annotations

from core.sae import batchtopk, jumprelu, relu, topk
from core.sae.base import SAE, LossOutput, SAEConfig, SAEOutput, geometric_median

ARCHITECTURES: dict[str, type[SAE]] = {
    "topk": topk.TopKSAE,
    "relu": relu.ReLUSAE,
    "batchtopk": batchtopk.BatchTopKSAE,
    "jumprelu": jumprelu.JumpReLUSAE,
}


def create_sae(cfg: SAEConfig) -> SAE:
    """A freshly initialised SAE of cfg.architecture."""
    return ARCHITECTURES[cfg.architecture](cfg)


__all__ = [
    "ARCHITECTURES",
    "SAE",
    "LossOutput",
    "SAEConfig",
    "SAEOutput",
    "create_sae",
    "geometric_median",
]
