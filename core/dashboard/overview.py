"""The overview page's data: the workspace's attribute counts and its models (from the one model
catalogue, core.sae.catalog) with their training metrics."""

from __future__ import annotations

import pandas as pd

from core.errors import VoxSAEError
from core.sae.catalog import list_models, read_cfg

MODEL_COLUMNS = [
    "model",
    "arch",
    "d_sae",
    "k",
    "training_rows",
    "nmse",
    "explained_variance",
    "l0",
    "dead_pct",
    "pool",
]


def pool_text(model_dir) -> str:
    """The workspaces whose rows joined the model's training rows (`train --pool`), as
    'demo (1,024 rows, fingerprint 1a2b3c4d)'; '' for a model trained on its workspace alone."""
    try:
        pool = read_cfg(model_dir)["voxsae"].get("pool") or []
    except VoxSAEError:
        return ""
    return ", ".join(
        f"{p.get('name')} ({int(p.get('n_rows', 0)):,} rows, fingerprint {str(p.get('fingerprint', ''))[:8]})"
        for p in pool
        if isinstance(p, dict)
    )


def models_table(ws) -> pd.DataFrame:
    """One row per model: name, arch, d_sae, k, training rows (segments, windows or both: `train
    --rows`), nmse, explained_variance, l0, dead %, pool (`train --pool`)."""
    rows = []
    for m in list_models(ws):
        met = m.metrics
        dead = met.get("dead_fraction")
        rows.append(
            {
                "model": m.name,
                "arch": m.arch,
                "d_sae": m.d_sae,
                "k": m.k,
                "training_rows": m.training_rows,
                "nmse": _num(met.get("nmse")),
                "explained_variance": _num(met.get("explained_variance")),
                "l0": _num(met.get("l0")),
                "dead_pct": None if dead is None else 100.0 * float(dead),
                "pool": pool_text(m.path),
            }
        )
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def _num(v):
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def nmse_by_k(table: pd.DataFrame) -> pd.DataFrame:
    """The models of models_table that have both an NMSE and a K (the NMSE-against-K chart)."""
    return table.dropna(subset=["nmse", "k"])


def attribute_counts(summary: dict) -> dict[str, pd.DataFrame]:
    """attribute -> (value, segments) frame from Workspace.summary(); an empty value is '(none)'."""
    return {
        attr: pd.DataFrame({"value": [v or "(none)" for v in counts], "segments": list(counts.values())})
        for attr, counts in summary.items()
        if isinstance(counts, dict)
    }
