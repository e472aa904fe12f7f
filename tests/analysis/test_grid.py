import altair as alt
import pytest
from _analysis_synth import trained_workspace

from core.analysis.grid import best_cell, compute_grid, grid_chart, grid_heatmap, grid_table, load_grid


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return trained_workspace(tmp_path_factory, "grid")


def test_grid_table_stored_and_charted(ws):
    df = compute_grid(ws, "language", "es", ["en"])
    assert list(df["d_sae"]) == [6, 16] and list(df["k"]) == [2, 2]
    stored = load_grid(ws, "language", "es", ["en"])
    assert stored[["model", "latent", "precision", "recall"]].equals(
        df[["model", "latent", "precision", "recall"]]
    )
    table = grid_table(df, "recall")
    assert list(table.columns) == ["k2"] and list(table.index) == [6, 16]
    assert table.loc[6, "k2"] == pytest.approx(100 * df.loc[df["d_sae"] == 6, "recall"].iloc[0], abs=0.05)
    # the bar is judged on the lower bounds: a bar at the small cell's lower bounds picks it
    small = df[df["d_sae"] == 6].iloc[0]
    cell = best_cell(df, small["precision_lo"], small["recall_lo"])
    assert cell is not None and cell["d_sae"] == 6
    assert best_cell(df, df["precision_lo"].max() + 1e-9, 0.0) is None
    chart = grid_chart(df)
    assert isinstance(chart, alt.HConcatChart)
    spec = chart.to_dict()
    assert len(spec["hconcat"]) == 2
    assert isinstance(grid_heatmap(df, "precision"), alt.LayerChart)
    assert load_grid(ws, "class", "music") is None
