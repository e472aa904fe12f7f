"""The trained SAEs of a workspace, read from their cfg.json / metrics.json without torch.

One listing for training, the analyses and the dashboard (whose cold start must not import
torch). Loading weights stays in core.sae.checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from core.constants import SAE_CFG_JSON, SAE_METRICS_JSON
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


def list_models(ws) -> list[ModelInfo]:
    """The workspace's trained models (folders with a valid cfg.json), sorted by (arch, d_sae, k)."""
    out = []
    if not ws.models_dir.is_dir():
        return out
    for path in ws.models_dir.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            cfg = read_cfg(path)
            c = cfg["voxsae"]["config"]
            k = c.get("k")
            out.append(
                ModelInfo(
                    name=path.name,
                    path=path,
                    arch=c["architecture"],
                    d_sae=int(c["d_sae"]),
                    k=None if k is None else int(k),
                    metrics=read_metrics(path),
                    d_in=int(c["d_in"]),
                    fingerprint=str(cfg["voxsae"].get("fingerprint", "")),
                )
            )
        except (VoxSAEError, KeyError, TypeError, ValueError):
            continue
    return sorted(out, key=lambda m: (m.arch, m.d_sae, m.k or 0, m.name))


def get_model(ws, name: str) -> ModelInfo:
    """Model `name` of the workspace; NotFoundError lists the available names."""
    models = list_models(ws)
    for m in models:
        if m.name == name:
            return m
    raise NotFoundError(
        f"workspace {ws.name}: no model {name!r} (models: {', '.join(m.name for m in models) or 'none'})"
    )
