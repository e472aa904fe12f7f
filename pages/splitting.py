"""Splitting: how subgroups move into and out of the top latent across latent sizes (paper Fig. 4),
with the detected splits (a smaller SAE's latent dividing among latents of a larger one)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core.analysis.splitting import (
    default_k,
    first_splits,
    load_splitting,
    split_reading,
    splits_frame,
    splitting_chart,
)
from core.dashboard import views as dashboard
from core.errors import VoxSAEError
from pages import common

ws = common.current_ws()
ss = st.session_state
st.title("Feature splitting")


@st.cache_data(show_spinner=False)
def _load(root: str, fingerprint: str, attribute: str, positive: str, negatives: tuple, stamp: float):
    try:
        return load_splitting(common.open_ws_by_root(root), attribute, positive, list(negatives))
    except VoxSAEError:
        return None


folder = ws.analyses_dir / "splitting"
stamp = max((p.stat().st_mtime for p in folder.glob("*.json")), default=0.0) if folder.is_dir() else 0.0
results = {}
for t in dashboard.defined_tasks(ws):
    r = _load(str(ws.root), ws.fingerprint, t.attribute, t.positive, t.negatives, stamp)
    if r is not None:
        results[t.title] = r
if not results:
    st.info(f"No splitting analysis computed yet: `python -m core analyze --workspace {ws.name}`.")
    st.stop()
titles = list(results)
if ss.get("split_attr") not in titles:
    ss["split_attr"] = titles[0]
common.state_widget(st.segmented_control, "Attribute", titles, key="split_attr")
res = results[ss["split_attr"] or titles[0]]
tracks = pd.DataFrame(res["tracks"])
archs = sorted(tracks["arch"].dropna().unique()) if not tracks.empty else []
c = st.columns(2)
arch = (
    c[0].radio("Architecture", archs, horizontal=True, index=archs.index("topk") if "topk" in archs else 0)
    if len(archs) > 1
    else (archs[0] if archs else None)
)
ks = sorted({int(k) for k in tracks[tracks["arch"] == arch]["k"].dropna()}) if arch else []
k0 = default_k(res)
k = (
    c[1].select_slider("K", ks, value=k0 if k0 in ks else (ks[0] if ks else None))
    if len(ks) > 1
    else (ks[0] if ks else None)
)
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
sf = splits_frame(res)
if not sf.empty:
    sf = sf[(sf["arch"] == arch) & ((sf["k"] == k) if k is not None else True)] if arch else sf
if sf.empty:
    if firsts:
        st.caption(
            f"No split detected among the {arch} models with K = {k}; the splits above are at other K."
        )
else:
    st.caption(f"Every split detected among the {arch} models with K = {k}:")
    st.dataframe(sf, hide_index=True)
    pick = st.selectbox(
        "Open a child latent",
        [f"{r.large_model} latent {int(r.child)} ({r.captures})" for r in sf.itertuples()],
        index=None,
        placeholder="choose a child",
    )
    if pick:
        r = sf.iloc[
            [f"{x.large_model} latent {int(x.child)} ({x.captures})" for x in sf.itertuples()].index(pick)
        ]
        st.session_state["model"] = r["large_model"]
        st.session_state["latent"] = int(r["child"])
        st.switch_page("pages/latents.py")
with st.expander("All tracked models"):
    st.dataframe(tracks, hide_index=True)
