"""How the analyses reach SAEs: the models of a workspace (or of another workspace with the same
embedder and dim, `--model-workspace`), their latents on this workspace's rows, and their decoder
as an affine map (what steering needs).

Thin layer over core.sae.catalog (the one model catalogue) and core.sae.activations (cached latents).
"""

from __future__ import annotations

import functools
import sys
from collections import OrderedDict

import numpy as np

from core.errors import InputError, VoxSAEError
from core.sae.catalog import (
    ModelInfo,
    ModelProblem,
    get_model,
    load_cached,
    no_usable_model,
    open_model,
    scan_models,
)
from core.sae.catalog import check_latent as check_latent
from core.workspace.workspace import Workspace

ModelRef = ModelInfo
"""One SAE as the analyses see it: the catalogue's ModelInfo, whose `workspace` is the one the SAE
was trained on (it may differ from the analysed workspace)."""


def check_compatible(ws: Workspace, model_ws: Workspace) -> None:
    """Models of `model_ws` may analyse `ws` only when embedder and dim match."""
    if model_ws.root == ws.root:
        return
    if model_ws.embedder != ws.embedder or model_ws.dim != ws.dim:
        raise InputError(
            f"models of workspace {model_ws.name} (embedder {model_ws.embedder}, dim {model_ws.dim}) "
            f"cannot analyse workspace {ws.name} (embedder {ws.embedder}, dim {ws.dim}): "
            "embedder and dim must match"
        )


def scan_model_refs(
    ws: Workspace | str, model_workspace: Workspace | str | None = None
) -> tuple[list[ModelRef], list[ModelProblem]]:
    """(every SAE of `model_workspace` (default: `ws` itself) that loads, a ModelProblem for every
    other model folder): the catalogue's checks (cfg.json, weights hash, input size) plus a load
    of the weights (non-finite values, wrong shapes, an unknown architecture)."""
    ws = Workspace.of(ws)
    mws = ws if model_workspace is None else Workspace.of(model_workspace)
    check_compatible(ws, mws)
    infos, problems = scan_models(mws)
    refs = []
    for info in infos:
        try:
            open_sae(info)
        except VoxSAEError as exc:
            problems.append(ModelProblem.of(info.path, exc))
            continue
        refs.append(info)
    return refs, problems


def usable_model_refs(ws, model_workspace=None) -> tuple[list[ModelRef], list[ModelProblem]]:
    """scan_model_refs, and InputError listing the model folders when there are some but none
    is usable."""
    refs, problems = scan_model_refs(ws, model_workspace)
    if not refs and any(p.skipped for p in problems):
        raise no_usable_model(Workspace.of(model_workspace or ws), problems)
    return refs, problems


def list_model_refs(ws: Workspace | str, model_workspace: Workspace | str | None = None) -> list[ModelRef]:
    """Every usable SAE of `model_workspace` (default: `ws` itself), checked against `ws`;
    InputError listing the model folders when there are some but none is usable."""
    return usable_model_refs(ws, model_workspace)[0]


def warn_unusable_models(
    ws: Workspace | str, model_workspace: Workspace | str | None = None
) -> list[ModelRef]:
    """What a command calls first: the usable SAEs, after one `warning: ...` line on stderr per
    model folder left out (or whose metrics are unreadable), saying why, one naming the models
    trained on other content than the workspace holds now, and one per pool workspace changed or
    gone since models were trained with it (pool_changed); InputError listing the folders when
    none is usable."""
    refs, problems = usable_model_refs(ws, model_workspace)
    for p in problems:
        print(p.line(), file=sys.stderr, flush=True)
    old = trained_elsewhere(Workspace.of(ws), refs)
    if old:
        print(
            f"warning: model(s) {', '.join(old)} were trained on other content than workspace "
            f"{Workspace.of(ws).name} holds now; their analyses are computed on the current content "
            "(`python -m core train` retrains them)",
            file=sys.stderr,
            flush=True,
        )
    for line in pool_changed(refs):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    return refs


def pool_changed(refs: list[ModelRef]) -> list[str]:
    """One line per pool workspace (`train --pool`) that changed or is gone since models of `refs`
    were trained with its rows: '<models> were trained with the rows of pool workspace P as it
    was; it has changed since (...)'. The models stay usable as they are (their weights, and so
    every cache keyed on them, did not change); `train --pool P` retrains them."""
    from core.sae.catalog import read_cfg

    by_pool: dict[tuple[str, str], list[str]] = {}
    for r in refs:
        try:
            pool = read_cfg(r.path)["voxsae"].get("pool") or []
        except VoxSAEError:
            continue
        for p in pool if isinstance(pool, list) else []:
            if not isinstance(p, dict):
                continue
            name, path = str(p.get("name", "")), str(p.get("path", ""))
            try:
                now = Workspace.open(path).fingerprint if path else None
            except (VoxSAEError, OSError):
                now = None
            if now != p.get("fingerprint"):
                state = "is gone or unreadable" if now is None else "has changed since"
                by_pool.setdefault((name, f"{path} {state}"), []).append(r.name)
    return [
        f"model(s) {', '.join(names)} were trained with the rows of pool workspace {name} as it was; "
        f"{where} (`python -m core train --pool {name}` retrains them)"
        for (name, where), names in by_pool.items()
    ]


