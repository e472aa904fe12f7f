"""The grid page's data: every stored precision/recall grid (core.analysis.grid) with its task,
the heatmap with a click selection on its cells, and what the page says about a grid."""

from __future__ import annotations

import pandas as pd

from core.dashboard.tasks import Task, defined_tasks
from core.errors import InputError, NotFoundError


def grids(ws) -> list[tuple[Task, pd.DataFrame]]:
    """Every stored precision/recall grid with its task."""
    from core.analysis.grid import load_grid

    out = []
    for t in defined_tasks(ws):
        try:
            df = load_grid(ws, t.attribute, t.positive, list(t.negatives))
        except (NotFoundError, InputError):
            continue
        if df is not None and not df.empty:
            out.append((t, df))
    return out


def architectures(df: pd.DataFrame) -> tuple[list[str], str]:
    """(the grid's architectures, sorted; the one shown first: core.analysis.grid.main_arch)."""
    from core.analysis.grid import main_arch

    return sorted(df["arch"].dropna().unique()), main_arch(df)


def best_or_top(df: pd.DataFrame, arch: str) -> tuple[bool, pd.Series]:
    """(True, the best cell whose precision and recall 95 % interval lower bounds are >= 90 %:
    core.analysis.grid.at_bar) when one exists, else (False, the cell with the best F1) among the
    models of `arch`."""
    from core.analysis.grid import best_cell

    sub = df[df["arch"] == arch]
    best = best_cell(sub)
    if best is not None:
        return True, best
    return False, sub.sort_values("f1", ascending=False).iloc[0]


def headline(reached: bool, cell: pd.Series) -> str:
    """What the page says about the grid's headline cell: point estimates with their intervals and
    the test data behind them; the 90 % claim made on the lower bounds."""
    from core.analysis.grid import ci_text

    n_spk = cell["n_test_speakers"]
    behind = f"{int(cell['n_test_segments'])} test segments" + (
        f" from {int(n_spk)} test speakers"
        if not pd.isna(n_spk)
        else " (no speaker column: segments resampled)"
    )
    scores = (
        f"(precision {ci_text(cell['precision'], cell['precision_lo'], cell['precision_hi'])}%, "
        f"recall {ci_text(cell['recall'], cell['recall_lo'], cell['recall_hi'])}%; 95% CI, {behind})"
    )
    where = (
        f"**{cell['model']}**, latent {int(cell['latent'])} "
        if reached
        else f"{cell['model']} latent {int(cell['latent'])} "
    )
    if reached:
        return f"Best cell whose precision and recall lower bounds (95% CI) are >= 90%: {where}{scores}."
    return f"No cell's precision and recall lower bounds (95% CI) reach 90%; best F1: {where}{scores}."


def cell_options(df: pd.DataFrame) -> dict[str, tuple[str, int]]:
    """'model (latent j)' -> (model, j) for every cell: the picker that opens a model's top latent."""
    return {f"{r.model} (latent {int(r.latent)})": (r.model, int(r.latent)) for r in df.itertuples()}


def grid_cell_chart(df: pd.DataFrame, metric: str, *, arch: str | None = None, name: str = "cell"):
    """core.analysis.grid's heatmap with a point selection on its cells (click -> model + latent)."""
    import altair as alt

    from core.analysis.grid import grid_heatmap

    chart = grid_heatmap(df, metric, arch=arch)
    sel = alt.selection_point(name=name, fields=["model", "latent"], on="click", clear="dblclick")
    layers = list(chart.layer)
    layers[0] = (
        layers[0]
        .add_params(sel)
        .encode(
            opacity=alt.condition(sel, alt.value(1.0), alt.value(0.55)),
        )
    )
    return alt.layer(*layers, data=chart.data).properties(
        title=chart.title,
        width="container",
        height=chart.height,
        # Streamlit's default autosize ('fit') collapses discrete axes to zero height; fit the width
        # of the column only, keep the height Altair computed from the rows
        autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
    )


def selected_cell(event, name: str = "cell") -> tuple[str, int] | None:
    """(model, latent) of a clicked heatmap cell from st.altair_chart's selection state."""
    if event is None:
        return None
    sel = getattr(event, "selection", None)
    if sel is None and isinstance(event, dict):
        sel = event.get("selection")
    if not sel:
        return None
    points = sel.get(name) if isinstance(sel, dict) else getattr(sel, name, None)
    if not points:
        return None
    p = points[0] if isinstance(points, list) else points
    try:
        return str(p["model"]), int(p["latent"])
    except (KeyError, TypeError, ValueError):
        return None
