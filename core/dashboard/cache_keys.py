"""Cache keys for the dashboard's st.cache_* loaders: what each cached thing is a function of,
read from content, never from file times.

- a workspace: its folder, its fingerprint (recorded in workspace.json, core.workspace) and the
  digest of its segment table (core.analysis.store.segments_digest: column names, `source`, times);
- a model: `ModelInfo.version`, the weights hash, from the one model catalogue (core.sae.catalog);
- a model's latent index: that version and whether the index is built (its folder is keyed on it);
- stored analyses (grid tables, splitting results): a digest of the result files' bytes and of
  the versions of the models (a stored result goes stale when a model is retrained).
"""

from __future__ import annotations

import hashlib


def content_key(ws, model: str | None = None) -> str:
    """'<fingerprint>-<segments digest>[-<weights version of model>]': what a thing the dashboard
    caches of an opened workspace (its summary, clips; with `model`: that model's suggestions or
    steering session) is a function of."""
    from core.analysis.store import segments_digest
    from core.sae.catalog import get_model

    key = f"{ws.fingerprint}-{segments_digest(ws)}"
    return key if model is None else f"{key}-{get_model(ws, model).version}"


def workspace_key(name: str) -> str:
    """'<folder>@<content_key>' of workspace `name` (NotFoundError / InputError when it is missing or
    broken): a re-imported corpus, one whose segment table alone changed, or a workspace of that
    name in another data folder (VOXSAE_DATA) opens anew."""
    from core.workspace.workspace import Workspace

    ws = Workspace.open(name)
    return f"{ws.root}@{content_key(ws)}"


def index_key(ws, model: str) -> tuple[str, bool]:
    """(weights version, index built?) of `model`'s latent index on this workspace."""
    from core.dashboard.browse import index_dir
    from core.sae.catalog import get_model

    m = get_model(ws, model)
    return m.version, (index_dir(ws, m) / "meta.json").is_file()


def analyses_key(ws, subdir: str, pattern: str = "*") -> str:
    """Digest of the stored results analyses/<subdir>/<pattern> (names and bytes), of the models
    they were computed from (name and weights version of every model in core.sae.catalog) and of
    the workspace content: a retrained model or a changed corpus makes a stored result stale
    without touching its file."""
    from core.sae.catalog import list_models

    digest = hashlib.blake2b(digest_size=16)
    digest.update(content_key(ws).encode() + b"\n")
    for m in list_models(ws):
        digest.update(f"{m.name}={m.version}\n".encode())
    folder = ws.analyses_dir / subdir
    if folder.is_dir():
        for p in sorted(folder.glob(pattern)):
            if p.is_file():
                digest.update(p.name.encode() + b"\0")
                digest.update(p.read_bytes())
    return digest.hexdigest()
