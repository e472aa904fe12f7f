"""Continuous: how a model's latents encode a continuous attribute (pitch, loudness, rate, ...) and
whether they bin it (paper V-D): activation against the attribute for the top latents, each
latent's 80 % range as a band, the verdict and the table (core.analysis.continuous)."""

from __future__ import annotations

import streamlit as st

from core.dashboard import continuous_view
from core.dashboard.cache_keys import content_key
from core.errors import VoxSAEError
from pages import common

ws = common.current_ws()
model = common.current_model(ws)
ss = st.session_state
st.title("Continuous attributes: is there binning?")
st.caption(
    "Each latent's Spearman correlation with the attribute (over all analysed segments and over those "
    "where it fires), and the binning test: the attribute cut into quantile bins, each latent's "
    "contiguous range holding 80 % of its activation. Binning: two or more latents with ordered, "
    "disjoint ranges covering most of the attribute."
)

attrs = continuous_view.attribute_choices(ws)
if not attrs:
    st.info(
        f"Workspace **{ws.name}** has no continuous attributes (numeric metadata columns such as "
        "f0_median_hz: ingest measures them, import-embeddings keeps numeric metadata columns)."
    )
    st.stop()
if ss.get("cont_attr") not in attrs:
    ss["cont_attr"] = attrs[0]
common.state_widget(st.selectbox, "Attribute", attrs, key="cont_attr")


@st.cache_data(show_spinner="Correlating latents with the attribute...", max_entries=32)
def _page(root: str, content: str, model: str, attribute: str):
    return continuous_view.page_data(common.open_ws_by_root(root), model, attribute)


try:
    data = _page(str(ws.root), content_key(ws, model), model, ss["cont_attr"])
except VoxSAEError as exc:
    common.show_error(exc)
    st.stop()
res = data.result
verdict = res.verdict()
(st.success if res.binning else st.warning)(verdict)
st.caption(
    f"{res.n_rows} segments ({res.rows_from}) where {res.attribute} is finite; {len(res.edges) - 1} bins. "
    + (
        f"{res.control_text()} (each speaker's values moved to another speaker's mean)."
        if res.control_text()
        else ""
    )
)
st.altair_chart(data.chart)
st.dataframe(
    data.table,
    hide_index=True,
    key=f"continuous_{model}_{res.attribute}",
    column_config={
        "latent": st.column_config.NumberColumn("latent", format="%d"),
        "n_active": st.column_config.NumberColumn("active on", format="%d"),
        "spearman": st.column_config.NumberColumn("Spearman", format="%.3f"),
        "spearman_active": st.column_config.NumberColumn("Spearman (active)", format="%.3f"),
        "range_lo": st.column_config.NumberColumn("range from", format="%.4g"),
        "range_hi": st.column_config.NumberColumn("range to", format="%.4g"),
        "mass_in_range": st.column_config.NumberColumn("mass in range", format="percent"),
        "mi": st.column_config.NumberColumn("MI (bits)", format="%.3f"),
        "link": st.column_config.LinkColumn("open", display_text="open latent"),
    },
)
options = {f"latent {int(j)}": int(j) for j in data.table["latent"]}
pick = st.selectbox("Open a latent", list(options), index=None, placeholder="choose a latent")
if pick:
    common.open_latent_page(model, options[pick])
