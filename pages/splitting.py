"""Splitting: how subgroups move into and out of the top latent across latent sizes (paper Fig. 4),
with the detected splits (a smaller SAE's latent dividing among latents of a larger one)."""

from __future__ import annotations

import altair as alt
import streamlit as st

from core.analysis.splitting import first_splits, split_reading, splitting_chart, tracks_frame
from core.constants import SPLITTING_SUBDIR
from core.dashboard import splitting_view
from core.dashboard.cache_keys import analyses_key
from pages import common

ws = common.current_ws()
ss = st.session_state
st.title("Feature splitting")


@st.cache_data(show_spinner=False)
def _results(root: str, fingerprint: str, stored: str) -> dict:
    return splitting_view.stored_results(common.open_ws_by_root(root))


results = _results(str(ws.root), ws.fingerprint, analyses_key(ws, SPLITTING_SUBDIR, "*.json"))
if not results:
    st.info(f"No splitting analysis computed yet: `python -m core analyze --workspace {ws.name}`.")
    st.stop()
titles = list(results)
if ss.get("split_attr") not in titles:
    ss["split_attr"] = titles[0]
common.state_widget(st.segmented_control, "Attribute", titles, key="split_attr")
res = results[ss["split_attr"] or titles[0]]
tracks = tracks_frame(res)
archs, first_arch = splitting_view.architectures(tracks)
c = st.columns(2)
arch = (
    c[0].radio("Architecture", archs, horizontal=True, index=archs.index(first_arch))
    if len(archs) > 1
    else first_arch
)
ks, first_k = splitting_view.k_choices(res, tracks, arch)
k = c[1].select_slider("K", ks, value=first_k) if len(ks) > 1 else first_k
chart = splitting_chart(res, k=k, arch=arch)
# Streamlit's default autosize ('fit') squashes charts with a discrete axis; keep Altair's size
st.altair_chart(
    chart.properties(autosize=alt.AutoSizeParams(type="fit-x", contains="padding")), width="stretch"
)

st.subheader("Detected splits")
firsts = first_splits(res)
if firsts:
    for s in firsts:
        st.markdown(f"- {split_reading(s, res['positive'])}")
else:
    st.caption("No split detected at these latent sizes.")
sf = splitting_view.splits_at(res, arch, k)
if sf.empty:
    if firsts:
        st.caption(
            f"No split detected among the {arch} models with K = {k}; the splits above are at other K."
        )
else:
    st.caption(f"Every split detected among the {arch} models with K = {k}:")
    st.dataframe(sf, hide_index=True)
    options = splitting_view.child_options(sf)
    pick = st.selectbox("Open a child latent", list(options), index=None, placeholder="choose a child")
    if pick:
        common.open_latent_page(*options[pick])
with st.expander("All tracked models"):
    st.dataframe(tracks, hide_index=True)
