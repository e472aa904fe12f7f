"""The precision/recall grid (paper Figs. 2-3): the identified latent's precision and recall for
every model, as a latent-dim x K table per attribute, stored as parquet, drawn with Altair.

Each cell carries the 95 % bootstrap interval of its precision and recall over the test speakers
(precision_lo/hi, recall_lo/hi; core.analysis.intervals) and the test speakers and segments behind
it. The bar rule: a cell is called ">= 90 %" only when the LOWER bounds of both intervals reach
the bar (`at_bar`; best_cell, the report's counts and the dashboard use it); the point estimates
are still what the tables show.

    df = compute_grid(ws, "language", "es")        # from core.analysis.identification; stored
    df = load_grid(ws, "language", "es")           # what the dashboard calls (None if absent)
    grid_table(df, "recall")                       # d_sae x K pivot in percent (the paper's layout)
    interval_table(df)                             # one row per model: 'P [lo, hi]', 'R [lo, hi]', n
    at_bar(df, 0.9, 0.9)                           # the cells whose lower bounds reach the bar
    grid_chart(df)                                 # alt.Chart: precision and recall heatmaps
"""

from __future__ import annotations

import pandas as pd

from core.analysis.datasets import dataset_key, resolve_values
from core.analysis.identification import CELL_FIELDS
from core.analysis.store import CONTENT_KEY, INPUTS, ResultStore
from core.constants import GRID_SUBDIR
from core.workspace.workspace import Workspace

COLUMNS = [
    "attribute",
    "positive",
    "model",
    "arch",
    "d_sae",
    "k",
    "latent",
    *CELL_FIELDS,
    "interval_unit",
    "best_f1_latent",
    "best_f1",
    "probe_accuracy",
]


def grid_frame(identification: dict) -> pd.DataFrame:
    """The grid as a long table (one row per model) from an identification result."""
    rows = []
    for m in identification["models"]:
        row = {c: m.get(c) for c in COLUMNS}
        row["attribute"] = identification["attribute"]
        row["positive"] = identification["positive"]
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("k", "n_test_speakers", "n_test_segments"):
        df[col] = pd.array(df[col], dtype="Int64")
    return df.sort_values(["arch", "d_sae", "k"], na_position="first").reset_index(drop=True)


def compute_grid(
    ws: Workspace | str,
    attribute: str,
    positive: str,
    negatives=None,
    *,
    identification=None,
    model_workspace=None,
) -> pd.DataFrame:
    """Grid from the (computed or stored) identification; written to analyses/grid/<key>.parquet."""
    from core.analysis.identification import identify

    store = ResultStore(ws, model_workspace)
    if identification is None:
        identification = identify(store.ws, attribute, positive, negatives, model_workspace=model_workspace)
    inputs = {k: v for k, v in identification[INPUTS].items() if k != CONTENT_KEY}
    return store.save_frame(GRID_SUBDIR, identification["key"], grid_frame(identification), inputs)


def load_grid(
    ws: Workspace | str, attribute: str, positive: str, negatives=None, model_workspace=None
) -> pd.DataFrame | None:
    """The stored grid; None when not computed, or when the workspace or a model changed since."""
    store = ResultStore(ws, model_workspace)
    negs = resolve_values(store.ws, attribute, positive, negatives)
    df = store.load_frame(GRID_SUBDIR, dataset_key(attribute, str(positive), negs))
    if df is not None and not set(COLUMNS) <= set(df.columns):
        return None  # stored before the grid had intervals: recomputed by the next `analyze`
    return df


def k_label(k, arch: str = "relu") -> str:
    """Column label of a grid cell: 'k20', or the architecture's name when it has no K
    ('relu', 'jumprelu')."""
    return str(arch) if k is None or pd.isna(k) else f"k{int(k)}"


def grid_table(df: pd.DataFrame, metric: str = "precision", arch: str | None = None) -> pd.DataFrame:
    """latent-dim x K pivot of `metric` in percent (rows d_sae, columns 'k5', 'k10', ...)."""
    sub = df if arch is None else df[df["arch"] == arch]
    if arch is None and sub["arch"].nunique() > 1:
        sub = sub[sub["arch"] == main_arch(sub)]
    sub = sub.assign(
        K=[k_label(k, a) for k, a in zip(sub["k"], sub["arch"], strict=True)],
        value=100 * sub[metric].astype(float),
    )
    order = [k_label(k) for k in sorted({k for k in sub["k"] if not pd.isna(k)})]
    order = sorted(set(sub.loc[sub["k"].isna(), "K"])) + order
    table = sub.pivot_table(index="d_sae", columns="K", values="value", aggfunc="first")
    return table.reindex(columns=[c for c in order if c in table.columns]).round(1)


def main_arch(df: pd.DataFrame) -> str:
    """The architecture to show by default: topk (the paper's) when present, else the most common."""
    archs = list(df["arch"].dropna().unique())
    if "topk" in archs:
        return "topk"
    return df["arch"].value_counts().index[0] if archs else "topk"


