"""Grid: precision and recall heatmaps (latent dim x K) of the identified latent for every defined
attribute (paper Figs. 2-3). Clicking a cell opens that model's top latent."""

from __future__ import annotations

import streamlit as st

from core.analysis.grid import grid_table, interval_table
from core.constants import GRID_SUBDIR
from core.dashboard import grid_view
from core.dashboard.cache_keys import analyses_key
from pages import common

ws = common.current_ws()
ss = st.session_state
st.title("Precision / recall grid")
st.caption(
    "Each cell: the SAE of that latent dim and K, its top latent (largest logistic-regression weight) "
    "used alone as a detector (activation > 0) on the test split; hover for its 95% interval "
    "(bootstrap over test speakers). A cell counts as >= 90% only when its lower bound does. "
    "Click a cell to open that latent."
)


@st.cache_data(show_spinner=False)
def _grids(root: str, fingerprint: str, stored: str):
    return grid_view.grids(common.open_ws_by_root(root))


available = _grids(str(ws.root), ws.fingerprint, analyses_key(ws, GRID_SUBDIR, "*.parquet"))
if not available:
    st.info(f"No grid computed yet: `python -m core analyze --workspace {ws.name}`.")
    st.stop()
titles = [t.title for t, _ in available]
if ss.get("grid_attr") not in titles:
    ss["grid_attr"] = titles[0]
common.state_widget(st.segmented_control, "Attribute", titles, key="grid_attr")
task, df = available[titles.index(ss["grid_attr"] or titles[0])]
archs, first_arch = grid_view.architectures(df)
arch = (
    st.radio("Architecture", archs, index=archs.index(first_arch), horizontal=True)
    if len(archs) > 1
    else archs[0]
)

cols = st.columns(2)
clicked = None
for col, metric in zip(cols, ("precision", "recall"), strict=True):
    with col:
        chart = grid_view.grid_cell_chart(df, metric, arch=arch, name=f"{metric}_cell")
        event = st.altair_chart(chart, on_select="rerun", key=f"grid_{metric}_{task.title}_{arch}")
        clicked = clicked or grid_view.selected_cell(event, f"{metric}_cell")
if clicked:
    common.open_latent_page(*clicked)

reached, cell = grid_view.best_or_top(df, arch)
(st.success if reached else st.warning)(grid_view.headline(reached, cell))
with st.expander("Tables (percent)"):
    c = st.columns(2)
    c[0].markdown("**precision**")
    c[0].dataframe(grid_table(df, "precision", arch))
    c[1].markdown("**recall**")
    c[1].dataframe(grid_table(df, "recall", arch))
    st.markdown("**95% intervals** (bootstrap over the test speakers) and the test data behind each cell")
    st.dataframe(interval_table(df, arch), hide_index=True)
    options = grid_view.cell_options(df)
    pick = st.selectbox("Open a model's top latent", list(options), index=None, placeholder="choose a cell")
    if pick:
        common.open_latent_page(*options[pick])
