"""Overview: corpus summary, attribute breakdown, the models with NMSE / L0 / dead %, NMSE vs K."""

from __future__ import annotations

import altair as alt
import streamlit as st

from core.dashboard.cache_keys import content_key
from core.dashboard.overview import attribute_counts, models_table, nmse_by_k, workspace_summary
from pages import common


@st.cache_data(show_spinner=False)
def _summary(root: str, content: str) -> dict:
    return workspace_summary(common.open_ws_by_root(root))


ws = common.current_ws()
st.title(f"Workspace {ws.name}")
summary = _summary(str(ws.root), content_key(ws))
c = st.columns(4)
c[0].metric("Segments", f"{summary['segments']:,}")
c[1].metric("Hours", f"{summary['hours']:.1f}")
c[2].metric("Speakers", f"{summary.get('speakers', 0):,}")
c[3].metric(f"Embedder ({summary['dim']}-d)", summary["embedder"])

breakdown = attribute_counts(summary)
if breakdown:
    st.subheader("Attributes")
    cols = st.columns(min(4, len(breakdown)))
    for i, (attr, frame) in enumerate(breakdown.items()):
        chart = (
            alt.Chart(frame, title=attr)
            .mark_bar()
            .encode(
                x=alt.X("segments:Q"),
                y=alt.Y("value:N", sort="-x", title=None),
                tooltip=["value", "segments"],
            )
            .properties(height=alt.Step(22), autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
        )
        cols[i % len(cols)].altair_chart(chart, width="stretch")

st.subheader("Models")
table = models_table(ws)
if table.empty:
    st.info(f"No trained models yet: `python -m core train --workspace {ws.name}`.")
    st.stop()
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "training_rows": st.column_config.TextColumn(
            "trained on", help="train --rows: segments, windows or both"
        ),
        "nmse": st.column_config.NumberColumn("NMSE", format="%.4f"),
        "explained_variance": st.column_config.NumberColumn("explained var.", format="%.3f"),
        "l0": st.column_config.NumberColumn("L0", format="%.1f"),
        "dead_pct": st.column_config.NumberColumn("dead %", format="%.1f"),
        "pool": st.column_config.TextColumn(
            "pool", help="other workspaces whose training rows joined this model's (train --pool)"
        ),
    },
)
plot = nmse_by_k(table)
if not plot.empty:
    st.subheader("NMSE against K, per latent size")
    chart = (
        alt.Chart(plot)
        .mark_line(point=True)
        .encode(
            x=alt.X("k:O", title="K (active latents)"),
            y=alt.Y("nmse:Q", title="NMSE", scale=alt.Scale(zero=False)),
            color=alt.Color("d_sae:N", title="latents"),
            strokeDash=alt.StrokeDash("arch:N", title="architecture"),
            tooltip=["model", "arch", "d_sae", "k", alt.Tooltip("nmse:Q", format=".4f"), "l0", "dead_pct"],
        )
        .properties(height=320)
    )
    st.altair_chart(chart, width="stretch")
