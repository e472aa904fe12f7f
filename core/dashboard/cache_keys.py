"""Cache keys for the dashboard's st.cache_* loaders: what each cached thing is a function of,
read from content, never from file times.

- a workspace: its fingerprint (recorded in workspace.json, core.workspace);
- a model: `ModelInfo.version`, the weights hash, from the one model catalogue (core.sae.catalog);
- a model's latent index: that version and whether the index is built (its folder is keyed on it);
- stored analyses (grid tables, splitting results): a digest of the result files' bytes.
"""

from __future__ import annotations

import hashlib


def workspace_key(name: str) -> str:
    """The fingerprint of workspace `name` (NotFoundError / InputError when it is missing or broken)."""
    from core.workspace.workspace import Workspace

    return Workspace.open(name).fingerprint


def index_key(ws, model: str) -> tuple[str, bool]:
    """(weights version, index built?) of `model`'s latent index on this workspace."""
    from core.dashboard.browse import index_dir
    from core.sae.catalog import get_model

    m = get_model(ws, model)
    return m.version, (index_dir(ws, m) / "meta.json").is_file()


def analyses_key(ws, subdir: str, pattern: str = "*") -> str:
    """Digest of the names and bytes of the stored results analyses/<subdir>/<pattern> ('' when none)."""
    folder = ws.analyses_dir / subdir
    if not folder.is_dir():
        return ""
    digest = hashlib.blake2b(digest_size=16)
    for p in sorted(folder.glob(pattern)):
        if p.is_file():
            digest.update(p.name.encode() + b"\0")
            digest.update(p.read_bytes())
    return digest.hexdigest()