BAR = 0.9
"""The issue's bar: precision and recall >= 90 %, judged on the intervals' lower bounds."""


def lower_bounds_reach(precision_lo, recall_lo, min_precision: float = BAR, min_recall: float = BAR):
    """Whether a cell is called ">= the bar": both lower bounds reach it (scalars or arrays)."""
    return (precision_lo >= min_precision) & (recall_lo >= min_recall)


def at_bar(df: pd.DataFrame, min_precision: float = BAR, min_recall: float = BAR) -> pd.Series:
    """Boolean mask of the grid cells whose precision and recall LOWER bounds reach the bars."""
    return lower_bounds_reach(df["precision_lo"], df["recall_lo"], min_precision, min_recall)


def best_cell(df: pd.DataFrame, min_precision: float = BAR, min_recall: float = BAR) -> pd.Series | None:
    """The model with the best F1 among those whose precision and recall lower bounds both reach
    the bars (`at_bar`)."""
    ok = df[at_bar(df, min_precision, min_recall)]
    if ok.empty:
        return None
    return ok.sort_values("f1", ascending=False).iloc[0]


def ci_text(value, lo, hi) -> str:
    """'92.1 [85.0, 97.3]': a fraction and its interval, in percent."""
    return f"{100 * float(value):.1f} [{100 * float(lo):.1f}, {100 * float(hi):.1f}]"


def interval_table(df: pd.DataFrame, arch: str | None = None) -> pd.DataFrame:
    """One row per model: 'precision [lo, hi]' and 'recall [lo, hi]' in percent, the test speakers
    and segments behind them, and whether the lower bounds reach 90/90."""
    sub = df if arch is None else df[df["arch"] == arch]
    return pd.DataFrame(
        {
            "model": sub["model"].to_numpy(),
            "latent": sub["latent"].astype(int).to_numpy(),
            "precision [95% CI]": [
                ci_text(*v)
                for v in zip(sub["precision"], sub["precision_lo"], sub["precision_hi"], strict=True)
            ],
            "recall [95% CI]": [
                ci_text(*v) for v in zip(sub["recall"], sub["recall_lo"], sub["recall_hi"], strict=True)
            ],
            "test speakers": sub["n_test_speakers"].to_numpy(),
            "test segments": sub["n_test_segments"].to_numpy(),
            "lower bounds >= 90/90": at_bar(sub).to_numpy(),
        }
    )


def grid_heatmap(
    df: pd.DataFrame, metric: str = "precision", *, arch: str | None = None, title: str | None = None
):
    """One heatmap (latent dim x K) of `metric` with the value in each cell, like Figs. 2-3."""
    import altair as alt

    sub = df if arch is None else df[df["arch"] == arch]
    if arch is None and sub["arch"].nunique() > 1:
        sub = sub[sub["arch"] == main_arch(sub)]
    data = pd.DataFrame(
        {
            "latent dim": sub["d_sae"].astype(int),
            "K": [k_label(k, a) for k, a in zip(sub["k"], sub["arch"], strict=True)],
            "k_sort": [-1 if pd.isna(k) else int(k) for k in sub["k"]],
            "value": (100 * sub[metric].astype(float)).round(1),
            "latent": sub["latent"].astype(int),
            "model": sub["model"],
            "95% CI": [
                f"[{100 * float(lo):.1f}, {100 * float(hi):.1f}]"
                for lo, hi in zip(sub[f"{metric}_lo"], sub[f"{metric}_hi"], strict=True)
            ],
            "test speakers": sub["n_test_speakers"].astype("Int64").astype(str),
            "test segments": sub["n_test_segments"].astype(int),
        }
    )
    k_order = list(data.sort_values("k_sort")["K"].drop_duplicates())
    base = alt.Chart(data).encode(
        x=alt.X("K:O", sort=k_order, title="K"),
        y=alt.Y("latent dim:O", title="latent dim"),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(
            "value:Q", scale=alt.Scale(scheme="viridis", domain=[50, 100], clamp=True), title=f"{metric} %"
        ),
        tooltip=["model", "latent", "value", "95% CI", "test speakers", "test segments"],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("value:Q", format=".1f"),
        color=alt.condition(alt.datum.value > 80, alt.value("black"), alt.value("white")),
    )
    pos = str(df["positive"].iloc[0]) if len(df) else ""
    return (rect + text).properties(
        title=title or f"{pos}: {metric} %",
        width=max(120, 38 * len(k_order)),
        height=max(80, 26 * data["latent dim"].nunique()),
    )


def grid_chart(df: pd.DataFrame, *, arch: str | None = None):
    """Precision and recall heatmaps side by side (Fig. 2 / Fig. 3)."""
    import altair as alt

    return alt.hconcat(grid_heatmap(df, "precision", arch=arch), grid_heatmap(df, "recall", arch=arch))
