"""The epoch loop: stacks of SAEs fed batches, validated after each epoch and early-stopped model
by model. It knows tensors only - where batches come from and where finished models and
checkpoints go is the caller's (core.training.grid wires a workspace in):

    state = train(groups, batches, steps_per_epoch, x_val, scale, cfg, RunState(),
                  on_finished=save_model, on_checkpoint=save_state)

* `groups`: the models as stacks (core.sae.stack), each with its models' names;
* `batches(epoch, first_step)`: that epoch's batches from `first_step` on (`shuffled_batches`
  makes them from one tensor in an order that is a pure function of (seed, epoch), so a run
  resumed from a checkpoint follows the uninterrupted one);
* after each epoch every model is validated on x_val (`stack_metrics`); a model whose validation
  NMSE is stable (relative gain < tol for `patience` epochs; never with `cfg.epochs`) or that
  reached the epoch cap leaves its stack and goes to `on_finished(name, sae, metrics)`;
* `on_checkpoint(groups, state)` is called every `checkpoint_every_s` seconds within an epoch and
  after each epoch while models remain: with the stacks' tensors, the RunState is all a resumed
  run needs;
* a model whose training loss turns NaN or inf (checked after every step), whose tensors do
  (checked before every checkpoint and validation) or whose validation NMSE does leaves its stack
  at once and is recorded in `RunState.failed` with the epoch and step: the other models train
  on, and neither a checkpoint nor `on_finished` ever sees a non-finite model.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from core.errors import VoxSAEError
from core.sae import SAE
from core.sae.stack import SAEStack, StackLoss
from core.training.config import TrainConfig


class TrainingInterrupted(VoxSAEError):
    """Raised by the stop_after_steps test hook after the state was checkpointed."""


class NamedStack(NamedTuple):
    stack: SAEStack
    names: list[str]
    """Model names, in the order of stack.cfgs."""


@dataclass
class RunState:
    """Where a run stands: with the stacks' tensors, everything a resumed run needs."""

    epoch: int = 0
    """Epochs completed."""
    step: int = 0
    """Steps done within the current epoch."""
    history: dict[str, list[float]] = field(default_factory=dict)
    """Validation NMSE of each model after each epoch so far."""
    trained: list[str] = field(default_factory=list)
    """Models finished (handed to on_finished), in order."""
    failed: dict[str, str] = field(default_factory=dict)
    """Models stopped because their loss or weights turned non-finite -> what happened and when.
    They left their stacks at once, so no checkpoint and no on_finished ever holds them."""


EpochBatches = Callable[[int, int], Iterator[Tensor]]
"""(epoch, first_step) -> the batches of that epoch from first_step on."""


def derived_seed(seed: int, name: str) -> int:
    """A seed for one purpose (a model's initialisation, an epoch's order) derived from the run's."""
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def shuffled_batches(x: Tensor, batch_size: int, seed: int) -> EpochBatches:
    """Batches of rows of x, reshuffled each epoch from (seed, epoch) alone."""
    n = x.shape[0]

    def batches(epoch: int, first_step: int) -> Iterator[Tensor]:
        gen = torch.Generator().manual_seed(derived_seed(seed, f"epoch{epoch}"))
        perm = torch.randperm(n, generator=gen).to(x.device)
        for step in range(first_step, steps_per_epoch(n, batch_size)):
            yield x[perm[step * batch_size : (step + 1) * batch_size]]

    return batches


@torch.no_grad()
def stack_metrics(stack: SAEStack, x_val: Tensor, chunk: int = 8192) -> list[dict]:
    """Validation metrics of every model in the stack: nmse, explained_variance, l0,
    dead_fraction (never active on x_val), density (per latent, fraction of rows active)."""
    M = stack.M
    sse = torch.zeros(M, dtype=torch.float64, device=x_val.device)
    counts = torch.zeros(M, stack.d_sae, dtype=torch.float64, device=x_val.device)
    x2 = (x_val.double() ** 2).sum()
    centered = ((x_val.double() - x_val.double().mean(0)) ** 2).sum()
    for i in range(0, x_val.shape[0], chunk):
        xb = x_val[i : i + chunk]
        ev = stack.evaluate(xb)
        sse += (ev.recon - xb[:, None, :]).double().pow(2).sum((0, 2))
        counts += ev.active.sum(0, dtype=torch.float64)  # no float64 copy of the whole mask
    n = x_val.shape[0]
    out = []
    for m in range(M):
        density = (counts[m] / n).cpu().numpy()
        out.append(
            {
                "nmse": float(sse[m] / x2),
                "explained_variance": float(1 - sse[m] / centered) if centered > 0 else 0.0,
                "l0": float(counts[m].sum() / n),
                "dead_fraction": float((counts[m] == 0).double().mean()),
                "density": [round(float(d), 6) for d in density],
                "n_val": int(n),
            }
        )
    return out


def is_stable(history: list[float], tol: float, patience: int) -> bool:
    """The last `patience` values each improved on the best before them by less than tol (relative)."""
    if len(history) < patience + 1:
        return False
    for i in range(len(history) - patience, len(history)):
        best_before = min(history[:i])
        if best_before - history[i] >= tol * max(best_before, 1e-12):
            return False
    return True


