"""The one model catalogue: a workspace's trained SAEs, read from cfg.json / metrics.json.

    list_models(ws)          -> [ModelInfo] of the usable models, sorted by (arch, d_sae, k)
    scan_models(ws)          -> ([ModelInfo], [ModelProblem]): also every model folder that cannot
                                be used (or whose metrics cannot be read), with the reason
    no_usable_model(ws, problems) -> the one InputError of a command that finds no usable model
    get_model(ws, name)      -> ModelInfo (NotFoundError lists the names; InputError says why an
                                unusable one cannot be used)
    open_model(ws, name)     -> the loaded SAE (checked against the workspace's dim)
    model_version(path)      -> the model's version stamp: the SHA-256 of its weights file (and of
                                its pool, when trained with `train --pool`)

Training, the analyses and the dashboard all find models here; every cache of a model's outputs
is keyed on `ModelInfo.version`, so a retrained model never reads an old result. Listing needs no
torch (the dashboard's cold start must not import it); `open_model` loads weights through
core.sae.checkpoint, which checks them against the recorded hash.

A model folder is never skipped silently: a cfg.json that is not JSON, not an object, lacks a key
or has one of the wrong type, weights that are missing, truncated or do not match the hash in
cfg.json, or an input size other than the workspace's, make it a ModelProblem (skipped) that
every listing command names; a corrupt metrics.json keeps the model usable (its weights are
fine) and is named too (its training metrics are not shown).
"""

from __future__ import annotations

import functools
import hashlib
import json
import numbers
import os
from pathlib import Path
from typing import Any, NamedTuple

from core import filehash
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
    training_rows: str = "segments"
    """What it was trained on (`train --rows`: segments, windows or both; segments before --rows)."""

    @property
    def checksum(self) -> str:
        return self.version


class ModelProblem(NamedTuple):
    """A model folder that cannot be used (`skipped`), or one whose metrics cannot be read."""

    name: str
    path: Path
    reason: str
    skipped: bool = True

    @classmethod
    def of(cls, path: Path, exc: Exception) -> ModelProblem:
        """The model folder `path` skipped for `exc` (its message, less the folder's path)."""
        text = str(exc) if isinstance(exc, VoxSAEError) else f"{exc.strerror or exc}"
        for prefix in (f"{path}/", f"{path}: "):
            if text.startswith(prefix):
                text = text[len(prefix) :]
                break
        return cls(path.name, path, text)

    def line(self) -> str:
        """The `warning: ...` line a command prints for it."""
        if self.skipped:
            return f"warning: model {self.name} skipped: {self.reason}"
        return f"warning: model {self.name}: {self.reason}; its training metrics are not shown"


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:120]
        raise InputError(f"{path}: corrupt {what} (not JSON: {why})") from None


