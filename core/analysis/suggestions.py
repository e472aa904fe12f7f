"""Label suggestions: for every latent of a model, how well "latent > 0" detects every value of
every metadata attribute (precision, recall, F1), ranked per latent, so an analyst starts from
evidence ("latent 74: class=music, F1 0.95").

Vectorised: one boolean [n, d_sae] activity matrix times a one-hot [n, values] matrix.

    df = compute_suggestions(ws, "topk-L200-K20")     # stored as analyses/suggestions/<model>.parquet
    df = load_suggestions(ws, "topk-L200-K20")        # dashboard (None if absent)
    latent_suggestions(df, 15)                        # ranked rows for one latent
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.analysis.models import encode_rows, find_model
from core.analysis.store import ResultStore
from core.constants import SEGMENT_BASE_COLUMNS, SPLIT_FEATURE, SUGGESTIONS_SUBDIR
from core.workspace.workspace import Workspace

MAX_VALUES = 50  # attributes with more distinct values (speaker ids, ...) are not suggested
SKIP_ATTRIBUTES = {"split", "speaker", "segment_id", "source"}
TOP_PER_LATENT = 5


def candidate_attributes(ws: Workspace) -> list[str]:
    """Categorical attributes with 2..MAX_VALUES values; numeric ones (continuous) are left out."""
    seg = ws.segments
    out = []
    continuous = set(ws.continuous_attributes())
    for col in seg.columns:
        if col in SEGMENT_BASE_COLUMNS or col in SKIP_ATTRIBUTES or col in continuous:
            continue
        n = len({str(v) for v in seg[col].dropna().unique()})
        if 2 <= n <= MAX_VALUES:
            out.append(col)
    return out


def suggestion_rows(ws: Workspace) -> np.ndarray:
    """Rows scored: the feature split when the workspace has one, else every row."""
    seg = ws.segments
    if "split" in seg.columns:
        feat = (seg["split"].astype("string") == SPLIT_FEATURE).fillna(False).to_numpy()
        if feat.any():
            return np.flatnonzero(feat)
    return np.arange(len(seg))


def score_latents(z: np.ndarray, labels: pd.DataFrame) -> pd.DataFrame:
    """Long table latent x (attribute, value): precision, recall, f1, n_active, n_value.
    A row whose attribute is missing counts as a negative of every value of that attribute."""
    act = (np.asarray(z) > 0).astype(np.float32)  # [n, L]
    n_active = act.sum(axis=0)
    frames = []
    for attr in labels.columns:
        col = labels[attr].astype("string")
        values = sorted(v for v in col.dropna().unique() if v != "")
        if not values:
            continue
        onehot = np.stack([(col == v).fillna(False).to_numpy() for v in values], axis=1).astype(np.float32)
        tp = act.T @ onehot  # [L, V]
        n_val = onehot.sum(axis=0)  # [V]
        precision = np.divide(tp, n_active[:, None], out=np.zeros_like(tp), where=n_active[:, None] > 0)
        recall = np.divide(tp, n_val[None, :], out=np.zeros_like(tp), where=n_val[None, :] > 0)
        denom = n_active[:, None] + n_val[None, :]
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        L, V = tp.shape
        frames.append(
            pd.DataFrame(
                {
                    "latent": np.repeat(np.arange(L), V),
                    "attribute": attr,
                    "value": np.tile(np.asarray(values, dtype=object), L),
                    "precision": precision.ravel(),
                    "recall": recall.ravel(),
                    "f1": f1.ravel(),
                    "n_active": np.repeat(n_active, V).astype(int),
                    "n_value": np.tile(n_val, L).astype(int),
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            columns=[
                "latent",
                "attribute",
                "value",
                "precision",
                "recall",
                "f1",
                "n_active",
                "n_value",
                "rank",
            ]
        )
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(["latent", "f1"], ascending=[True, False], kind="stable")
    df["rank"] = df.groupby("latent").cumcount() + 1
    return df.reset_index(drop=True)


def compute_suggestions(
    ws: Workspace | str, model: str, *, model_workspace=None, top: int | None = TOP_PER_LATENT
) -> pd.DataFrame:
    """Score every latent of `model` against every candidate attribute value; keep the `top` per latent."""
    store = ResultStore(ws, model_workspace)
    ws = store.ws
    ref = find_model(ws, model, store.model_ws)
    rows = suggestion_rows(ws)
    z = encode_rows(ws, ref, rows)
    labels = ws.segments.iloc[rows][candidate_attributes(ws)].reset_index(drop=True)
    df = score_latents(z, labels)
    if top is not None:
        df = df[df["rank"] <= top].reset_index(drop=True)
    df.insert(0, "model", ref.name)
    return store.save_frame(SUGGESTIONS_SUBDIR, ref.name, df, store.inputs([ref], top=top))


def load_suggestions(ws: Workspace | str, model: str, model_workspace=None) -> pd.DataFrame | None:
    """The stored suggestions; None when not computed, or when the workspace or the model changed."""
    return ResultStore(ws, model_workspace).load_frame(SUGGESTIONS_SUBDIR, model)


def latent_suggestions(df: pd.DataFrame, latent: int) -> pd.DataFrame:
    return df[df["latent"] == int(latent)].sort_values("rank").reset_index(drop=True)


def best_latents(df: pd.DataFrame, attribute: str, value: str, n: int = 5) -> pd.DataFrame:
    """The latents that best detect attribute=value (by F1)."""
    sub = df[(df["attribute"] == attribute) & (df["value"].astype(str) == str(value))]
    return sub.sort_values("f1", ascending=False).head(n).reset_index(drop=True)


def suggestion_text(row) -> str:
    return (
        f"latent {int(row['latent'])}: {row['attribute']}={row['value']} "
        f"(precision {100 * row['precision']:.0f}%, recall {100 * row['recall']:.0f}%, F1 {row['f1']:.2f})"
    )
