"""Steering (paper III-D, Eqs. 1-3): set a latent to a value, decode, and watch delta_s move.

The slider sits in an st.fragment, so moving it reruns only the fragment: one vectorised
SteeringSession.steer call (core.analysis.steering) plus the chart and tables."""

from __future__ import annotations

import altair as alt
import streamlit as st

from core.dashboard import steering_view
from core.dashboard.cache_keys import content_key
from core.dashboard.tasks import Task, defined_tasks
from core.errors import VoxSAEError
from core.sae.catalog import get_model
from pages import common

ws = common.current_ws()
model = common.current_model(ws)
ss = st.session_state
st.title("Steering")
st.caption(
    "delta_s = cos(x, centroid of positives) - cos(x, centroid of negatives), on SAE reconstructions. "
    "a > 0 is the paper's direction (positives set to -a, negatives to +a); a < 0 reverses it."
)

tasks = defined_tasks(ws)
if not tasks:
    st.info("No labelled attribute to steer (the workspace needs e.g. language es/en or class music/voice).")
    st.stop()
titles = [t.title for t in tasks]
if ss.get("steer_attr") not in titles:
    ss["steer_attr"] = titles[0]
c = st.columns([2, 1, 2])
common.state_widget(c[0].selectbox, "Attribute", titles, key="steer_attr")
task = tasks[titles.index(ss["steer_attr"])]
d_sae = get_model(ws, model).d_sae


@st.cache_resource(show_spinner="Encoding the task's samples (once)...", max_entries=8)
def _session(root: str, content: str, model: str, task: Task):
    return steering_view.steering_session(common.open_ws_by_root(root), model, task)


try:
    session = _session(str(ws.root), content_key(ws, model), model, task)
except VoxSAEError as exc:
    st.error(str(exc))
    st.stop()

default_latent = steering_view.default_latent(ws, model, task)
if ss.get("steer_latent") is not None and not 0 <= int(ss["steer_latent"]) < d_sae:
    st.warning(
        f"{model} has no latent {int(ss['steer_latent'])} (its latents are 0-{d_sae - 1}); "
        "showing the identified one."
    )
    ss["steer_latent"] = None
if ss.get("steer_latent") is None:
    ss["steer_latent"] = default_latent if default_latent is not None else 0
common.state_widget(
    c[1].number_input,
    "Latent",
    min_value=0,
    max_value=d_sae - 1,
    step=1,
    key="steer_latent",
    help=f"identified latent for {task.positive}: {default_latent}" if default_latent is not None else None,
)
latent = int(ss["steer_latent"])
pos, neg = session.class_names
mode = c[2].radio("Samples", steering_view.sample_modes(session), horizontal=True)
ids, chosen = None, ()
if mode == steering_view.CHOSEN_SEGMENTS:
    ids = steering_view.test_segment_ids(ws, session)
    chosen = st.multiselect("Segments (test split)", list(ids), default=list(ids[:5]), max_selections=200)
mask = steering_view.sample_mask(session, mode, ids, chosen)
if ids is not None and not mask.any():
    st.info("Choose at least one segment.")
    st.stop()

ss["steer_value"], value_warning = steering_view.slider_value(
    ss.get("steer_value", steering_view.DEFAULT_VALUE)
)
if value_warning:
    st.warning(value_warning)


@st.fragment
def live() -> None:
    value = common.state_widget(
        st.slider, "a (value the latent is set to)", *steering_view.SLIDER_RANGE, step=0.05, key="steer_value"
    )
    st.query_params["steer_value"] = str(value)
    res = steering_view.steer_signed(session, latent, value, mask)
    dist, means = steering_view.steering_frames(res)
    left, right = st.columns([3, 2])
    with left:
        chart = (
            alt.Chart(dist)
            .transform_density("delta_s", groupby=["class", "when"], as_=["delta_s", "density"], steps=120)
            .mark_area(opacity=0.45)
            .encode(
                x=alt.X("delta_s:Q", title="delta_s"),
                y=alt.Y("density:Q", stack=None),
                color=alt.Color("class:N", scale=alt.Scale(domain=[pos, neg], range=["#d62728", "#1f77b4"])),
                row=alt.Row("when:N", sort=["before", "after"], title=None),
            )
            .properties(height=150)
        )
        st.altair_chart(chart, width="stretch")
    with right:
        st.markdown("**Means (Tables III-IV)**")
        st.table(steering_view.means_table(means))  # one column per class: readable at any width
        for label, change in steering_view.speaker_changes(means):
            st.metric(label, change)


live()