def read_cfg(model_dir: str | os.PathLike) -> dict[str, Any]:
    """cfg.json of a VoxSAE model folder, checked to be ours and well-formed (InputError says what
    is wrong: not JSON, not an object, a key missing or of the wrong type)."""
    model_dir = Path(model_dir)
    path = model_dir / SAE_CFG_JSON
    if not path.is_file():
        raise NotFoundError(f"{model_dir}: no SAE here (no {SAE_CFG_JSON})")
    cfg = _read_json(path, "SAE config")
    if not isinstance(cfg, dict):
        raise InputError(f"{path}: corrupt SAE config (a JSON {type(cfg).__name__}, not an object)")
    ours = cfg.get("voxsae")
    if not isinstance(ours, dict) or ours.get("format") != FORMAT:
        raise InputError(f"{path}: not a VoxSAE SAE checkpoint (no 'voxsae' section)")
    if ours.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: unsupported checkpoint format version {ours.get('format_version')!r}")
    c = ours.get("config")
    if not isinstance(c, dict):
        raise InputError(f"{path}: voxsae.config is missing or not an object")
    if not isinstance(c.get("architecture"), str) or not c["architecture"]:
        raise InputError(f"{path}: voxsae.config.architecture {c.get('architecture')!r} is not a name")
    for key in ("d_in", "d_sae"):
        if not _whole(c.get(key)) or c[key] < 1:
            raise InputError(f"{path}: voxsae.config.{key} {c.get(key)!r} is not a positive whole number")
    if c.get("k") is not None and (not _whole(c["k"]) or c["k"] < 1):
        raise InputError(f"{path}: voxsae.config.k {c['k']!r} is not a positive whole number")
    sha = ours.get("weights_sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise InputError(f"{path}: voxsae.weights_sha256 {sha!r} is not a SHA-256 of the weights")
    return cfg


def read_metrics(model_dir: str | os.PathLike) -> dict:
    """metrics.json of a model folder ({} when there is none); InputError when it is corrupt."""
    path = Path(model_dir) / SAE_METRICS_JSON
    if not path.is_file():
        return {}
    out = _read_json(path, "metrics")
    if not isinstance(out, dict):
        raise InputError(f"{path}: corrupt metrics (a JSON {type(out).__name__}, not an object)")
    return out


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, identity: tuple) -> str:
    return filehash.file_sha256(path)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, hashed once per (path, core.filehash.stat_key): a file
    replaced by a rename, or rewritten in place even with its mtime put back (its ctime moves),
    gets hashed again."""
    return _file_sha256(str(path), tuple(filehash.stat_key(path).values()))


def model_version(model_dir: str | os.PathLike, cfg: dict | None = None) -> str:
    """The weights' SHA-256 (16 hex digits), hashed from the weights file itself (with the pool's
    names and fingerprints when cfg.json records one, `train --pool`). Given `cfg`
    (cfg.json), InputError when the file is missing or does not match the hash recorded there
    (truncated, corrupt, or another model's)."""
    weights = Path(model_dir) / SAE_WEIGHTS_SAFETENSORS
    if not weights.is_file():
        raise InputError(f"{weights}: the weights file is missing")
    actual = file_sha256(weights)
    recorded = ((cfg or {}).get("voxsae") or {}).get("weights_sha256")
    if recorded is not None and actual != recorded:
        raise InputError(
            f"{weights}: weights do not match cfg.json (truncated, corrupt or from another model)"
        )
    pool = ((cfg or {}).get("voxsae") or {}).get("pool")
    if pool:  # trained with other workspaces' rows (train --pool): their names and content key it too
        ids = json.dumps([[p.get("name"), p.get("fingerprint")] for p in pool if isinstance(p, dict)])
        return hashlib.sha256(f"{actual}\n{ids}".encode()).hexdigest()[:16]
    return actual[:16]


def _info(ws, path: Path) -> tuple[ModelInfo, ModelProblem | None]:
    """The model in folder `path` (InputError when it cannot be used), and a problem with its
    metrics if any."""
    cfg = read_cfg(path)
    c = cfg["voxsae"]["config"]
    dim = getattr(getattr(ws, "info", None), "dim", None)
    if dim is not None and c["d_in"] != dim:
        raise InputError(f"it takes {c['d_in']}-d inputs but workspace {ws.name} has {dim}-d embeddings")
    problem = None
    try:
        metrics = read_metrics(path)
    except InputError as exc:
        metrics, problem = {}, ModelProblem.of(path, exc)._replace(skipped=False)
    info = ModelInfo(
        name=path.name,
        path=path,
        arch=c["architecture"],
        d_sae=c["d_sae"],
        k=c.get("k"),
        metrics=metrics,
        d_in=c["d_in"],
        fingerprint=str(cfg["voxsae"].get("fingerprint", "")),
        version=model_version(path, cfg),
        workspace=ws,
        training_rows=str((cfg["voxsae"].get("training") or {}).get("rows", "segments")),
    )
    return info, problem


def scan_models(ws) -> tuple[list[ModelInfo], list[ModelProblem]]:
    """(the usable models sorted by (arch, d_sae, k), a problem for every other model folder and
    for every model whose metrics.json cannot be read). Hidden folders (staging) are not models."""
    models: list[ModelInfo] = []
    problems: list[ModelProblem] = []
    if not ws.models_dir.is_dir():
        return models, problems
    for path in sorted(ws.models_dir.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            info, problem = _info(ws, path)
        except (VoxSAEError, OSError) as exc:
            problems.append(ModelProblem.of(path, exc))
            continue
        models.append(info)
        if problem is not None:
            problems.append(problem)
    return sorted(models, key=lambda m: (m.arch, m.d_sae, m.k or 0, m.name)), problems


def list_models(ws) -> list[ModelInfo]:
    """The workspace's usable models, sorted by (arch, d_sae, k); `scan_models` also says which
    folders were left out and why."""
    return scan_models(ws)[0]


def no_usable_model(ws, problems: list[ModelProblem]) -> InputError:
    """The one error of a command that finds model folders but none it can use: lists them all."""
    listed = "; ".join(f"{p.name} ({p.reason})" for p in problems if p.skipped)
    return InputError(f"workspace {ws.name}: no usable model: {listed}")


def get_model(ws, name: str) -> ModelInfo:
    """Model `name` of the workspace; NotFoundError lists the available names, InputError says why
    a model folder of that name cannot be used."""
    models, problems = scan_models(ws)
    for m in models:
        if m.name == name:
            return m
    for p in problems:
        if p.name == name and p.skipped:
            raise InputError(f"workspace {ws.name}: model {name} cannot be used: {p.reason}")
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


def check_latent(info: ModelInfo, latent: Any) -> int:
    """`latent` as an int within the model's range: an int (not a bool), or text holding one;
    InputError for anything else (2.5, True, 'abc'), NotFoundError naming the range when outside."""
    value = latent
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            value = None
    elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
        value = None
    if value is None:
        raise InputError(f"model {info.name}: latent {latent!r} is not a whole number")
    if not 0 <= value < info.d_sae:
        raise NotFoundError(f"model {info.name}: latent {value} is out of range (0..{info.d_sae - 1})")
    return int(value)
