"""Command `train`: the grid of SAEs (architecture x latent dim x K), all in one pass over the data.

    python -m core train --workspace NAME [--arch topk] [--latents 100,200,...] [--k 5,10,...]
                         [--epochs N] [--device cuda] [--batch-size B] [--lr LR] [--seed S]

* Trains on the workspace rows whose `split` is 'sae' when that column exists (else all rows);
  `val_fraction` of them (seeded) is held out for early stopping and metrics.
* Models of one (architecture, latent dim) form one stack (core.sae.stack): one encoder matmul for
  all their K values, embedding_bag decoding. Every batch is read once and fed to every stack.
* Early stop per model when validation NMSE stops improving (relative gain < tol for `patience`
  epochs); `--epochs N` trains exactly N epochs instead. A stopped model leaves its stack and is
  saved (models/NAME/cfg.json + sae_weights.safetensors + metrics.json).
* Resumable: the whole training state (parameters, Adam moments, dead-latent counters, data
  position) is one safetensors file under cache/training/, written atomically every
  `checkpoint_every_s` seconds and at each epoch end. Running the same command after a crash
  (kill -9) continues from it; the data order is a pure function of (seed, epoch), so a resumed run
  follows the uninterrupted one.
* Cached: a model whose folder records the same workspace fingerprint and training key is not
  retrained; a rerun with nothing changed trains nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from core import atomic
from core.constants import DEFAULT_WORKSPACE, SPLIT_SAE, TRAINING_DIR, TRAINING_STATE
from core.errors import InputError, VoxSAEError
from core.sae import ARCHITECTURES, SAE, SAEConfig, create_sae, geometric_median
from core.sae.catalog import ModelInfo, list_models, open_model, read_cfg, read_metrics  # noqa: F401 - re-exported
from core.sae.checkpoint import save_sae
from core.sae.stack import SAEStack
from core.workspace.workspace import Workspace

PAPER_LATENTS = (100, 200, 300, 400, 500, 600)
PAPER_KS = (5, 10, 15, 20, 25, 30, 35)


@dataclass
class TrainConfig:
    """One grid training run. Everything except `device` enters the models' cache key."""

    archs: tuple[str, ...] = ("topk",)
    """Architectures to train ('topk', 'relu', 'batchtopk')."""
    latents: tuple[int, ...] = PAPER_LATENTS
    """Latent dims of the grid (the paper: 100-600 step 100)."""
    ks: tuple[int, ...] = PAPER_KS
    """K values of the grid (the paper: 5-35 step 5); relu ignores them."""
    epochs: int | None = None
    """Exactly this many epochs, no early stop (None: early stop, at most max_epochs)."""
    max_epochs: int = 100
    """Cap on epochs when early stopping: a safety net, not the usual stop (on the embedded
    default the 42 models stop between epochs 28 and 56 when their validation NMSE is stable)."""
    tol: float = 2e-3
    """Early stop when validation NMSE improves by less than this fraction of its best ..."""
    patience: int = 2
    """... for this many consecutive epochs."""
    batch_size: int = 1024
    """Samples per step (shrunk to n_train // 32, at least 32, on small corpora)."""
    lr: float = 1e-3
    """Adam learning rate."""
    seed: int = 0
    """Seeds the train/validation split, the data order and every model's initialisation."""
    val_fraction: float = 0.1
    """Fraction of the training rows held out for validation."""
    l1_coefficient: float = 0.3
    """L1 weight for relu models."""
    auxk_coefficient: float = 1.0 / 32.0
    """AuxK weight for topk / batchtopk (0 turns it off)."""
    device: str | None = None
    """'cpu', 'cuda' or None (CUDA when present)."""

    def key_fields(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("archs", "latents", "ks", "device"):
            d.pop(k)
        return d


class TrainResult(NamedTuple):
    trained: list[str]
    cached: list[str]
    state_path: Path


class TrainingInterrupted(VoxSAEError):
    """Raised by the stop_after_steps test hook after the state was checkpointed."""


@dataclass
class _Spec:
    name: str
    cfg: SAEConfig
    key: str
    history: list[float] = field(default_factory=list)


# -- names and listing ------------------------------------------------------------------------
def model_name(arch: str, d_sae: int, k: int | None = None) -> str:
    """'topk-L200-K20'; 'relu-L200' (relu has no K)."""
    return f"{arch}-L{int(d_sae)}" if arch == "relu" or k is None else f"{arch}-L{int(d_sae)}-K{int(k)}"


# -- data ---------------------------------------------------------------------------------------
def training_rows(ws: Workspace) -> np.ndarray:
    """Row indices of the SAE training data: split == 'sae' when the column exists, else all."""
    seg = ws.segments
    if len(seg) == 0:
        raise InputError(f"workspace {ws.name} is empty: nothing to train on")
    if "split" in seg.columns:
        rows = np.flatnonzero(seg["split"].astype(str).to_numpy() == SPLIT_SAE)
        if rows.size == 0:
            raise InputError(
                f"workspace {ws.name}: no segments with split '{SPLIT_SAE}' to train on "
                f"(splits present: {', '.join(sorted(seg['split'].astype(str).unique()))})"
            )
        return rows
    return np.arange(len(seg))


def load_training_data(ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """(rows, float32 [n, dim]) of the training rows; NaN/inf rows raise InputError naming the segment."""
    rows = training_rows(ws)
    x = np.asarray(ws.embeddings[rows], dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = rows[np.flatnonzero(~finite)]
        sid = ws.segments["segment_id"].iloc[int(bad[0])]
        raise InputError(
            f"workspace {ws.name}: {bad.size} embedding row(s) contain NaN or inf "
            f"(first: row {int(bad[0])}, segment {sid})"
        )
    return rows, x


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 10:
        raise InputError(f"SAE training needs at least 10 rows, got {n}")
    perm = np.random.default_rng([seed, 7]).permutation(n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# -- keys -------------------------------------------------------------------------------------------
def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _model_seed(seed: int, name: str) -> int:
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16)


def grid_specs(ws: Workspace, cfg: TrainConfig) -> list[_Spec]:
    specs = []
    for arch in cfg.archs:
        if arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {arch!r} (known: {', '.join(sorted(ARCHITECTURES))})")
        for d_sae in cfg.latents:
            for k in [None] if arch == "relu" else cfg.ks:
                if k is not None and k >= d_sae:
                    raise InputError(f"K={k} is at or above the latent dim {d_sae}: TopK needs K < latents")
                name = model_name(arch, d_sae, k)
                sae_cfg = SAEConfig(
                    architecture=arch,
                    d_in=ws.dim,
                    d_sae=d_sae,
                    k=k,
                    l1_coefficient=cfg.l1_coefficient,
                    auxk_coefficient=cfg.auxk_coefficient,
                    seed=_model_seed(cfg.seed, name),
                )
                key = _hash(
                    {"fingerprint": ws.fingerprint, "sae": sae_cfg.to_dict(), "train": cfg.key_fields()}
                )
                specs.append(_Spec(name, sae_cfg, key))
    if not specs:
        raise InputError("the grid is empty (no architectures, latents or K values)")
    return specs


def _is_cached(ws: Workspace, spec: _Spec) -> bool:
    try:
        ours = read_cfg(ws.models_dir / spec.name)["voxsae"]
    except VoxSAEError:
        return False
    return ours.get("train_key") == spec.key and ours.get("fingerprint") == ws.fingerprint


# -- metrics ------------------------------------------------------------------------------------------
@torch.no_grad()
def stack_metrics(stack: SAEStack, x_val: torch.Tensor, chunk: int = 8192) -> list[dict]:
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
        counts += ev.active.double().sum(0)
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


def _stable(history: list[float], tol: float, patience: int) -> bool:
    if len(history) < patience + 1:
        return False
    for i in range(len(history) - patience, len(history)):
        best_before = min(history[:i])
        if best_before - history[i] >= tol * max(best_before, 1e-12):
            return False
    return True


# -- state ----------------------------------------------------------------------------------------------
def _save_state(path: Path, stacks: list[SAEStack], meta: dict) -> None:
    tensors = {}
    for i, st in enumerate(stacks):
        for k, v in st.state_tensors().items():
            tensors[f"s{i}.{k}"] = v.cpu().contiguous()
    atomic.write_bytes(path, st_save(tensors, metadata={"voxsae_state": json.dumps(meta)}))


def _load_state(path: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = json.loads((fh.metadata() or {})["voxsae_state"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        return meta, tensors
    except Exception:  # an unreadable state is discarded: training restarts from scratch
        return None


# -- training ---------------------------------------------------------------------------------------------
def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}") from None


def train_grid(
    ws: Workspace,
    cfg: TrainConfig | None = None,
    *,
    progress: bool = True,
    checkpoint_every_s: float = 60.0,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train every model of the grid that is not already up to date; returns what was trained.

    `stop_after_steps` (tests): checkpoint and raise TrainingInterrupted after that many steps,
    as if the process had been killed right after a checkpoint.
    """
    from tqdm.auto import tqdm

    cfg = cfg or TrainConfig()
    device = resolve_device(cfg.device)
    specs = grid_specs(ws, cfg)
    by_name = {s.name: s for s in specs}
    run_key = _hash({"models": sorted(s.key for s in specs)})
    state_path = ws.cache_dir / TRAINING_DIR / f"{run_key}-{TRAINING_STATE}"

    rows, data = load_training_data(ws)
    tr_idx, va_idx = split_train_val(len(rows), cfg.val_fraction, cfg.seed)
    x_train = torch.from_numpy(data[tr_idx]).to(device)
    x_val = torch.from_numpy(data[va_idx]).to(device)
    n_train = x_train.shape[0]
    batch = max(1, min(cfg.batch_size, max(32, n_train // 32)))
    steps_per_epoch = math.ceil(n_train / batch)
    scale = float(x_train.var(0, unbiased=False).double().sum())  # mean ||x - mean||^2
    if scale <= 0:
        raise InputError(f"workspace {ws.name}: all training embeddings are identical")
    dead_after = int(min(100_000, max(1_000, n_train // 2)))
    max_epochs = cfg.epochs if cfg.epochs else cfg.max_epochs

    loaded = _load_state(state_path) if state_path.exists() else None
    stacks = _stacks_from_state(loaded, run_key, by_name, dead_after, device)
    if stacks is not None:
        meta = loaded[0]
        for name, hist in meta["history"].items():
            by_name[name].history = list(hist)
        epoch, step = int(meta["epoch"]), int(meta["step"])
        trained = list(meta["trained"])
        cached = list(meta["cached"])
        if progress:
            print(f"resuming training from epoch {epoch + 1}, step {step}", flush=True)
    else:
        todo = [s for s in specs if not _is_cached(ws, s)]
        cached = [s.name for s in specs if s not in todo]
        trained = []
        if not todo:
            if progress:
                print(f"all {len(specs)} model(s) up to date in {ws.models_dir}", flush=True)
            return TrainResult([], cached, state_path)
        sample = x_train[torch.randperm(n_train, generator=torch.Generator().manual_seed(cfg.seed))[:20_000]]
        b_dec0 = geometric_median(sample.cpu())
        groups: dict[tuple[str, int], list[SAE]] = {}
        for s in todo:
            sae = create_sae(_with_dead(s.cfg, dead_after))
            sae.init_weights(b_dec0)
            groups.setdefault((s.cfg.architecture, s.cfg.d_sae), []).append(sae)
        stacks = [SAEStack.from_saes([m.to(device) for m in g]) for g in groups.values()]
        epoch, step = 0, 0

    def meta_now() -> dict:
        return {
            "run_key": run_key,
            "epoch": epoch,
            "step": step,
            "stacks": [[c_.name for c_ in _specs_of(st, specs)] for st in stacks],
            "history": {s.name: s.history for s in specs if s.history},
            "trained": trained,
            "cached": cached,
        }

    steps_run = 0
    last_save = time.monotonic()
    while stacks and epoch < max_epochs:
        gen = torch.Generator().manual_seed(int(_model_seed(cfg.seed, f"epoch{epoch}")))
        perm = torch.randperm(n_train, generator=gen).to(device)
        n_models = sum(st.M for st in stacks)
        bar = tqdm(
            total=steps_per_epoch,
            initial=step,
            desc=f"train {n_models} SAEs, epoch {epoch + 1}/{max_epochs}",
            disable=not progress,
            leave=False,
        )
        while step < steps_per_epoch:
            xb = x_train[perm[step * batch : (step + 1) * batch]]
            outs = [st.train_step(xb, scale, cfg.lr) for st in stacks]
            step += 1
            steps_run += 1
            bar.update(1)
            if step % 10 == 0 or step == steps_per_epoch:
                mse = torch.cat([o.mse for o in outs])
                aux = torch.cat([o.aux for o in outs])
                bar.set_postfix(mse=f"{float(mse.mean()):.4f}", aux=f"{float(aux.mean()):.4f}")
            if stop_after_steps is not None and steps_run >= stop_after_steps:
                _save_state(state_path, stacks, meta_now())
                bar.close()
                raise TrainingInterrupted(f"stopped after {steps_run} steps (test hook)")
            if time.monotonic() - last_save > checkpoint_every_s and step < steps_per_epoch:
                _save_state(state_path, stacks, meta_now())
                last_save = time.monotonic()
        bar.close()
        # -- epoch end: validate, stop the stable models, save them -------------------------------
        epoch += 1
        step = 0
        new_stacks = []
        for st in stacks:
            mets = stack_metrics(st, x_val)
            st_specs = _specs_of(st, specs)
            keep = []
            saes = None
            for m, (spec, met) in enumerate(zip(st_specs, mets, strict=True)):
                spec.history.append(met["nmse"])
                done = epoch >= max_epochs or (
                    cfg.epochs is None and _stable(spec.history, cfg.tol, cfg.patience)
                )
                if not done:
                    keep.append(m)
                    continue
                saes = saes or st.to_saes()
                met = {**met, "epochs": epoch, "val_nmse_history": spec.history}
                save_sae(
                    saes[m],
                    ws.models_dir / spec.name,
                    metrics=met,
                    info=_info(ws, spec, cfg, n_train, len(va_idx)),
                )
                trained.append(spec.name)
            if keep:
                new_stacks.append(st if len(keep) == st.M else st.select(keep))
        stacks = new_stacks
        if progress:
            last = [s.history[-1] for s in specs if len(s.history) == epoch]
            nm = f", val nmse {min(last):.4f}..{max(last):.4f}" if last else ""
            print(
                f"epoch {epoch}: {len(trained)} model(s) finished, {sum(s.M for s in stacks)} training{nm}",
                flush=True,
            )
        if stacks:
            _save_state(state_path, stacks, meta_now())
            last_save = time.monotonic()
    if state_path.exists():
        state_path.unlink()
    return TrainResult(trained, cached, state_path)


def _stacks_from_state(loaded, run_key: str, by_name: dict, dead_after: int, device) -> list[SAEStack] | None:
    """The stacks of a saved training state, or None when there is none or it does not fit."""
    if loaded is None or loaded[0].get("run_key") != run_key:
        return None
    meta, tensors = loaded
    try:
        stacks = []
        for i, names in enumerate(meta["stacks"]):
            st = SAEStack([_with_dead(by_name[n].cfg, dead_after) for n in names]).to(device)
            prefix = f"s{i}."
            st.load_state_tensors(
                {k[len(prefix) :]: v.to(device) for k, v in tensors.items() if k.startswith(prefix)}
            )
            stacks.append(st)
        for key in ("history", "epoch", "step", "trained", "cached"):
            meta[key]  # noqa: B018 - presence check
        return stacks
    except (KeyError, ValueError, TypeError):
        return None  # a state from other code or a damaged one: start afresh


def _with_dead(c: SAEConfig, dead_after: int) -> SAEConfig:
    d = c.to_dict()
    d["dead_after_samples"] = dead_after
    return SAEConfig.from_dict(d)


def _specs_of(stack: SAEStack, specs: list[_Spec]) -> list[_Spec]:
    by = {(s.cfg.architecture, s.cfg.d_sae, s.cfg.k): s for s in specs}
    return [by[(c.architecture, c.d_sae, c.k)] for c in stack.cfgs]


def _info(ws: Workspace, spec: _Spec, cfg: TrainConfig, n_train: int, n_val: int) -> dict:
    return {
        "name": spec.name,
        "workspace": ws.name,
        "fingerprint": ws.fingerprint,
        "embedder": ws.embedder,
        "d_in": ws.dim,
        "train_key": spec.key,
        "training": {**cfg.key_fields(), "n_train": n_train, "n_val": n_val},
    }


# -- CLI ----------------------------------------------------------------------------------------------------
def _int_list(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--workspace", default=DEFAULT_WORKSPACE, help="workspace name or path")
    parser.add_argument(
        "--arch", default="topk", help="architecture(s), comma-separated: topk,relu,batchtopk"
    )
    parser.add_argument("--latents", type=_int_list, default=d.latents, help="latent dims (default 100..600)")
    parser.add_argument("--k", type=_int_list, default=d.ks, help="K values (default 5..35)")
    parser.add_argument("--epochs", type=int, default=None, help="exactly N epochs (no early stop)")
    parser.add_argument("--max-epochs", type=int, default=d.max_epochs, help="epoch cap with early stop")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--l1", type=float, default=d.l1_coefficient, help="L1 coefficient (relu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    parser.add_argument(
        "--checkpoint-every", type=float, default=60.0, help="seconds between training-state checkpoints"
    )


def main(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {args.epochs}")
    if args.batch_size < 1 or args.lr <= 0:
        raise InputError("--batch-size must be >= 1 and --lr > 0")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    ws = Workspace.open(args.workspace)
    cfg = TrainConfig(
        archs=tuple(a.strip() for a in args.arch.split(",") if a.strip()),
        latents=tuple(args.latents),
        ks=tuple(args.k),
        epochs=args.epochs,
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        l1_coefficient=args.l1,
        device=args.device,
    )
    res = train_grid(ws, cfg, checkpoint_every_s=args.checkpoint_every)
    print(
        f"trained {len(res.trained)} model(s), {len(res.cached)} already up to date; models in {ws.models_dir}"
    )
    for m in list_models(ws):
        if m.name in res.trained:
            met = m.metrics
            print(
                f"  {m.name:<22} nmse={met.get('nmse', float('nan')):.4f} "
                f"l0={met.get('l0', float('nan')):.1f} dead={met.get('dead_fraction', float('nan')):.2f}"
            )
    return 0