def train(
    groups: list[NamedStack],
    batches: EpochBatches,
    n_steps: int,
    x_val: Tensor,
    scale: float,
    cfg: TrainConfig,
    state: RunState,
    *,
    on_finished: Callable[[str, SAE, dict], None],
    on_checkpoint: Callable[[list[NamedStack], RunState], None],
    checkpoint_every_s: float = 60.0,
    stop_after_steps: int | None = None,
    progress: bool = True,
) -> RunState:
    """Train every model of `groups` from `state` on until each has finished; returns the final state.

    `n_steps`: batches per epoch; `scale`: mean ||x - mean||^2 of the training data (the MSE's
    normaliser); `cfg`: lr, epochs / max_epochs, tol, patience. `stop_after_steps` (tests):
    checkpoint and raise TrainingInterrupted after that many steps of this call, as if the
    process had been killed right after a checkpoint.
    """
    from tqdm.auto import tqdm

    max_epochs = cfg.epochs if cfg.epochs else cfg.max_epochs
    steps_run = 0
    last_save = time.monotonic()
    while groups and state.epoch < max_epochs:
        bar = tqdm(
            total=n_steps,
            initial=state.step,
            desc=f"train {sum(g.stack.M for g in groups)} SAEs, epoch {state.epoch + 1}/{max_epochs}",
            disable=not progress,
            leave=False,
        )
        for xb in batches(state.epoch, state.step):
            outs = [g.stack.train_step(xb, scale, cfg.lr) for g in groups]
            state.step += 1
            steps_run += 1
            bar.update(1)
            groups = _drop_nonfinite_loss(groups, outs, state)
            if not groups:
                break
            if state.step % 10 == 0 or state.step == n_steps:
                mse = torch.cat([o.mse for o in outs])
                aux = torch.cat([o.aux for o in outs])
                bar.set_postfix(mse=f"{float(mse.nanmean()):.4f}", aux=f"{float(aux.nanmean()):.4f}")
            if stop_after_steps is not None and steps_run >= stop_after_steps:
                groups = _drop_nonfinite_weights(groups, state)
                on_checkpoint(groups, state)
                bar.close()
                raise TrainingInterrupted(f"stopped after {steps_run} steps (test hook)")
            if time.monotonic() - last_save > checkpoint_every_s and state.step < n_steps:
                groups = _drop_nonfinite_weights(groups, state)
                on_checkpoint(groups, state)
                last_save = time.monotonic()
        bar.close()
        groups = _drop_nonfinite_weights(groups, state)
        if not groups:
            break
        state.epoch += 1
        state.step = 0
        groups = _validate(groups, x_val, cfg, state, max_epochs, on_finished)
        if progress:
            last = [h[-1] for h in state.history.values() if len(h) == state.epoch]
            nm = f", val nmse {min(last):.4f}..{max(last):.4f}" if last else ""
            remaining = sum(g.stack.M for g in groups)
            print(
                f"epoch {state.epoch}: {len(state.trained)} model(s) finished, {remaining} training{nm}",
                flush=True,
            )
        if groups:
            on_checkpoint(groups, state)
            last_save = time.monotonic()
    return state


def _keep(groups: list[NamedStack], keeps: list[list[int]]) -> list[NamedStack]:
    """The stacks holding only the models at positions keeps[i] of stack i (none: stack gone)."""
    out = []
    for g, keep in zip(groups, keeps, strict=True):
        if len(keep) == g.stack.M:
            out.append(g)
        elif keep:
            out.append(NamedStack(g.stack.select(keep), [g.names[i] for i in keep]))
    return out


def _drop_nonfinite_loss(
    groups: list[NamedStack], outs: list[StackLoss], state: RunState
) -> list[NamedStack]:
    """After a step: stop every model whose loss is NaN or inf (its next step would be NaN)."""
    losses = [o.mse + o.aux + o.l1 for o in outs]
    if bool(torch.isfinite(torch.cat(losses)).all()):  # the step's one device sync
        return groups
    keeps = []
    for g, loss in zip(groups, losses, strict=True):
        finite = torch.isfinite(loss).tolist()
        for m in (m for m, ok in enumerate(finite) if not ok):
            state.failed[g.names[m]] = (
                f"training loss became non-finite ({float(loss[m])}) at epoch {state.epoch + 1}, step {state.step}"
            )
        keeps.append([m for m, ok in enumerate(finite) if ok])
    return _keep(groups, keeps)


def _drop_nonfinite_weights(groups: list[NamedStack], state: RunState) -> list[NamedStack]:
    """Before a checkpoint or a validation: stop every model with a NaN or inf tensor."""
    keeps = []
    for g in groups:
        bad = g.stack.nonfinite_tensors()
        for m in (m for m, names in enumerate(bad) if names):
            state.failed[g.names[m]] = (
                f"weights became non-finite ({', '.join(bad[m])}) by epoch {state.epoch + 1}, step {state.step}"
            )
        keeps.append([m for m, names in enumerate(bad) if not names])
    return _keep(groups, keeps)


def _validate(
    groups: list[NamedStack],
    x_val: Tensor,
    cfg: TrainConfig,
    state: RunState,
    max_epochs: int,
    on_finished: Callable[[str, SAE, dict], None],
) -> list[NamedStack]:
    """Epoch end: validate every model, hand over the finished ones; returns the stacks of the rest."""
    keeps = []
    for g in groups:
        keep = []
        saes = None
        for m, (name, met) in enumerate(zip(g.names, stack_metrics(g.stack, x_val), strict=True)):
            if not math.isfinite(met["nmse"]):  # finite weights whose reconstruction overflows
                state.failed[name] = (
                    f"validation NMSE is non-finite ({met['nmse']}) after epoch {state.epoch}"
                )
                continue
            history = state.history.setdefault(name, [])
            history.append(met["nmse"])
            done = state.epoch >= max_epochs or (
                cfg.epochs is None and is_stable(history, cfg.tol, cfg.patience)
            )
            if not done:
                keep.append(m)
                continue
            saes = saes or g.stack.to_saes()
            on_finished(name, saes[m], {**met, "epochs": state.epoch, "val_nmse_history": history})
            state.trained.append(name)
        keeps.append(keep)
    return _keep(groups, keeps)
