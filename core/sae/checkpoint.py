"""SAE checkpoints in SAELens's format: MODEL/cfg.json + sae_weights.safetensors [+ metrics.json].

Tensor names and shapes are SAELens's (W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in],
b_dec [d_in]; an architecture adds its own, e.g. BatchTopK and JumpReLU `threshold` [d_sae], and
saves as its SAELens architecture: BatchTopK as 'jumprelu'), and cfg.json
carries SAELens's fields, so `sae_lens.SAE.load_from_disk(MODEL)` loads our models. Our own fields
live under cfg["voxsae"]: the SAEConfig, the workspace fingerprint and embedder, and the SHA-256
of the weights file, which `load_sae` checks - a truncated or swapped weights file is refused.

A model folder is written into a staging folder and renamed into place, each file atomically, so a
crash leaves the old model, the new one, or none - never a mix; a model whose weights are not
finite is never written. Nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from core import atomic
from core.constants import SAE_CFG_JSON, SAE_METRICS_JSON, SAE_WEIGHTS_SAFETENSORS
from core.errors import InputError
from core.sae import ARCHITECTURES, SAE, SAEConfig, create_sae
from core.sae.catalog import FORMAT, FORMAT_VERSION, read_cfg, read_metrics  # noqa: F401 - re-exported

SAELENS_FORMAT_VERSION = "6.0.0"  # cfg.json follows SAELens >= 6 (no pre-6 key renaming)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sae_tensors(sae: SAE) -> dict[str, torch.Tensor]:
    out = {
        "W_enc": sae.W_enc,
        "b_enc": sae.b_enc,
        "W_dec": sae.W_dec,
        "b_dec": sae.b_dec,
        **sae.extra_state_tensors(),
    }
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in out.items()}


def expected_shapes(cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
    return {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "b_enc": (cfg.d_sae,),
        "W_dec": (cfg.d_sae, cfg.d_in),
        "b_dec": (cfg.d_in,),
        **ARCHITECTURES[cfg.architecture].extra_tensor_shapes(cfg),
    }


def build_cfg(sae: SAE, weights_sha256: str, info: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = sae.cfg
    meta = {"sae_lens_version": SAELENS_FORMAT_VERSION, "sae_lens_training_version": None}
    return {
        # --- SAELens fields ---
        "architecture": type(sae).saelens_architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **sae.saelens_cfg(),
        "metadata": meta,
        # --- ours ---
        "voxsae": {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": cfg.architecture,
            "config": cfg.to_dict(),
            "weights_sha256": weights_sha256,
            **(info or {}),
        },
    }


def save_sae(
    sae: SAE,
    model_dir: str | os.PathLike,
    metrics: dict | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write `sae` to model_dir (replacing it as a whole). `info` adds our fields to cfg["voxsae"]
    (workspace fingerprint, embedder, training key ...). Returns the folder.

    A model whose tensors are not all finite is refused (InputError) and model_dir left as it
    was: training stops a diverging model itself, this is the last line of defence that no NaN
    model ever replaces a good one."""
    model_dir = Path(model_dir)
    tensors = sae_tensors(sae)
    bad = [name for name, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise InputError(
            f"{model_dir}: not saved, the model's weights are not finite (NaN or inf in {', '.join(bad)}); "
            "what the folder held is kept"
        )
    weights = st_save(tensors, metadata={"format": "pt"})
    cfg = build_cfg(sae, _sha256(weights), info)
    staging = atomic.staging_dir(model_dir.parent, model_dir.name)
    try:
        try:
            atomic.write_bytes(staging / SAE_WEIGHTS_SAFETENSORS, weights)
            if metrics is not None:
                atomic.write_json(staging / SAE_METRICS_JSON, metrics)
            atomic.write_json(staging / SAE_CFG_JSON, cfg)  # last: its presence marks a complete folder
        except atomic.WriteError as exc:  # name the model asked for, not the hidden staging file
            if isinstance(exc.__context__, OSError):  # what atomic met (it raises `from None`)
                raise atomic.write_failure(model_dir, exc.__context__) from None
            raise
        try:
            _swap_dir(staging, model_dir)
        except OSError as exc:
            raise atomic.write_failure(model_dir, exc) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return model_dir


def _swap_dir(new: Path, target: Path) -> None:
    if target.exists():
        trash = atomic.staging_dir(target.parent, target.name, suffix=".old")
        os.replace(target, trash / "x")
        try:
            os.replace(new, target)
        except OSError:  # put the old model back rather than leave none
            os.replace(trash / "x", target)
            shutil.rmtree(trash, ignore_errors=True)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(new, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_sae(model_dir: str | os.PathLike, device: str = "cpu") -> SAE:
    """Load a model folder written by save_sae; anything else raises InputError (never unpickles)."""
    model_dir = Path(model_dir)
    cfg = read_cfg(model_dir)
    ours = cfg["voxsae"]
    try:
        sae_cfg = SAEConfig.from_dict(dict(ours["config"]))
    except (TypeError, KeyError, ValueError) as exc:
        raise InputError(f"{model_dir / SAE_CFG_JSON}: bad SAE config ({exc})") from None
    if sae_cfg.architecture not in ARCHITECTURES:
        raise InputError(f"{model_dir}: unknown architecture {sae_cfg.architecture!r}")
    wpath = model_dir / SAE_WEIGHTS_SAFETENSORS
    if not wpath.is_file():
        raise InputError(f"{model_dir}: {SAE_WEIGHTS_SAFETENSORS} is missing")
    data = wpath.read_bytes()
    if _sha256(data) != ours.get("weights_sha256"):
        raise InputError(f"{wpath}: weights do not match cfg.json (truncated, corrupt or from another model)")
    tensors = _read_safetensors(wpath)
    want = expected_shapes(sae_cfg)
    if set(tensors) != set(want):
        raise InputError(f"{wpath}: tensor names {sorted(tensors)} are not {sorted(want)}")
    for name, shape in want.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise InputError(f"{wpath}: tensor {name} has shape {tuple(t.shape)}, expected {shape}")
        if t.dtype != torch.float32:
            raise InputError(f"{wpath}: tensor {name} has dtype {t.dtype}, expected float32")
        if not torch.isfinite(t).all():
            raise InputError(f"{wpath}: tensor {name} contains NaN or inf")
    sae = create_sae(sae_cfg)
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(sae, name).copy_(tensors[name])
        sae.load_extra_state_tensors(tensors)
    return sae.to(device).eval()


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        out = {}
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            for key in fh.keys():  # noqa: SIM118
                out[key] = fh.get_tensor(key)
        return out
    except Exception as exc:  # safetensors raises several types for foreign/corrupt files
        raise InputError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
