"""SAE architectures behind one registry (SAELens style: one file per architecture), the
training fast path that runs many models of one architecture at once (`stack`, with its kernels
in `sparse` and `cpu_topk`, and on CPU the TopK step compiled whole in `cpu_topk_step`), checkpoints in SAELens's format (`checkpoint`), the catalogue of a
workspace's models (`catalog`) and their cached activations (`activations`).

    create_sae(SAEConfig(architecture="topk", d_in=192, d_sae=200, k=20)) -> TopKSAE

Adding an architecture: one file here with one `SAE` subclass (see core.sae.base for what it
declares), one line in _ARCHITECTURE_MODULES below (ARCHITECTURES is made from it), its tests.
Nothing else names architectures.

May import: core.constants, core.errors, core.atomic, core.filehash, core.workspace. Nothing above.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names below, for readers and type checkers; at run time __getattr__
    from core.sae.base import SAE, LossOutput, SAEConfig, SAEOutput, geometric_median

# Why lazy: the architectures import torch (1.5-1.9 s), and `core.sae.catalog`, which the
# dashboard's first page needs, is a submodule here: importing it runs this file first. So this
# file names what it exports and imports them on first use (PEP 562); the catalogue, the
# activations cache's readers and the page modules never pay for torch they do not use.
_FROM_BASE = ("SAE", "LossOutput", "SAEConfig", "SAEOutput", "geometric_median")
_ARCHITECTURE_MODULES = {  # the registry: architecture name -> (module, class)
    "topk": ("core.sae.topk", "TopKSAE"),
    "relu": ("core.sae.relu", "ReLUSAE"),
    "batchtopk": ("core.sae.batchtopk", "BatchTopKSAE"),
    "jumprelu": ("core.sae.jumprelu", "JumpReLUSAE"),
}


def _architectures() -> dict[str, type[SAE]]:
    return {
        name: getattr(importlib.import_module(module), cls)
        for name, (module, cls) in _ARCHITECTURE_MODULES.items()
    }


def create_sae(cfg: SAEConfig) -> SAE:
    """A freshly initialised SAE of cfg.architecture."""
    return __getattr__("ARCHITECTURES")[cfg.architecture](cfg)


def __getattr__(name: str):
    if name in globals():  # made already (a call from inside this module)
        return globals()[name]
    if name in _FROM_BASE:
        value = getattr(importlib.import_module("core.sae.base"), name)
    elif name == "ARCHITECTURES":
        value = _architectures()
    else:
        raise AttributeError(f"module 'core.sae' has no attribute {name!r}")
    # once: later lookups are plain attribute reads; setdefault, so threads that made it at the same
    # moment all return the first one made (one registry dict, not one per thread)
    return globals().setdefault(name, value)


__all__ = [
    "ARCHITECTURES",
    "SAE",
    "LossOutput",
    "SAEConfig",
    "SAEOutput",
    "create_sae",
    "geometric_median",
]