def trained_elsewhere(ws: Workspace, refs: list[ModelRef]) -> list[str]:
    """The names of ws's own models (not another workspace's) trained on other content than ws
    holds now (their recorded fingerprint differs)."""
    return [
        r.name
        for r in refs
        if r.workspace is not None
        and r.workspace.root == ws.root
        and r.fingerprint not in ("", ws.fingerprint)
    ]


def find_model(ws: Workspace | str, name: str, model_workspace=None) -> ModelRef:
    """Model `name` of `model_workspace` (default: `ws`); NotFoundError lists the models, InputError
    says why a model folder of that name cannot be used."""
    ws = Workspace.of(ws)
    mws = ws if model_workspace is None else Workspace.of(model_workspace)
    check_compatible(ws, mws)
    info = get_model(mws, name)
    try:
        open_sae(info)
    except VoxSAEError as exc:
        reason = ModelProblem.of(info.path, exc).reason
        raise InputError(f"workspace {mws.name}: model {name} cannot be used: {reason}") from None
    return info


def open_sae(ref: ModelRef):
    """The loaded SAE of `ref` (shared, cached by weights version)."""
    return open_model(ref.workspace, ref)


def _encode_array(sae, x: np.ndarray) -> np.ndarray:
    try:
        from core.sae.activations import encode_array
    except ImportError:  # pragma: no cover - before core.sae.activations exists
        encode_array = None
    if encode_array is not None:
        return np.asarray(encode_array(sae, x), dtype=np.float32)
    import torch

    with torch.no_grad():
        return sae.encode(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy().astype(np.float32)


_CODES: OrderedDict = OrderedDict()
_CODES_MAX = 128  # sparse codes are ~K/d_sae of the dense size: a few MB per model


def _sparse_codes(ws: Workspace, ref: ModelRef):
    """(indices, values) of every row, memoised in-process (core.sae.activations caches them on disk)."""
    from core.sae.activations import sparse_codes

    key = (str(ws.root), ws.fingerprint, ref.name, ref.checksum)
    if key in _CODES:
        _CODES.move_to_end(key)
        return _CODES[key]
    codes = sparse_codes(ws, ref.name)
    _CODES[key] = codes
    while len(_CODES) > _CODES_MAX:
        _CODES.popitem(last=False)
    return codes


def encode_rows(ws: Workspace, ref: ModelRef, rows: np.ndarray | None = None) -> np.ndarray:
    """Dense latents [n, d_sae] of `ws`'s embeddings at `rows` (all rows when None)."""
    rows_arr = None if rows is None else np.asarray(rows, dtype=np.int64)
    if ref.workspace.root == ws.root:
        try:
            from core.sae.activations import densify
        except ImportError:  # pragma: no cover
            densify = None
        if densify is not None:
            key = (str(ws.root), ws.fingerprint, ref.name, ref.checksum)
            if rows_arr is None or key in _CODES:
                idx, val = _sparse_codes(ws, ref)
                if rows_arr is not None:
                    idx, val = idx[rows_arr], val[rows_arr]
            else:  # only those rows, from the memory-mapped cache: not all codes of a 10M corpus
                from core.sae.activations import sparse_code_rows

                idx, val = sparse_code_rows(ws, ref.name, rows_arr)
            return densify(idx, val, ref.d_sae)
    x = np.asarray(ws.embeddings if rows_arr is None else ws.embeddings[rows_arr], dtype=np.float32)
    return _encode_array(open_sae(ref), x)


def decode_array(sae, z: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return sae.decode(torch.as_tensor(np.asarray(z, dtype=np.float32))).numpy().astype(np.float32)


@functools.lru_cache(maxsize=128)
def _affine(path: str, checksum: str) -> tuple[np.ndarray, np.ndarray]:
    sae = load_cached(path, checksum, "cpu")
    d_sae = int(sae.cfg.d_sae)
    b = decode_array(sae, np.zeros((1, d_sae), np.float32))[0]
    w = decode_array(sae, np.eye(d_sae, dtype=np.float32)) - b[None, :]
    # the decoder must be affine for the steering shortcut; check on a random sparse batch
    rng = np.random.default_rng(0)
    z = (rng.random((8, d_sae)) < 0.05) * rng.random((8, d_sae)).astype(np.float32)
    ref = decode_array(sae, z.astype(np.float32))
    if not np.allclose(z @ w + b, ref, atol=1e-4, rtol=1e-3):
        raise InputError(f"model {path}: decoder is not affine; steering needs a linear decoder")
    return w.astype(np.float32), b.astype(np.float32)


def decoder_affine(ref: ModelRef) -> tuple[np.ndarray, np.ndarray]:
    """(W [d_sae, d_in], b [d_in]) with decode(z) == z @ W + b."""
    return _affine(str(ref.path), ref.checksum)
