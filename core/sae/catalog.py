"""The one model catalogue: a workspace's trained SAEs, read from cfg.json / metrics.json.

    list_models(ws)          -> [ModelInfo], sorted by (arch, d_sae, k)
    get_model(ws, name)      -> ModelInfo (NotFoundError lists the names)
    open_model(ws, name)     -> the loaded SAE (checked against the workspace's dim)
    model_version(path)      -> the model's version stamp: the SHA-256 of its weights file

Training, the analyses and the dashboard all find models here; every cache of a model's outputs
is keyed on `ModelInfo.version`, so a retrained model never reads an old result. Listing needs no
torch (the dashboard's cold start must not import it); `open_model` loads weights through
core.sae.checkpoint, which checks them against the recorded hash.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from core.constants import SAE_CFG_JSON, SAE_METRICS_JSON, SAE_WEIGHTS_SAFETENSORS
from core.errors import InputError, NotFoundError, VoxSAEError

FORMAT = "voxsae-sae"
"""cfg.json's voxsae.format: what marks a model folder as ours."""
FORMAT_VERSION = 1


class ModelInfo(NamedTuple):
    name: str
    path: Path
    arch: str
    d_sae: int
    k: int | None
    metrics: dict
    d_in: int = 0
    fingerprint: str = ""
    """Fingerprint of the workspace the model was trained on."""
    version: str = ""
    """SHA-256 (first 16 hex digits) of the weights file: what every derived cache is keyed on."""
    workspace: Any = None
    """The Workspace the model belongs to (it may analyse another one, see core.analysis.models)."""

    @property
    def checksum(self) -> str:
        return self.version


def read_cfg(model_dir: str | os.PathLike) -> dict[str, Any]:
    """cfg.json of a VoxSAE model folder, checked to be ours."""
    model_dir = Path(model_dir)
    path = model_dir / SAE_CFG_JSON
    if not path.is_file():
        raise NotFoundError(f"{model_dir}: no SAE here (no {SAE_CFG_JSON})")
    try:
        cfg = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: corrupt SAE config (not JSON: {exc})") from None
    ours = cfg.get("voxsae") if isinstance(cfg, dict) else None
    if not isinstance(ours, dict) or ours.get("format") != FORMAT:
        raise InputError(f"{path}: not a VoxSAE SAE checkpoint (no 'voxsae' section)")
    if ours.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: unsupported checkpoint format version {ours.get('format_version')!r}")
    return cfg


def read_metrics(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / SAE_METRICS_JSON
    if not path.is_file():
        return {}
    try:
        out = json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"{path}: corrupt metrics ({exc})") from None
    return out if isinstance(out, dict) else {}


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_version(model_dir: str | os.PathLike, cfg: dict | None = None) -> str:
    """The weights' SHA-256 (16 hex digits): recorded in cfg.json by save_sae (and checked by
    load_sae), else hashed from the weights file itself."""
    model_dir = Path(model_dir)
    sha = ((cfg or {}).get("voxsae") or {}).get("weights_sha256")
    if sha:
        return str(sha)[:16]
    weights = model_dir / SAE_WEIGHTS_SAFETENSORS
    st = weights.stat()
    return _file_sha256(str(weights), st.st_mtime_ns, st.st_size)[:16]


def _info(ws, path: Path) -> ModelInfo:
    cfg = read_cfg(path)
    c = cfg["voxsae"]["config"]
    k = c.get("k")
    return ModelInfo(
        name=path.name,
        path=path,
        arch=c["architecture"],
        d_sae=int(c["d_sae"]),
        k=None if k is None else int(k),
        metrics=read_metrics(path),
        d_in=int(c["d_in"]),
        fingerprint=str(cfg["voxsae"].get("fingerprint", "")),
        version=model_version(path, cfg),
        workspace=ws,
    )


def list_models(ws) -> list[ModelInfo]:
    """The workspace's trained models (folders with a valid cfg.json), sorted by (arch, d_sae, k)."""
    out = []
    if not ws.models_dir.is_dir():
        return out
    for path in ws.models_dir.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            out.append(_info(ws, path))
        except (VoxSAEError, KeyError, TypeError, ValueError, OSError):
            continue
    return sorted(out, key=lambda m: (m.arch, m.d_sae, m.k or 0, m.name))


def get_model(ws, name: str) -> ModelInfo:
    """Model `name` of the workspace; NotFoundError lists the available names."""
    models = list_models(ws)
    for m in models:
        if m.name == name:
            return m
    raise NotFoundError(
        f"workspace {ws.name}: no model {name!r} (available: "
        f"{', '.join(m.name for m in models) or 'none; run `python -m core train`'})"
    )


@functools.lru_cache(maxsize=128)
def load_cached(path: str, version: str, device: str = "cpu"):
    """The SAE saved in folder `path`, loaded once per weights `version` and device (shared)."""
    from core.sae.checkpoint import load_sae

    sae = load_sae(Path(path), device=device)
    sae.eval()
    return sae


def open_model(ws, name: str | ModelInfo, device: str = "cpu"):
    """The SAE `name` of the workspace, loaded once per (folder, weights version, device).
    The returned module is shared: callers must not train or modify it."""
    info = name if isinstance(name, ModelInfo) else get_model(ws, name)
    if info.d_in and info.d_in != ws.dim:
        raise InputError(
            f"model {info.name} takes {info.d_in}-d inputs but workspace {ws.name} has {ws.dim}-d embeddings"
        )
    return load_cached(str(info.path), info.version, str(device))


def check_latent(info: ModelInfo, latent: int) -> int:
    """`latent` as an int within the model's range, else NotFoundError naming the range."""
    try:
        latent = int(latent)
    except (TypeError, ValueError):
        raise NotFoundError(f"model {info.name}: latent {latent!r} is not a whole number") from None
    if not 0 <= latent < info.d_sae:
        raise NotFoundError(f"model {info.name}: latent {latent} is out of range (0..{info.d_sae - 1})")
    return latent
