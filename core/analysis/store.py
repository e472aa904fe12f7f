"""The one result store of the analyses: every stored result carries the inputs it was computed
from, and a result whose inputs changed is never returned.

    store = ResultStore(ws, model_workspace)            # results of model_workspace's SAEs on ws
    store.save_json("identification", key, result, inputs=store.inputs(models, split=h))
    store.load_json("identification", key)               # None: missing, stale or corrupt
    store.load_json("identification", key, inputs=...)   # also None when the inputs differ
    segments_digest(ws)                                  # the segment table's part of the key

Where: analyses/<kind>/<name><suffix>.json (or .parquet), the suffix '@W2' for the SAEs of
another workspace (`--model-workspace`) so they sit beside the workspace's own.

Freshness, checked on every load: the result records `inputs` = the workspace content (its
fingerprint: a hash of the embeddings, segment ids and metadata values, written by
Workspace.create together with the files; and `segments_digest`: the SHA-256 of
segments.parquet, for what the fingerprint leaves out and the analyses still read: column names,
which name the attributes, and `source`, which groups speaker-less rows in the feature split), the
version (weights hash) of every model it read, and whatever else its analysis names (dataset
split hash, parameters). A load returns None when the workspace content differs, when any
recorded model is gone or retrained, or (given `inputs`) when the content key differs. A corrupt
file (not JSON / not Parquet) is treated as missing and said once on stderr, so the caller
recomputes: one policy for every analysis.

Models of a changed workspace: a model records the fingerprint it was trained on
(ModelInfo.fingerprint), and `train` retrains the grid when it differs. Until then the old models
stay usable SAEs of the workspace (same embedder and dim, like `--model-workspace`), but every
analysis of them is keyed on the workspace's new content and recomputed: nothing computed on the
old rows is ever shown. The analysis commands say which models were trained on other content
(core.analysis.models.warn_unusable_models).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from core import atomic, filehash
from core.constants import SEGMENTS_PARQUET
from core.sae.catalog import list_models
from core.workspace.workspace import Workspace

log = logging.getLogger(__name__)

INPUTS = "inputs"
CONTENT_KEY = "content_key"
_PARQUET_META = b"voxsae"


def content_key(inputs: dict) -> str:
    """Hash of the inputs a result was computed from."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def segments_digest(ws: Workspace) -> str:
    """SHA-256 (16 hex digits) of the workspace's segments.parquet, hashed once per opened
    Workspace (so it describes the segment table that object reads) and remembered in the cache's
    core.filehash memo while the file keeps its inode, size, mtime and ctime (not hashed again at
    each server start or command)."""
    digest = ws.__dict__.get("_voxsae_segments_digest")
    if digest is None:
        memo = ws.cache_dir / filehash.MEMO_JSON
        digest = filehash.remembered_sha256(ws.root / SEGMENTS_PARQUET, memo)[:16]
        ws.__dict__["_voxsae_segments_digest"] = digest
    return digest


def warn_corrupt(path: Path, why: str) -> None:
    from tqdm import tqdm

    msg = f"warning: {path}: corrupt stored result ({why}); recomputing"
    log.warning(msg)
    tqdm.write(msg, file=sys.stderr)  # on a line of its own, even while a progress bar is drawn


class ResultStore:
    """Stored analyses of workspace `ws` by the SAEs of `model_workspace` (default: ws's own)."""

    def __init__(self, ws: Workspace | str, model_workspace: Workspace | str | None = None):
        self.ws = Workspace.of(ws)
        mws = None if model_workspace is None else Workspace.of(model_workspace)
        self.model_ws = self.ws if mws is None or mws.root == self.ws.root else mws
        self.suffix = "" if self.model_ws is self.ws else f"@{self.model_ws.name}"

    # -- where ---------------------------------------------------------------------------------
    def path(self, kind: str, name: str, ext: str = ".json") -> Path:
        return self.ws.analyses_dir / kind / f"{name}{self.suffix}{ext}"

    # -- what a result was computed from --------------------------------------------------------
    def inputs(self, models=(), **extra: Any) -> dict:
        """The workspace content (fingerprint, segments digest), {model: weights version} of
        `models`, and `extra`."""
        return {
            "fingerprint": self.ws.fingerprint,
            "segments": segments_digest(self.ws),
            "models": {m.name: m.version for m in models},
            **extra,
        }

    def _fresh(self, stored: dict | None, inputs: dict | None) -> bool:
        if not isinstance(stored, dict):
            return False
        if inputs is not None:
            return stored.get(CONTENT_KEY) == content_key(inputs)
        if stored.get("fingerprint") != self.ws.fingerprint:
            return False
        if stored.get("segments") != segments_digest(self.ws):
            return False
        recorded = stored.get("models") or {}
        if recorded:
            current = {m.name: m.version for m in list_models(self.model_ws)}
            if any(current.get(name) != version for name, version in recorded.items()):
                return False
        return True

    # -- JSON results ---------------------------------------------------------------------------
    def read_json(self, path: Path) -> dict | None:
        """The JSON object at `path`, None when missing or corrupt (corrupt is said)."""
        if not path.is_file():
            return None
        try:
            out = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError, OSError, RecursionError) as exc:
            warn_corrupt(path, str(exc).splitlines()[0][:120] or type(exc).__name__)
            return None
        if not isinstance(out, dict):
            warn_corrupt(path, f"a JSON {type(out).__name__}, not an object")
            return None
        return out

    def load_json(self, kind: str, name: str, inputs: dict | None = None) -> dict | None:
        out = self.read_json(self.path(kind, name))
        if out is None or not self._fresh(out.get(INPUTS), inputs):
            return None
        return out

    def load_reusable(self, kind: str, name: str, inputs: dict) -> dict | None:
        """The stored result when all of `inputs` but the model versions match: the caller reuses
        the entries of the models whose version did not change and recomputes the others."""
        out = self.read_json(self.path(kind, name))
        stored = out.get(INPUTS) if out else None
        if not isinstance(stored, dict):
            return None
        rest = {k: v for k, v in inputs.items() if k != "models"}
        if {k: v for k, v in stored.items() if k not in ("models", CONTENT_KEY)} != rest:
            return None
        return out

    def save_json(self, kind: str, name: str, result: dict, inputs: dict) -> dict:
        """Store `result` with its inputs (rewritten only when it changed); returns what is stored."""
        out = {**result, INPUTS: {**inputs, CONTENT_KEY: content_key(inputs)}}
        path = self.path(kind, name)
        if out != self.read_json(path):
            atomic.write_json(path, out)
        return out

    # -- table results --------------------------------------------------------------------------
    def load_frame(self, kind: str, name: str, inputs: dict | None = None) -> pd.DataFrame | None:
        path = self.path(kind, name, ".parquet")
        if not path.is_file():
            return None
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {}).get(_PARQUET_META, b"{}"))
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError)
            warn_corrupt(path, str(exc).splitlines()[0][:120])
            return None
        if not self._fresh(meta.get(INPUTS), inputs):
            return None
        return table.to_pandas()

    def save_frame(self, kind: str, name: str, frame: pd.DataFrame, inputs: dict) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = json.dumps({INPUTS: {**inputs, CONTENT_KEY: content_key(inputs)}}).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _PARQUET_META: meta})
        with atomic.atomic_path(self.path(kind, name, ".parquet")) as tmp:
            pq.write_table(table, tmp)
        return frame
