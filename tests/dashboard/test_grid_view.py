"""core.dashboard.grid_view: the grid page's data (architectures, headline cell, cell picker) and
the heatmap's click selection."""

from __future__ import annotations

import pandas as pd

from core.dashboard import grid_view


def _grid(rows) -> pd.DataFrame:
    """A grid whose intervals lie 0.01 either side of the point estimate, 30 speakers behind each."""
    cols = ["model", "arch", "d_sae", "k", "latent", "precision", "recall", "f1"]
    df = pd.DataFrame(rows, columns=cols)
    for m in ("precision", "recall"):
        df[f"{m}_lo"], df[f"{m}_hi"] = df[m] - 0.01, df[m] + 0.01
    return df.assign(n_test_speakers=pd.array([30] * len(df), dtype="Int64"), n_test_segments=400)


def test_cell_selection():
    class Res:  # minimal stand-in for core.analysis.steering.SteeringResult in selected_cell
        selection = {"precision_cell": [{"model": "topk-L200-K20", "latent": 15}]}

    assert grid_view.selected_cell(Res(), "precision_cell") == ("topk-L200-K20", 15)
    assert grid_view.selected_cell({"selection": {"recall_cell": []}}, "recall_cell") is None
    assert grid_view.selected_cell(None) is None


def test_architectures_headline_and_options():
    df = _grid(
        [
            ("relu-L32", "relu", 32, None, 4, 0.95, 0.97, 0.96),
            ("topk-L32-K4", "topk", 32, 4, 7, 0.92, 0.91, 0.915),
            ("topk-L48-K4", "topk", 48, 4, 9, 0.95, 0.905, 0.93),  # point >= 90/90, lower bound not
            ("topk-L64-K4", "topk", 64, 4, 11, 0.99, 0.80, 0.885),
        ]
    )
    assert grid_view.architectures(df) == (["relu", "topk"], "topk")  # the paper's first
    reached, cell = grid_view.best_or_top(df, "topk")
    assert reached and cell["model"] == "topk-L32-K4"  # L48's F1 is higher, its recall bound 89.5 %
    text = grid_view.headline(reached, cell)
    assert "lower bounds (95% CI) are >= 90%" in text and "precision 92.0 [91.0, 93.0]%" in text
    assert "400 test segments from 30 test speakers" in text
    reached, cell = grid_view.best_or_top(df[df["model"] != "topk-L32-K4"], "topk")
    assert not reached and cell["model"] == "topk-L48-K4"  # best F1 when no cell reaches 90/90
    assert grid_view.headline(reached, cell).startswith("No cell's precision and recall lower bounds")
    assert grid_view.cell_options(df) == {
        "relu-L32 (latent 4)": ("relu-L32", 4),
        "topk-L32-K4 (latent 7)": ("topk-L32-K4", 7),
        "topk-L48-K4 (latent 9)": ("topk-L48-K4", 9),
        "topk-L64-K4 (latent 11)": ("topk-L64-K4", 11),
    }
