"""SAE latents of a workspace's embeddings, cached.

    latents(ws, "topk-L200-K20")            -> float32 [N, 200] dense latents of every row
    latents(ws, "topk-L200-K20", rows=idx)  -> the given rows only
    sparse_codes(ws, name)                  -> (indices int32 [N, c], values float32 [N, c])
    encode_array(sae, x)                    -> dense latents of any [n, d_in] array
    reconstruct(sae, z)                     -> decoder output of dense latents

The cache (ws.cache_dir/activations/MODEL-FINGERPRINT-WEIGHTS.npz) holds the active latents of
each row as (indices, values) padded to the largest L0 of any row, so it is about K/d_sae of the
dense size; it is keyed by the workspace fingerprint and the model's weights hash, so a changed
corpus or a retrained model never reads a stale cache.
"""

from __future__ import annotations

import struct
import sys
import zipfile

import numpy as np
import torch

from core import atomic
from core.constants import ACTIVATIONS_DIR
from core.errors import InputError
from core.sae import SAE
from core.sae.catalog import ModelInfo, get_model, open_model
from core.workspace.workspace import Workspace, row_chunks


def _check(sae: SAE, x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != sae.cfg.d_in:
        raise InputError(f"{where}: model takes [n, {sae.cfg.d_in}] inputs, got shape {x.shape}")
    return x


@torch.no_grad()
def sparse_encode(sae: SAE, x: np.ndarray, batch_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(indices int32 [n, c], values float32 [n, c]) of the active latents, c = max L0 over rows."""
    x = _check(sae, x, "encode")
    sae = sae.eval()
    dev = sae.W_enc.device
    idx_parts, val_parts = [], []
    for part in row_chunks(x, batch_size):  # a memory map's pages are released after each batch
        xb = torch.from_numpy(np.array(part, dtype=np.float32)).to(dev)
        z = sae.encode(xb)
        c = max(1, int((z > 0).sum(1).max())) if z.numel() else 1
        vals, idx = z.topk(min(c, z.shape[1]), dim=1)
        idx_parts.append(idx.to(torch.int32).cpu().numpy())
        val_parts.append(vals.cpu().numpy())
    c = max((p.shape[1] for p in idx_parts), default=1)
    n = x.shape[0]
    indices = np.zeros((n, c), dtype=np.int32)
    values = np.zeros((n, c), dtype=np.float32)
    row = 0
    for ip, vp in zip(idx_parts, val_parts, strict=True):
        indices[row : row + len(ip), : ip.shape[1]] = ip
        values[row : row + len(vp), : vp.shape[1]] = vp
        row += len(ip)
    return indices, values


def densify(indices: np.ndarray, values: np.ndarray, d_sae: int) -> np.ndarray:
    """Dense [n, d_sae] from padded (indices, values); padding has value 0."""
    out = np.zeros((indices.shape[0], d_sae), dtype=np.float32)
    mask = values > 0
    out[np.nonzero(mask)[0], indices[mask]] = values[mask]
    return out


@torch.no_grad()
def encode_array(sae: SAE, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Dense latents float32 [n, d_sae] of x [n, d_in]."""
    x = _check(sae, x, "encode")
    dev = sae.W_enc.device
    out = np.empty((x.shape[0], sae.cfg.d_sae), dtype=np.float32)
    for i in range(0, x.shape[0], batch_size):
        xb = torch.from_numpy(np.array(x[i : i + batch_size], dtype=np.float32)).to(dev)
        out[i : i + len(xb)] = sae.encode(xb).cpu().numpy()
    return out


@torch.no_grad()
def reconstruct(sae: SAE, z: np.ndarray) -> np.ndarray:
    """Decoder output float32 [n, d_in] of dense latents z [n, d_sae]."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != sae.cfg.d_sae:
        raise InputError(f"reconstruct: latents must be [n, {sae.cfg.d_sae}], got {z.shape}")
    return sae.decode(torch.from_numpy(z).to(sae.W_enc.device)).cpu().numpy()


def _cache_path(ws: Workspace, info: ModelInfo):
    return ws.cache_dir / ACTIVATIONS_DIR / f"{info.name}-{ws.fingerprint}-{info.version}.npz"


def sparse_codes(ws: Workspace, model_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Cached (indices, values) of every workspace row for the model."""
    info = get_model(ws, model_name)
    sae = open_model(ws, info)
    path = _cache_path(ws, info)
    if path.is_file() and not path.is_symlink():  # a link (maybe outside the workspace) is rewritten
        try:
            with np.load(path, allow_pickle=False) as f:
                idx, val = f["indices"], f["values"]
            if idx.ndim != 2 or idx.shape[0] != len(ws) or idx.shape != val.shape:
                raise ValueError(f"shape {idx.shape} / {val.shape} for {len(ws)} rows")
            if not np.issubdtype(idx.dtype, np.integer) or val.dtype != np.float32:
                raise ValueError(f"dtypes {idx.dtype} / {val.dtype}, not integer latent ids / float32")
            if idx.size and not 0 <= idx.min() <= idx.max() < info.d_sae:
                raise ValueError(f"latent ids outside 0..{info.d_sae - 1}")
            return idx, val
        except (OSError, ValueError, KeyError, EOFError) as exc:  # unreadable cache: say it, recompute
            why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            from tqdm import tqdm  # its write keeps the line apart from a progress bar being drawn

            tqdm.write(f"warning: {path}: corrupt cached activations ({why}); recomputing", file=sys.stderr)
    x = np.asarray(ws.embeddings)
    start = 0
    for part in row_chunks(x):  # no [N, dim] temporary, nor 7.7 GB of mapped pages, at 10M rows
        finite = np.isfinite(part).all(axis=1)
        if not finite.all():
            bad = start + int(np.flatnonzero(~finite)[0])
            raise InputError(f"workspace {ws.name}: embedding row {bad} contains NaN or inf")
        start += len(part)
    idx, val = sparse_encode(sae, x)
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, indices=idx, values=val)
    return idx, val


def sparse_code_rows(ws: Workspace, model_name: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sparse_codes(ws, model_name) at `rows`, read from the cached file memory-mapped: a few
    thousand rows of a 10M-row workspace without loading its 1.6 GB of codes. Falls back to
    sparse_codes (which computes or repairs the cache) when the file is missing or unusable."""
    info = get_model(ws, model_name)
    path = _cache_path(ws, info)
    rows = np.asarray(rows)
    if rows.dtype == bool or rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
        raise InputError(
            f"workspace {ws.name}: rows must be a 1-d array of row numbers, got {rows.dtype} {rows.shape}"
        )
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= len(ws)):  # a negative row would wrap silently
        raise InputError(f"workspace {ws.name}: row index out of range 0..{len(ws) - 1}")
    if path.is_file() and not path.is_symlink():  # mapped only from the workspace's own file
        try:
            members = _mapped_npz(path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, struct.error):
            members = None
        if members is not None and {"indices", "values"} <= set(members):
            idx, val = members["indices"], members["values"]
            if (
                idx.ndim == 2
                and idx.shape == val.shape
                and idx.shape[0] == len(ws)
                and np.issubdtype(idx.dtype, np.integer)
                and val.dtype == np.float32
            ):
                i, v = np.array(idx[rows]), np.array(val[rows])
                if not i.size or 0 <= i.min() <= i.max() < info.d_sae:
                    return i, v
    idx, val = sparse_codes(ws, model_name)
    return idx[rows], val[rows]


def _mapped_npz(path) -> dict[str, np.ndarray] | None:
    """The arrays of an uncompressed .npz (what np.savez writes: each member a .npy stored as is)
    memory-mapped read-only, by name; None when a member is compressed or not a plain array."""
    from numpy.lib import format as npy_format

    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    out = {}
    with open(path, "rb") as fh:
        for member in members:
            if member.compress_type != zipfile.ZIP_STORED or not member.filename.endswith(".npy"):
                return None
            fh.seek(member.header_offset)
            local = fh.read(30)  # the local file header: its name and extra field lengths at 26..30
            if local[:4] != b"PK\x03\x04":
                return None
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(member.header_offset + 30 + name_len + extra_len)
            version = npy_format.read_magic(fh)
            if version not in readers:
                return None
            shape, fortran, dtype = readers[version](fh)
            if fortran or dtype.hasobject:
                return None
            out[member.filename[: -len(".npy")]] = np.memmap(
                path, dtype=dtype, mode="r", shape=shape, offset=fh.tell()
            )
    return out


def latents(ws: Workspace, model_name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Dense latents float32 [n, d_sae] of the workspace rows (all rows when rows is None)."""
    idx, val = sparse_codes(ws, model_name)
    d_sae = get_model(ws, model_name).d_sae
    if rows is not None:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(ws)):
            raise InputError(f"workspace {ws.name}: row index out of range 0..{len(ws) - 1}")
        idx, val = idx[rows], val[rows]
    return densify(idx, val, d_sae)
