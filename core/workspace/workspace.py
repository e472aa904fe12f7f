"""A workspace: one corpus of segment embeddings with metadata, in one folder under data/.

    data/NAME/workspace.json     embedder, dim, sample rate, provenance, fingerprint
    data/NAME/segments.parquet   segment_id, source, start_s, end_s, duration_s, + metadata
    data/NAME/embeddings.npy     float32 [N, dim], row-aligned with segments.parquet

Everything later in the data flow (models/, analyses/, labels.sqlite, cache/) lives beside these
and records the workspace `fingerprint` it was computed from, so a changed corpus invalidates
only what depends on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import atomic
from core.constants import (
    ANALYSES_DIR,
    AUDIO_DIR,
    CACHE_DIR,
    EMBEDDINGS_NPY,
    LABELS_SQLITE,
    MODELS_DIR,
    SEGMENT_BASE_COLUMNS,
    SEGMENTS_PARQUET,
    WORKSPACE_FORMAT_VERSION,
    WORKSPACE_JSON,
    data_root,
)
from core.errors import InputError, NotFoundError

logger = logging.getLogger(__name__)


def resolve_workspace_path(name_or_path: str | os.PathLike) -> Path:
    """A bare name means data/NAME; anything with a path separator (or existing) is a path."""
    text = str(name_or_path)
    if not text or text in {".", ".."}:
        raise InputError(f"workspace name {text!r} is not valid")
    candidate = Path(text).expanduser()
    if os.sep in text or "/" in text or candidate.is_absolute():
        return candidate.resolve()
    return data_root() / text


def validate_embeddings(array: Any, where: str, dim: int | None = None) -> np.ndarray:
    """Return `array` as float32 [N, D] or raise InputError naming the first bad row."""
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise InputError(f"{where}: embeddings must be a 2-D array [N, dim], got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{where}: no embeddings (0 rows)")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{where}: embeddings must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(
            f"{where}: {bad.size} embedding row(s) contain NaN or inf (first bad row index {bad[0]})"
        )
    if dim is not None and arr.shape[1] != dim:
        raise InputError(f"{where}: embedding dim {arr.shape[1]} does not match the expected dim {dim}")
    return arr


def validate_segments(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check the segment table's base columns and id uniqueness; return a clean copy."""
    missing = [c for c in SEGMENT_BASE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{where}: segment table lacks column(s) {', '.join(missing)}")
    frame = frame.reset_index(drop=True).copy()
    frame["segment_id"] = frame["segment_id"].astype(str)
    dup = frame["segment_id"].duplicated(keep=False)
    if dup.any():
        first = frame.loc[dup, "segment_id"].iloc[0]
        raise InputError(f"{where}: duplicate segment_id {first!r} ({int(dup.sum())} rows share ids)")
    for col in ("start_s", "end_s", "duration_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["source"] = frame["source"].fillna("").astype(str)
    return frame


def fingerprint_of(segments: pd.DataFrame, embeddings: np.ndarray) -> str:
    """Content hash of the corpus: what models and analyses record to detect staleness."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    digest.update("\x00".join(segments["segment_id"].astype(str)).encode())
    meta_cols = sorted(c for c in segments.columns if c not in SEGMENT_BASE_COLUMNS)
    digest.update(
        pd.util.hash_pandas_object(segments[meta_cols].astype(str), index=False).values.tobytes()
        if meta_cols
        else b""
    )
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class WorkspaceInfo:
    """What workspace.json holds."""

    name: str
    embedder: str
    """Name of the embedder that made the embeddings ('resemblyzer', 'titanet', 'imported', ...)."""
    dim: int
    """Embedding dimension (256 for resemblyzer, 192 for TitaNet)."""
    sample_rate: int
    """Rate the audio was resampled to before embedding (0 for imported embeddings)."""
    n_segments: int
    fingerprint: str
    """Content hash of embeddings + segment ids + metadata."""
    provenance: dict
    """Where the corpus came from: command, source folder, corpus seed, segmentation settings."""
    created: float
    format_version: int = WORKSPACE_FORMAT_VERSION

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Workspace:
    """An opened workspace. Embeddings are memory-mapped; the segment table is loaded once."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        meta = self.root / WORKSPACE_JSON
        if not meta.is_file():
            raise NotFoundError(
                f"workspace {self.root} does not exist (no {WORKSPACE_JSON}); "
                "build one with `python -m core ingest` or `python -m core demo-corpus`"
            )
        try:
            raw = json.loads(meta.read_text())
            self.info = WorkspaceInfo(**raw)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{meta}: not a VoxSAE workspace file ({exc})") from None

    # -- construction -------------------------------------------------------------------
    @classmethod
    def open(cls, name_or_path: str | os.PathLike) -> Workspace:
        return cls(resolve_workspace_path(name_or_path))

    @classmethod
    def of(cls, ws: Workspace | str | os.PathLike) -> Workspace:
        """`ws` itself when it is an opened Workspace, else the workspace it names."""
        return ws if isinstance(ws, Workspace) else cls.open(ws)

    @classmethod
    def exists(cls, name_or_path: str | os.PathLike) -> bool:
        return (resolve_workspace_path(name_or_path) / WORKSPACE_JSON).is_file()

    @classmethod
    def create(
        cls,
        name_or_path: str | os.PathLike,
        segments: pd.DataFrame,
        embeddings: np.ndarray,
        *,
        embedder: str,
        sample_rate: int,
        provenance: dict | None = None,
        extra_files: dict[str, Path] | None = None,
    ) -> Workspace:
        """Write a workspace atomically. An existing one has its corpus files replaced.

        Files are first written into a temporary sibling folder, then renamed into place with
        workspace.json last, so a crash leaves either the old workspace or the new one.
        `extra_files` maps a relative name in the workspace to a file or folder to move in.
        """
        root = resolve_workspace_path(name_or_path)
        where = str(root)
        segments = validate_segments(segments, where)
        embeddings = validate_embeddings(embeddings, where)
        if len(segments) != embeddings.shape[0]:
            raise InputError(f"{where}: {len(segments)} segments but {embeddings.shape[0]} embedding rows")
        info = WorkspaceInfo(
            name=root.name,
            embedder=embedder,
            dim=int(embeddings.shape[1]),
            sample_rate=int(sample_rate),
            n_segments=len(segments),
            fingerprint=fingerprint_of(segments, embeddings),
            provenance=provenance or {},
            created=time.time(),
        )
        staging = atomic.staging_dir(root.parent, root.name)
        try:
            segments.to_parquet(staging / SEGMENTS_PARQUET, index=False)
            with open(staging / EMBEDDINGS_NPY, "wb") as fh:
                np.save(fh, embeddings, allow_pickle=False)
            for rel, src in (extra_files or {}).items():
                shutil.move(str(src), staging / rel)
            (staging / WORKSPACE_JSON).write_text(json.dumps(info.to_json(), indent=2) + "\n")
            if not root.exists():
                os.rename(staging, root)
            else:
                old_meta = root / WORKSPACE_JSON
                if old_meta.exists():
                    old_meta.unlink()  # the workspace reads as absent while files move
                for rel in [SEGMENTS_PARQUET, EMBEDDINGS_NPY, *(extra_files or {})]:
                    target = root / rel
                    if target.is_dir():
                        shutil.rmtree(target)
                    os.replace(staging / rel, target)
                os.replace(staging / WORKSPACE_JSON, root / WORKSPACE_JSON)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return cls(root)

    # -- contents -----------------------------------------------------------------------
    name = property(lambda self: self.root.name)
    dim = property(lambda self: self.info.dim)
    embedder = property(lambda self: self.info.embedder)
    fingerprint = property(lambda self: self.info.fingerprint)
    """Content hash of embeddings + segment ids + metadata (WorkspaceInfo.fingerprint)."""

    def __len__(self) -> int:
        return self.info.n_segments

    @functools.cached_property
    def segments(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / SEGMENTS_PARQUET)

    @functools.cached_property
    def embeddings(self) -> np.ndarray:
        """float32 [N, dim], memory-mapped read-only."""
        arr = np.load(self.root / EMBEDDINGS_NPY, mmap_mode="r", allow_pickle=False)
        if arr.shape != (self.info.n_segments, self.info.dim):
            raise InputError(
                f"{self.root / EMBEDDINGS_NPY}: shape {arr.shape} does not match workspace.json "
                f"({self.info.n_segments}, {self.info.dim})"
            )
        return arr

    def attributes(self) -> list[str]:
        """Metadata columns (everything beyond the base segment columns)."""
        return [c for c in self.segments.columns if c not in SEGMENT_BASE_COLUMNS]

    def attribute_values(self, attribute: str) -> list[str]:
        if attribute not in self.segments.columns:
            raise NotFoundError(
                f"workspace {self.name}: no attribute {attribute!r} "
                f"(attributes: {', '.join(self.attributes()) or 'none'})"
            )
        col = self.segments[attribute].dropna().astype(str)
        return sorted(v for v in col.unique() if v != "")

    # -- neighbours in the data flow ------------------------------------------------------
    # where each later layer keeps its files (names in core.constants)
    models_dir = property(lambda self: self.root / MODELS_DIR)
    analyses_dir = property(lambda self: self.root / ANALYSES_DIR)
    cache_dir = property(lambda self: self.root / CACHE_DIR)
    audio_dir = property(lambda self: self.root / AUDIO_DIR)
    labels_path = property(lambda self: self.root / LABELS_SQLITE)

    def source_path(self, source: str) -> Path | None:
        """Absolute, resolved path of a segment's source audio, or None when it is not there.

        Relative sources resolve against provenance['audio_root'] (the ingested folder) or the
        workspace's own audio/ folder; only sources listed in the segment table are served. A
        source that resolves (symlinks included) outside both folders, e.g. `../x.wav` or an
        absolute path elsewhere, is refused (InputError, logged) and never opened.
        """
        if not source:
            return None
        base = self.root / (self.info.provenance.get("audio_root") or AUDIO_DIR)
        shown = source if len(source) <= 200 else source[:197] + "..."
        try:
            path = (base / source).resolve()  # an absolute source replaces base
            roots = [r.resolve() for r in dict.fromkeys([base, self.audio_dir])]
            inside = any(path.is_relative_to(r) for r in roots)
            found = inside and path.is_file()
        except (OSError, ValueError, RuntimeError) as exc:  # NUL byte, symlink loop, name too long
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            logger.warning("workspace %s: refused source %r (%s)", self.name, shown, why)
            raise InputError(
                f"workspace {self.name}: source {shown!r} is not a usable path ({why})"
            ) from None
        if not inside:
            logger.warning("workspace %s: refused source %r (resolves to %s)", self.name, shown, path)
            raise InputError(
                f"workspace {self.name}: source {shown!r} is outside the workspace's audio folder "
                f"({', '.join(map(str, roots))}); not read"
            )
        return path if found else None

    def summary(self) -> dict:
        seg = self.segments
        out: dict[str, Any] = {
            "name": self.name,
            "embedder": self.embedder,
            "dim": self.dim,
            "segments": len(seg),
            "hours": float(seg["duration_s"].fillna(0).sum() / 3600.0),
        }
        for col in self.attributes():
            if col == "segment_id":
                continue
            values = seg[col].dropna().astype(str)
            if col == "speaker":
                out["speakers"] = int(values[values != ""].nunique())
            elif values.nunique() <= 20:
                out[col] = {k: int(v) for k, v in values.value_counts().sort_index().items()}
        return out
