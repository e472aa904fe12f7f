"""How much memory a grid run needs, estimated from the model configs before anything is
allocated, so that `train --latents 10000000` is refused with the figure instead of dying in
the allocator (or in the kernel's OOM killer) halfway through building the stacks.

    need = grid_estimate(cfgs, names, batch=1024, n_train=..., n_val=...)
    check_fits(need, device)   # InputError naming the GB needed, the biggest model and what is free

What is counted (float32, as core.sae.stack holds it):

* every model, all the run long: its parameters (core.sae.checkpoint.expected_shapes) and the
  two Adam moments, and its float64 dead-latent counters;
* on top, the largest of what one stack needs at a time (stacks are built, stepped, validated and
  saved one after the other): its gradients plus what the architecture says a (sample, latent)
  costs in a training step (`SAE.activation_bytes`: pre-activations, latents, gates, their
  gradients) and the [batch, models, d_in] reconstructions; the validation pass
  (core.training.trainer.stack_metrics, 8,192 rows at a time, at the inference cost); or its
  models as single SAEs when they are built and saved, with one serialised weights file;
* the training and validation rows themselves.

On CPU the figure lies 0-10 % above the peak of live memory measured for every architecture
(100,000-400,000 latents; tests/training/test_training_guards.py measures one); glibc's malloc
may keep some freed memory on top of that.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch

from core.errors import InputError
from core.sae import ARCHITECTURES, SAEConfig
from core.sae.checkpoint import expected_shapes

FLOAT = 4
STATE_COPIES = 3
"""Tensors per parameter every model keeps all the run long: the parameter and Adam's two moments."""
RECON_COPIES = 4
"""[batch, models, d_in] float tensors in a step: reconstruction, residual, their gradients."""
VAL_CHUNK = 8192
"""Rows per validation chunk (core.training.trainer.stack_metrics)."""


class Estimate(NamedTuple):
    total: int
    """Bytes the whole run needs at its peak."""
    biggest: str
    """Name of the model needing the most."""
    biggest_bytes: int
    """Bytes of that model alone (its parameters, optimiser state and share of a step)."""


def grid_estimate(
    cfgs: list[SAEConfig], names: list[str], *, batch: int, n_train: int, n_val: int
) -> Estimate:
    """Peak bytes of training the models `cfgs` (named `names`) together, one stack per
    (architecture, latent dim), on batches of `batch` rows of n_train + n_val rows."""
    d_in = cfgs[0].d_in
    persistent = 0
    peak_transient = 0
    per_model: dict[str, int] = {}
    stacks: dict[tuple[str, int], list[tuple[str, SAEConfig]]] = {}
    for name, cfg in zip(names, cfgs, strict=True):
        stacks.setdefault((cfg.architecture, cfg.d_sae), []).append((name, cfg))
    for (arch, d_sae), models in stacks.items():
        m = len(models)
        params = [sum(math.prod(shape) for shape in expected_shapes(cfg).values()) for _, cfg in models]
        stack_params = sum(params) * FLOAT
        train_bytes, eval_bytes = ARCHITECTURES[arch].activation_bytes
        recon = d_in * FLOAT * RECON_COPIES
        transient = int(
            max(
                stack_params + batch * m * (d_sae * train_bytes + recon),  # a step: gradients, activations
                min(VAL_CHUNK, n_val) * m * (d_sae * eval_bytes + recon),  # validation
                stack_params + max(params) * FLOAT,  # built / saved as single SAEs, one file serialised
            )
        )
        peak_transient = max(peak_transient, transient)
        for (name, _), p in zip(models, params, strict=True):
            own = p * FLOAT * STATE_COPIES + d_sae * 8
            persistent += own
            per_model[name] = own + transient // m
    data = (n_train + n_val) * d_in * FLOAT * 2  # the workspace's rows and the run's tensors of them
    biggest = max(per_model, key=per_model.__getitem__)
    return Estimate(persistent + peak_transient + data, biggest, per_model[biggest])


def available_bytes(device: torch.device) -> int:
    """Memory free for the run on `device`: free GPU memory, or the RAM available to this process."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil is a dependency; os.sysconf keeps a bare install working
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_fits(need: Estimate, device: torch.device) -> None:
    """InputError when the run would need more memory than `device` has free."""
    free = available_bytes(device)
    if need.total > free:
        raise InputError(
            f"the grid needs about {_gb(need.total)} GB of memory to train (parameters, gradients, "
            f"Adam state and one batch's activations; the biggest model, {need.biggest}, "
            f"{_gb(need.biggest_bytes)} GB of it) but {_gb(free)} GB is available on {device}: "
            "train fewer or smaller models (--latents, --k, --arch) or use a smaller --batch-size"
        )


def _gb(n_bytes: int) -> str:
    gb = n_bytes / 1e9
    return f"{gb:.1f}" if gb < 1e5 else f"{gb:.3g}"
