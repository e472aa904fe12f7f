"""The resumable training state: one safetensors file holding every stack's tensors (parameters,
Adam moments, dead-latent counters, architecture tensors) and, as JSON in its metadata, where the
run stood (core.training.trainer.RunState), the model names of each stack and the caller's extras.

Written atomically (a crash leaves the previous state or the new one). A state that cannot be
read, belongs to another run, does not fit the stacks it names or holds a NaN or inf is ignored:
training restarts (the trainer never checkpoints a non-finite model; RunState.failed says which
models it stopped).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from core import atomic
from core.sae import SAEConfig
from core.sae.stack import SAEStack
from core.training.trainer import NamedStack, RunState

_META = "voxsae_state"


def save_state(
    path: Path, run_key: str, groups: list[NamedStack], state: RunState, extra: dict[str, Any]
) -> None:
    """Write the state of run `run_key`; `extra` (JSON) comes back from load_state."""
    tensors = {}
    for i, g in enumerate(groups):
        for k, v in g.stack.state_tensors().items():
            tensors[f"s{i}.{k}"] = v.cpu().contiguous()
    meta = {"run_key": run_key, **asdict(state), "stacks": [g.names for g in groups], **extra}
    atomic.write_bytes(path, st_save(tensors, metadata={_META: json.dumps(meta)}))


def load_state(
    path: Path, run_key: str, cfg_of: Callable[[str], SAEConfig], device: torch.device | str
) -> tuple[list[NamedStack], RunState, dict[str, Any]] | None:
    """(stacks, run state, extra) of the saved run `run_key`; `cfg_of(name)` gives each model's
    config. None when there is no usable state (none, unreadable, another run's, not fitting)."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = json.loads((fh.metadata() or {})[_META])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception:  # an unreadable state is discarded: training restarts from scratch
        return None
    if meta.get("run_key") != run_key:
        return None
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point()):
        return None  # a NaN model (a state from before training stopped diverging models): start afresh
    try:
        groups = []
        for i, names in enumerate(meta.pop("stacks")):
            st = SAEStack([cfg_of(n) for n in names]).to(device)
            prefix = f"s{i}."
            st.load_state_tensors(
                {k[len(prefix) :]: v.to(device) for k, v in tensors.items() if k.startswith(prefix)}
            )
            groups.append(NamedStack(st, list(names)))
        state = RunState(
            epoch=int(meta.pop("epoch")),
            step=int(meta.pop("step")),
            history={k: list(v) for k, v in meta.pop("history").items()},
            trained=list(meta.pop("trained")),
            failed=dict(meta.pop("failed", {})),  # states written before failures were kept have none
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        return None  # a state from other code or a damaged one: start afresh
    meta.pop("run_key")
    return groups, state, meta
