"""Grid: precision and recall heatmaps (latent dim x K) of the identified latent for every defined
attribute (paper Figs. 2-3). Clicking a cell opens that model's top latent."""

from __future__ import annotations

import streamlit as st

from core.analysis.grid import best_cell, grid_table, main_arch
from core.dashboard import views as dashboard
from pages import common

ws = common.current_ws()
ss = st.session_state
st.title("Precision / recall grid")
st.caption(
    "Each cell: the SAE of that latent dim and K, its top latent (largest logistic-regression weight) "
    "used alone as a detector (activation > 0) on the test split. Click a cell to open that latent."
)


@st.cache_data(show_spinner=False)
def _grids(root: str, fingerprint: str, stamp: float):
    return dashboard.grids(common.open_ws_by_root(root))


grid_dir = ws.analyses_dir / "grid"
stamp = (
    max((p.stat().st_mtime for p in grid_dir.glob("*.parquet")), default=0.0) if grid_dir.is_dir() else 0.0
)
available = _grids(str(ws.root), ws.fingerprint, stamp)
if not available:
    st.info(f"No grid computed yet: `python -m core analyze --workspace {ws.name}`.")
    st.stop()
titles = [t.title for t, _ in available]
if ss.get("grid_attr") not in titles:
    ss["grid_attr"] = titles[0]
common.state_widget(st.segmented_control, "Attribute", titles, key="grid_attr")
task, df = available[titles.index(ss["grid_attr"] or titles[0])]
archs = sorted(df["arch"].dropna().unique())
arch = (
    st.radio("Architecture", archs, index=archs.index(main_arch(df)), horizontal=True)
    if len(archs) > 1
    else archs[0]
)

cols = st.columns(2)
clicked = None
for col, metric in zip(cols, ("precision", "recall"), strict=True):
    with col:
        chart = dashboard.grid_cell_chart(df, metric, arch=arch, name=f"{metric}_cell")
        event = st.altair_chart(chart, on_select="rerun", key=f"grid_{metric}_{task.title}_{arch}")
        clicked = clicked or dashboard.selected_cell(event, f"{metric}_cell")
if clicked:
    model, latent = clicked
    st.session_state["model"] = model
    st.session_state["latent"] = latent
    st.switch_page("pages/latents.py")

best = best_cell(df[df["arch"] == arch])
if best is not None:
    st.success(
        f"Best cell with precision and recall >= 90%: **{best['model']}**, latent {int(best['latent'])} "
        f"(precision {100 * best['precision']:.1f}%, recall {100 * best['recall']:.1f}%)."
    )
else:
    top = df[df["arch"] == arch].sort_values("f1", ascending=False).iloc[0]
    st.warning(
        f"No cell reaches 90% precision and recall; best F1: {top['model']} latent {int(top['latent'])} "
        f"(precision {100 * top['precision']:.1f}%, recall {100 * top['recall']:.1f}%)."
    )
with st.expander("Tables (percent)"):
    c = st.columns(2)
    c[0].markdown("**precision**")
    c[0].dataframe(grid_table(df, "precision", arch))
    c[1].markdown("**recall**")
    c[1].dataframe(grid_table(df, "recall", arch))
    options = {f"{r.model} (latent {int(r.latent)})": (r.model, int(r.latent)) for r in df.itertuples()}
    pick = st.selectbox("Open a model's top latent", list(options), index=None, placeholder="choose a cell")
    if pick:
        model, latent = options[pick]
        st.session_state["model"] = model
        st.session_state["latent"] = latent
        st.switch_page("pages/latents.py")
