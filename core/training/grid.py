"""Command `train`: the grid of SAEs (architecture x latent dim x K), all in one pass over the data.

    python -m core train --workspace NAME [--arch topk] [--latents 100,200,...] [--k 5,10,...]
                         [--epochs N] [--device cuda] [--batch-size B] [--lr LR] [--seed S]
                         [--rows segments|windows|both]
                         [--l0-coefficient C ...]  (each architecture option, see core.sae.base)
                         [--pool W2[,W3...]]  (add their sae-split rows: core.training.pool)

* Trains on the workspace rows whose `split` is 'sae' when that column exists (else all rows);
  `val_fraction` of them (seeded) is held out for early stopping and metrics. `--rows` chooses
  what the SAEs see of those segments (TrainConfig.rows): their embeddings (default), their
  window embeddings (windows.npy), or both; the split is drawn over segments first, so a
  validation segment's windows are never trained on. A workspace without windows refuses
  `--rows windows|both` saying how to get them. `--pool W2,W3` appends the training rows of
  those workspaces (same embedder and dim; core.training.pool), split and expanded the same way.
* Training rows above TrainConfig.stream_above_bytes (2 GB) are streamed from the memory-mapped
  files in shards (core.training.shards) instead of held in one tensor; validation rows stay in
  memory; the order stays a pure function of (seed, epoch).
* The grid comes from the registry (core.sae.ARCHITECTURES): every architecture x latent dim,
  x K for architectures with K (`uses_k`); models are named topk-L200-K20, relu-L200.
* Models of one (architecture, latent dim) form one stack (core.sae.stack): one encoder matmul for
  all their K values, embedding_bag decoding. Every batch is read once and fed to every stack
  (core.training.trainer: the epoch loop, early stop per model, `--epochs N` for exactly N).
  A finished model is saved (models/NAME/cfg.json + sae_weights.safetensors + metrics.json).
* Resumable: the whole training state (core.training.state) is one safetensors file under
  cache/training/, written atomically every `checkpoint_every_s` seconds and at each epoch end.
  Running the same command after a crash (kill -9) continues from it; the data order is a pure
  function of (seed, epoch), so a resumed run follows the uninterrupted one byte for byte, and
  the same data + seed + thread count give bit-identical models (tests/training/test_reproducible.py).
* Cached: a model whose folder records the same workspace fingerprint and training key is not
  retrained; a rerun with nothing changed trains nothing.
* Refused up front, one `error:` line each: a flag that is not a number or is out of range (every
  float finite: `--lr nan`, `--seed -1`, `--max-epochs 0`, core.training.config), K at or above
  the latent dim (naming the model), embeddings whose squared distances overflow float32, and a
  grid that needs more memory than is free (core.training.memory: the GB and the biggest model).
* A model whose loss or weights turn non-finite stops alone (core.training.trainer), is never
  saved or checkpointed; the rest of the grid finishes and is saved, then the command fails
  naming each diverged model with the epoch and step. What models/ held stays as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from core.constants import DEFAULT_WORKSPACE, SPLIT_SAE, TRAINING_DIR, TRAINING_STATE, WINDOWS_NPY
from core.errors import InputError, VoxSAEError
from core.sae import ARCHITECTURES, SAE, SAEConfig, create_sae, geometric_median
from core.sae.catalog import list_models, read_cfg
from core.sae.checkpoint import save_sae
from core.sae.stack import SAEStack
from core.training import memory
from core.training import pool as pooling
from core.training import state as state_file
from core.training.config import ROW_KINDS, TrainConfig, TrainResult, flag_of, option_flag
from core.training.shards import (
    SQUARED_NORM_LIMIT,  # noqa: F401 - where it was defined before core.training.shards
    Piece,
    RowProblems,
    RowSource,
    StreamedBatches,
    piece_scale,
    row_problems,
)
from core.training.trainer import (
    EpochBatches,
    NamedStack,
    RunState,
    derived_seed,
    shuffled_batches,
    steps_per_epoch,
    train,
)
from core.workspace.workspace import Workspace


class _Spec(NamedTuple):
    name: str
    cfg: SAEConfig
    key: str


# -- names and the grid -------------------------------------------------------------------------
def model_name(arch: str, d_sae: int, k: int | None = None) -> str:
    """'topk-L200-K20'; 'relu-L200' (an architecture without K)."""
    impl = ARCHITECTURES.get(arch)
    if k is None or (impl is not None and not impl.uses_k):
        return f"{arch}-L{int(d_sae)}"
    return f"{arch}-L{int(d_sae)}-K{int(k)}"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def grid_specs(ws: Workspace, cfg: TrainConfig, layout: _Layout | None = None) -> list[_Spec]:
    """Every model of the grid: name, SAE config and cache key (`layout`: the run's, when made)."""
    for arch in cfg.archs:
        if arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {arch!r} (known: {', '.join(sorted(ARCHITECTURES))})")
    stray = set(cfg.sae_options) - {name for arch in cfg.archs for name in ARCHITECTURES[arch].options}
    if stray:
        raise InputError(
            f"option(s) {sorted(stray)} belong to no architecture of the grid ({', '.join(cfg.archs)})"
        )
    pool = pooling.pool_key(pooling.resolve_pool(ws, cfg.pool)) if cfg.pool else None
    order = stream_order(cfg, layout or training_layout(ws, cfg))
    specs = []
    for arch in dict.fromkeys(cfg.archs):  # a value given twice (--latents 8,8) is one model
        impl = ARCHITECTURES[arch]
        options = {k: v for k, v in cfg.sae_options.items() if k in impl.options}
        for d_sae in dict.fromkeys(cfg.latents):
            for k in dict.fromkeys(cfg.ks) if impl.uses_k else [None]:
                name = model_name(arch, d_sae, k)
                try:
                    sae_cfg = SAEConfig(
                        architecture=arch,
                        d_in=ws.dim,
                        d_sae=d_sae,
                        k=k,
                        l1_coefficient=cfg.l1_coefficient,
                        auxk_coefficient=cfg.auxk_coefficient,
                        seed=derived_seed(cfg.seed, name),
                        options=options,
                    )
                except InputError as exc:
                    raise InputError(f"{name}: {exc}") from None
                what = {"fingerprint": ws.fingerprint, "sae": sae_cfg.to_dict(), "train": cfg.key_fields()}
                what = what if pool is None else {**what, "pool": pool}  # alone: keys as before
                key = _hash(what if order is None else {**what, "stream": order})
                specs.append(_Spec(name, sae_cfg, key))
    if not specs:
        raise InputError("the grid is empty (no architectures, latents or K values)")
    return specs


def is_cached(ws: Workspace, spec: _Spec) -> bool:
    try:
        ours = read_cfg(ws.models_dir / spec.name)["voxsae"]
    except VoxSAEError:
        return False
    return ours.get("train_key") == spec.key and ours.get("fingerprint") == ws.fingerprint


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
    """(rows, float32 [n, dim]) of the training rows. Rows with NaN or inf, or so large that
    squared distances overflow float32 (embeddings near 1e38: the workspace accepts them, training
    would silently turn NaN), raise InputError naming the first segment."""
    rows = training_rows(ws)
    x = np.asarray(ws.embeddings[rows], dtype=np.float32)
    _refuse_unusable(ws, x, lambda mask: _first_row(ws, rows, mask), "embedding")
    return rows, x


def _refuse_unusable(ws: Workspace, x: np.ndarray, first_of, what: str) -> None:
    """InputError when a row of `x` holds NaN or inf or is too large to train on; first_of(mask)
    -> (count, where the first is) names it."""
    _refuse_problems(ws, row_problems(x), first_of, what)


def _refuse_problems(ws: Workspace, found: RowProblems, first_of, what: str) -> None:
    """_refuse_unusable from the rows' problems (the streamed path finds them chunk by chunk)."""
    if found.nonfinite.any():
        n, first = first_of(found.nonfinite)
        raise InputError(f"workspace {ws.name}: {n} {what} row(s) contain NaN or inf ({first})")
    if found.too_large.any():
        n, first = first_of(found.too_large)
        raise InputError(
            f"workspace {ws.name}: {n} {what} row(s) are too large to train on ({first}; largest "
            f"|value| {found.max_abs:.3g}): squared distances between them overflow float32; "
            "rescale the embeddings"
        )


def _first_row(ws: Workspace, rows: np.ndarray, mask: np.ndarray) -> tuple[int, str]:
    """(how many training rows `mask` marks, 'first: row 17, segment s000017')."""
    bad = rows[np.flatnonzero(mask)]
    sid = ws.segments["segment_id"].iloc[int(bad[0])]
    return bad.size, f"first: row {int(bad[0])}, segment {sid}"


def _first_window(ws: Workspace, owner: np.ndarray, bad: np.ndarray) -> tuple[int, str]:
    """(how many windows `bad` lists, 'first: window 40 of .../windows.npy, segment row 6, segment
    s000006'): the window itself, since a segment's row number alone points at the wrong file."""
    row = int(owner[bad[0]])
    sid = ws.segments["segment_id"].iloc[row]
    return (
        bad.size,
        f"first: window {int(bad[0])} of {ws.root / WINDOWS_NPY}, segment row {row}, segment {sid}",
    )


def training_arrays(
    ws: Workspace, kind: str, rows: np.ndarray, data: np.ndarray, parts: tuple[np.ndarray, ...]
) -> list[np.ndarray]:
    """For each index array of `parts` (positions in `rows`, e.g. the train and validation
    sides), the float32 rows the SAEs see of those segments (TrainConfig.rows `kind`): `data`'s
    ('segments'), their windows in workspace order ('windows'), or both ('both')."""
    if kind == "segments":
        return [data[part] for part in parts]
    windows, owner = _windows(ws, kind)
    out = []
    for part in parts:
        mine = np.flatnonzero(np.isin(owner, rows[part]))
        x = np.asarray(windows.embeddings[mine], dtype=np.float32)
        _refuse_unusable(ws, x, lambda mask, mine=mine: _first_window(ws, owner, mine[mask]), "window")
        out.append(x if kind == "windows" else np.concatenate([data[part], x]))
    return out


def _windows(ws: Workspace, kind: str):
    """(the workspace's Windows, their segment rows), or InputError saying how to get windows."""
    windows = ws.windows
    if windows is None:
        raise InputError(
            f"--rows {kind}: workspace {ws.name} has no window embeddings (made before ingest stored "
            "them, or imported without --windows); re-ingest its audio (`python -m core ingest`), "
            "rebuild it (`demo-corpus`), or import with --windows and --window-segments"
        )
    return windows, np.asarray(windows.segment_rows)


def training_pieces(ws: Workspace, kind: str, rows: np.ndarray, part: np.ndarray) -> list[Piece]:
    """training_arrays' rows of `part` unread: the memory-mapped arrays and positions in them."""
    pieces = [Piece(ws.embeddings, rows[part])] if kind in ("segments", "both") else []
    if kind in ("windows", "both"):
        windows, owner = _windows(ws, kind)
        pieces.append(Piece(windows.embeddings, np.flatnonzero(np.isin(owner, rows[part]))))
    return pieces


class _Layout(NamedTuple):
    """Where a run's rows come from, before any is read."""

    sources: list[Workspace]
    """The workspace, then its pool."""
    rows: list[np.ndarray]
    """Each source's training rows (training_rows)."""
    parts: list[tuple[np.ndarray, np.ndarray]]
    """Each source's (train, validation) positions in its rows."""
    train: list[Piece]
    """Every source's training pieces, in order (what the SAEs are fed)."""
    val: list[Piece]
    """The same of the validation rows."""

    @property
    def n_train(self) -> int:
        return sum(len(p.index) for p in self.train)


def training_layout(ws: Workspace, cfg: TrainConfig) -> _Layout:
    """The pool's training segments follow W's; the validation split is drawn over all of them,
    then each workspace's share is expanded to what the SAEs see of it (segments, windows, both)."""
    sources = [ws, *pooling.resolve_pool(ws, cfg.pool)]
    rows = [training_rows(src) for src in sources]
    tr_idx, va_idx = split_train_val(sum(len(r) for r in rows), cfg.val_fraction, cfg.seed)
    parts, offset = [], 0
    for r in rows:
        n = len(r)
        parts.append(tuple(idx[(idx >= offset) & (idx < offset + n)] - offset for idx in (tr_idx, va_idx)))
        offset += n
    pieces = [
        [
            p
            for src, r, part in zip(sources, rows, parts, strict=True)
            for p in training_pieces(src, cfg.rows, r, part[side])
        ]
        for side in (0, 1)
    ]
    return _Layout(sources, rows, parts, *pieces)


def streams(cfg: TrainConfig, layout: _Layout) -> bool:
    """The training rows hold more float32 bytes than cfg.stream_above_bytes (0: always)."""
    return layout.n_train * layout.sources[0].dim * 4 > cfg.stream_above_bytes


def stream_order(cfg: TrainConfig, layout: _Layout) -> dict | None:
    """What of the streamed order enters the models' key: shard_rows and buffer_shards when the
    run streams through more than one buffer (one buffer is the in-memory order: None)."""
    if not streams(cfg, layout) or math.ceil(layout.n_train / cfg.shard_rows) <= cfg.buffer_shards:
        return None
    return {"shard_rows": cfg.shard_rows, "buffer_shards": cfg.buffer_shards}


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 10:
        raise InputError(f"SAE training needs at least 10 rows, got {n}")
    perm = np.random.default_rng([seed, 7]).permutation(n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}") from None


# -- the run ------------------------------------------------------------------------------------
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
    cfg = cfg or TrainConfig()
    if not (math.isfinite(checkpoint_every_s) and checkpoint_every_s >= 0):  # NaN: never checkpoint
        raise InputError(
            f"--checkpoint-every {checkpoint_every_s!r}: must be a finite number of seconds >= 0"
        )
    device = resolve_device(cfg.device)
    layout = training_layout(ws, cfg)
    specs = grid_specs(ws, cfg, layout)
    by_name = {s.name: s for s in specs}
    run_key = _hash({"models": sorted(s.key for s in specs)})
    state_path = ws.cache_dir / TRAINING_DIR / f"{run_key}-{TRAINING_STATE}"
    if not state_path.exists() and all(is_cached(ws, s) for s in specs):
        # nothing to train or resume: answer before reading (or streaming through) the rows
        if progress:
            print(f"all {len(specs)} model(s) up to date in {ws.models_dir}", flush=True)
        return TrainResult([], [s.name for s in specs], state_path)

    data = (_streamed_rows if streams(cfg, layout) else _in_memory_rows)(layout, cfg, device)
    record = pooling.pool_record(layout.sources[1:], [len(r) for r in layout.rows[1:]])
    n_train, n_val, x_val, scale = data.n_train, len(data.x_val), data.x_val, data.scale
    batch = max(1, min(cfg.batch_size, max(32, n_train // 32)))
    if scale <= 0:
        raise InputError(f"workspace {ws.name}: all training embeddings are identical")
    dead_after = int(min(100_000, max(1_000, n_train // 2)))

    def cfg_of(name: str) -> SAEConfig:
        return dataclasses.replace(by_name[name].cfg, dead_after_samples=dead_after)

    todo = [s for s in specs if not is_cached(ws, s)]
    if todo:  # before a single stack is allocated, a resumed one included
        names = [s.name for s in todo]
        need = memory.grid_estimate(
            [cfg_of(n) for n in names], names, batch=batch, n_train=data.resident_rows, n_val=n_val
        )
        memory.check_fits(need, device)
    resumed = state_file.load_state(state_path, run_key, cfg_of, device)
    if resumed is not None:
        groups, run, extra = resumed
        cached = list(extra.get("cached", []))
        if progress:
            print(f"resuming training from epoch {run.epoch + 1}, step {run.step}", flush=True)
    else:
        cached = [s.name for s in specs if s not in todo]
        if not todo:
            if progress:
                print(f"all {len(specs)} model(s) up to date in {ws.models_dir}", flush=True)
            return TrainResult([], cached, state_path)
        sample = data.rows_at(
            torch.randperm(n_train, generator=torch.Generator().manual_seed(cfg.seed))[:20_000]
        )
        groups = _new_stacks([cfg_of(s.name) for s in todo], [s.name for s in todo], sample, scale, device)
        run = RunState()

    def on_finished(name: str, sae: SAE, metrics: dict) -> None:
        save_sae(
            sae,
            ws.models_dir / name,
            metrics=metrics,
            info=_info(ws, by_name[name], cfg, n_train, n_val, record, data.streamed),
        )

    def on_checkpoint(groups: list[NamedStack], run: RunState) -> None:
        state_file.save_state(state_path, run_key, groups, run, {"cached": cached})

    run = train(
        groups,
        data.batches(batch),
        steps_per_epoch(n_train, batch),
        x_val,
        scale,
        cfg,
        run,
        on_finished=on_finished,
        on_checkpoint=on_checkpoint,
        checkpoint_every_s=checkpoint_every_s,
        stop_after_steps=stop_after_steps,
        progress=progress,
    )
    if state_path.exists():  # the run is over: a rerun trains a failed model afresh, never from NaN
        state_path.unlink()
    if run.failed:
        raise InputError(_diverged(run, cfg))
    return TrainResult(run.trained, cached, state_path)


class _Rows(NamedTuple):
    """What a run trains from, in memory or streamed."""

    n_train: int
    x_val: torch.Tensor
    """The validation rows (in memory on both paths)."""
    scale: float
    """mean ||x - mean||^2 of the training rows (the MSE's normaliser)."""
    batches: Callable[[int], EpochBatches]
    """batch size -> the epochs' batches."""
    rows_at: Callable[[torch.Tensor], torch.Tensor]
    """training row positions -> those rows (the initialisation sample)."""
    resident_rows: int
    """Training rows held in memory at once (what core.training.memory counts)."""
    streamed: dict | None
    """shard_rows and buffer_shards when streamed (recorded in cfg.json), else None."""


def _in_memory_rows(layout: _Layout, cfg: TrainConfig, device: torch.device) -> _Rows:
    """Every training row in one tensor; shuffled_batches cuts it."""
    train_parts, val_parts = [], []
    for src, rows, parts in zip(layout.sources, layout.rows, layout.parts, strict=True):
        _, data = load_training_data(src)
        t, v = training_arrays(src, cfg.rows, rows, data, parts)
        train_parts.append(t)
        val_parts.append(v)
    train_rows = np.concatenate(train_parts)
    x_train = torch.from_numpy(train_rows).to(device)
    return _Rows(
        len(train_rows),
        torch.from_numpy(np.concatenate(val_parts)).to(device),
        piece_scale(train_rows, [len(p.index) for p in layout.train]),
        lambda batch: shuffled_batches(x_train, batch, cfg.seed),
        lambda at: x_train[at.to(x_train.device)],
        len(train_rows),
        None,
    )


def _streamed_rows(layout: _Layout, cfg: TrainConfig, device: torch.device) -> _Rows:
    """The training rows read in shards (core.training.shards), checked in one pass up front
    with the errors of the in-memory path; the validation rows read into memory."""
    source, val_source = RowSource(layout.train), RowSource(layout.val)
    scan = source.scan()
    x_val = val_source.read(0, len(val_source))
    val_source.close()  # read whole: its descriptors are not needed past here
    val_found = [
        row_problems(x_val[a:b]) for a, b in zip(val_source.starts[:-1], val_source.starts[1:], strict=True)
    ]
    per_source = len(layout.train) // len(layout.sources)  # 1 piece per source, 2 for 'both'
    checks = []  # the in-memory path's order: every source's segments, then each one's windows
    for i, (src, rows, (tr, va)) in enumerate(zip(layout.sources, layout.rows, layout.parts, strict=True)):
        if cfg.rows == "windows":  # segments checked though not trained on, as in memory
            segments = RowSource([Piece(src.embeddings, rows)])
            found = segments.scan().problems[0]
            segments.close()
        else:
            found = _merged(len(rows), (tr, va), scan.problems[i * per_source], val_found[i * per_source])
        checks.append(
            (0, i, found, lambda mask, src=src, rows=rows: _first_row(src, rows, mask), "embedding")
        )
        if cfg.rows != "segments":
            owner = np.asarray(src.windows.segment_rows)
            for side, found in enumerate((scan.problems, val_found)):
                mine = (layout.train, layout.val)[side][(i + 1) * per_source - 1].index
                first_of = lambda mask, src=src, owner=owner, mine=mine: _first_window(src, owner, mine[mask])  # noqa: E731
                checks.append((1, i, found[(i + 1) * per_source - 1], first_of, "window"))
    for _, i, found, first_of, what in sorted(checks, key=lambda c: c[:2]):
        _refuse_problems(layout.sources[i], found, first_of, what)
    resident = min(source.n, 2 * cfg.buffer_shards * cfg.shard_rows)

    def batches(batch: int) -> EpochBatches:
        return StreamedBatches(source, batch, cfg.seed, cfg.shard_rows, cfg.buffer_shards, device)

    return _Rows(
        source.n,
        torch.from_numpy(x_val).to(device),
        scan.scale,
        batches,
        lambda at: torch.from_numpy(source.gather(at.numpy())).to(device),
        resident,
        {"shard_rows": cfg.shard_rows, "buffer_shards": cfg.buffer_shards},
    )


def _merged(n: int, parts: tuple[np.ndarray, np.ndarray], *found: RowProblems) -> RowProblems:
    """The problems of n rows from those of their (train, validation) positions."""
    nonfinite, too_large = np.zeros(n, bool), np.zeros(n, bool)
    for part, f in zip(parts, found, strict=True):
        nonfinite[part], too_large[part] = f.nonfinite, f.too_large
    return RowProblems(nonfinite, too_large, max(f.max_abs for f in found))


def _diverged(run: RunState, cfg: TrainConfig) -> str:
    """The one line for the models that turned non-finite: which, when, what to try, what was saved."""
    what = "; ".join(f"{name}: {why}" for name, why in run.failed.items())
    saved = (
        f"; {len(run.trained)} other model(s) trained and saved: {', '.join(run.trained)}"
        if run.trained
        else ""
    )
    return (
        f"{len(run.failed)} model(s) diverged and were not saved (what models/ held is kept): {what}. "
        f"Try a smaller --lr (this run: {cfg.lr:g}) or other architecture options, or rescale the "
        f"embeddings{saved}"
    )


def _new_stacks(
    cfgs: list[SAEConfig], names: list[str], sample: torch.Tensor, scale: float, device: torch.device
) -> list[NamedStack]:
    """Freshly initialised models (b_dec at the geometric median of `sample`, up to 20,000
    training rows drawn from the seed), one stack per (architecture, latent dim). One stack's
    single SAEs exist at a time (what core.training.memory counts)."""
    b_dec0 = geometric_median(sample.cpu())
    groups: dict[tuple[str, int], list[tuple[str, SAEConfig]]] = {}
    for c, name in zip(cfgs, names, strict=True):
        groups.setdefault((c.architecture, c.d_sae), []).append((name, c))
    out = []
    for group in groups.values():
        saes = []
        for _, c in group:
            sae = create_sae(c)
            sae.init_weights(b_dec0, data_scale=scale)
            saes.append(sae.to(device))
        out.append(NamedStack(SAEStack.from_saes(saes), [name for name, _ in group]))
    return out


def _info(
    ws: Workspace, spec: _Spec, cfg: TrainConfig, n_train: int, n_val: int, pool: list, streamed: dict | None
) -> dict:
    return {
        **({"streamed": streamed} if streamed else {}),
        **({"pool": pool} if pool else {}),
        "name": spec.name,
        "workspace": ws.name,
        "fingerprint": ws.fingerprint,
        "embedder": ws.embedder,
        "d_in": ws.dim,
        "train_key": spec.key,
        "training": {**cfg.key_fields(), "rows": cfg.rows, "n_train": n_train, "n_val": n_val},
    }


# -- CLI ----------------------------------------------------------------------------------------
# Numbers and lists are parsed here, not by argparse: its refusal is a usage block ending in
# "python -m core train: error: ...", where every bad input should be one `error: ...` line.
NUMBER_FLAGS: dict[str, tuple[type, str]] = {
    "epochs": (int, "exactly N epochs (no early stop)"),
    "max_epochs": (int, "epoch cap with early stop (default {})"),
    "batch_size": (int, "samples per step (default {})"),
    "lr": (float, "Adam learning rate (default {})"),
    "seed": (int, "seed of the split, data order and initialisation (default {})"),
    "l1_coefficient": (float, "L1 coefficient (relu; default {})"),
}
"""TrainConfig fields set by a flag of their own (core.training.config.FLAGS) -> (type, help)."""


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def _number(flag: str, text: str | None, kind: type) -> Any:
    """The value of a numeric flag (None when not given)."""
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise InputError(f"{flag} {text!r}: not {'an integer' if kind is int else 'a number'}") from None


def parse_int_list(flag: str, text: str | None) -> tuple[int, ...] | None:
    """'100,200' -> (100, 200) (None when not given)."""
    if text is None:
        return None
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or min(vals) < 1:
        raise InputError(f"{flag} {text!r}: expected comma-separated positive integers")
    return vals


def _option_names() -> dict[str, str]:
    """Every architecture option -> its help (an option several architectures share is one flag)."""
    out: dict[str, str] = {}
    for impl in ARCHITECTURES.values():
        for name, opt in impl.options.items():
            out.setdefault(name, f"{opt.help} (default {opt.default:g})")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--workspace", default=DEFAULT_WORKSPACE, help="workspace name or path")
    parser.add_argument(
        "--arch", default="topk", help=f"architecture(s), comma-separated: {','.join(ARCHITECTURES)}"
    )
    parser.add_argument("--latents", help="latent dims, comma-separated (default 100..600)")
    parser.add_argument("--k", help="K values, comma-separated (default 5..35)")
    for name, (_, help_text) in NUMBER_FLAGS.items():
        flag = flag_of(name)
        parser.add_argument(flag, dest=_dest(flag), help=help_text.format(getattr(d, name)))
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    for name, help_text in _option_names().items():
        parser.add_argument(option_flag(name), dest=name, help=help_text)
    parser.add_argument(
        "--rows",
        help=f"SAE-training rows: {', '.join(ROW_KINDS)} (the sae split's segments, their windows, or both; "
        f"default {d.rows})",
    )
    parser.add_argument("--threads", help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--checkpoint-every", help="seconds between training-state checkpoints (default 60)")
    parser.add_argument(
        "--pool", help="W2[,W3...]: also train on these workspaces' sae-split rows (same embedder and dim)"
    )


def main(args: argparse.Namespace) -> int:
    given = {
        "latents": parse_int_list("--latents", args.latents),
        "ks": parse_int_list("--k", args.k),
        **{
            name: _number(flag_of(name), getattr(args, _dest(flag_of(name))), kind)
            for name, (kind, _) in NUMBER_FLAGS.items()
        },
    }
    options = {n: _number(option_flag(n), getattr(args, n), float) for n in _option_names()}
    threads = _number("--threads", args.threads, int)
    checkpoint_every = _number("--checkpoint-every", args.checkpoint_every, float)
    cfg = TrainConfig(
        archs=tuple(a.strip() for a in args.arch.split(",") if a.strip()),
        device=args.device,
        sae_options={n: v for n, v in options.items() if v is not None},
        **({"rows": args.rows.strip()} if args.rows is not None else {}),
        pool=pooling.parse_pool(args.pool),
        **{name: v for name, v in given.items() if v is not None},
    )
    if threads is not None:
        cpus = os.cpu_count() or 1
        if not 1 <= threads <= cpus:  # torch takes 100000 and segfaults in the first matmul
            raise InputError(
                f"--threads {threads}: must be an integer from 1 to {cpus} (the CPUs of this machine)"
            )
        torch.set_num_threads(threads)
    ws = Workspace.open(args.workspace)
    res = train_grid(ws, cfg, checkpoint_every_s=60.0 if checkpoint_every is None else checkpoint_every)
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
