"""The overview page's data: the workspace's attribute counts and its models (from the one model
catalogue, core.sae.catalog) with their training metrics."""

from __future__ import annotations

import pandas as pd

from core.errors import VoxSAEError
from core.sae.catalog import list_models, read_cfg


def workspace_summary(ws) -> dict:
    """ws.summary(), from the value counts stored beside the server's segment table
    (core.dashboard.segments_table) when every counted column has them: at 10M segments the
    counting pass takes 2 s and maps in the whole table."""
    from core.dashboard import segments_table
    from core.workspace.workspace import COLUMN_SUFFIX, SUMMARY_FIELDS

    continuous = set(ws.continuous_attributes())
    counted = [c for c in ws.attributes() if c not in continuous]
    counts = {c: segments_table.value_counts(ws, c) for c in counted}
    if any(v is None for v in counts.values()):
        return ws.summary()
    seg = ws.segments
    out = {
        "name": ws.name,
        "embedder": ws.embedder,
        "dim": ws.dim,
        "segments": len(seg),
        "hours": float(seg["duration_s"].fillna(0).sum() / 3600.0),
    }
    for col, vc in counts.items():  # Workspace.summary's rules, on the stored counts
        if col == "speaker":
            out["speakers"] = int((vc.index != "").sum())
        elif len(vc) <= 20:
            key = col + COLUMN_SUFFIX if col in SUMMARY_FIELDS else col
            out[key] = {str(k): int(v) for k, v in sorted(vc.items())}
    return out


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
