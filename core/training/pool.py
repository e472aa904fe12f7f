"""`train --pool W2[,W3...]`: train a workspace's SAEs on its own training rows and those of other
workspaces made with the same embedder and dimension.

A small workspace (a few hundred labelled recordings) gives an SAE too few rows to find more than
speaker clusters; the training rows (the `sae` split, core.training.grid.training_rows) of other
workspaces in the same embedding space add rows without touching the analysis, which stays on the
workspace's own segments.

* Refused up front, one `error:` line each, naming the pool workspace and what is wrong: a
  missing workspace, the workspace itself, one listed twice (by name or by path), another
  embedder or another dimension, an empty name.
* The models record their pool (each workspace's name, path, fingerprint and training rows) in
  cfg.json; the pool's names and fingerprints enter every model's train key (so a model trained
  alone is not reused when pooled, nor the other way, and a changed pool workspace retrains), and
  its weights version (core.sae.catalog.model_version), which every derived cache is keyed on.

    pool = resolve_pool(ws, ("demo", "other"))     # [Workspace], checked
    pool_key(pool)                                 # [{name, fingerprint}]: the train key's part
"""

from __future__ import annotations

from core.errors import InputError
from core.workspace.workspace import Workspace, open_distinct


def parse_pool(text: str | None) -> tuple[str, ...]:
    """'demo,other' -> ('demo', 'other'); None or '' -> (). An empty entry ('demo,,x') is refused."""
    if text is None:
        return ()
    names = tuple(v.strip() for v in text.split(","))
    if not text.strip() or any(not n for n in names):
        raise InputError(f"--pool {text!r}: expected comma-separated workspace names or paths")
    return names


def resolve_pool(ws: Workspace, names) -> list[Workspace]:
    """The pool workspaces of `ws`, opened and checked (see module doc)."""
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"--pool: {name!r} is not a workspace name or path")
    pool = open_distinct(
        ws,
        names,
        "--pool",
        itself=f"the workspace being trained ({ws.name})",
        listed="in the pool (as {name})",
        once="pool each workspace once",
    )
    for name, other in zip(names, pool, strict=True):
        if other.embedder != ws.embedder:
            raise InputError(
                f"--pool {name}: workspace {other.name} was embedded with {other.embedder!r}, "
                f"workspace {ws.name} with {ws.embedder!r}; a pool must share one embedder"
            )
        if other.dim != ws.dim:
            raise InputError(
                f"--pool {name}: workspace {other.name} has {other.dim}-d embeddings, "
                f"workspace {ws.name} {ws.dim}-d; a pool must share one dimension"
            )
    return pool


def pool_key(pool: list[Workspace]) -> list[dict]:
    """What of the pool enters the train key: each workspace's name and content fingerprint."""
    return [{"name": p.name, "fingerprint": p.fingerprint} for p in pool]


def pool_record(pool: list[Workspace], n_rows: list[int]) -> list[dict]:
    """What a model records of its pool in cfg.json: name, path, fingerprint, training rows taken."""
    return [
        {**key, "path": str(p.root), "n_rows": int(n)}
        for p, key, n in zip(pool, pool_key(pool), n_rows, strict=True)
    ]
