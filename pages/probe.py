"""Probe a clip: upload audio (size-limited by .streamlit/config.toml) or pick a catalogue segment;
see its active latents with their labels and its nearest segments."""

from __future__ import annotations

import streamlit as st

from core.dashboard import probe
from core.errors import VoxSAEError
from pages import common

ws = common.current_ws()
model = common.current_model(ws)
ss = st.session_state
st.title("Probe a clip")

idx = common.latent_index(ws, model)
context = {"labels": common.labels_for(ws, model), "stats": None if idx is None else idx.stats}
src = st.radio("Clip", ["pick a segment", "upload audio"], horizontal=True, key="probe_source")
try:
    if src == "upload audio":
        up = st.file_uploader(
            "Audio file (wav, flac, ogg, mp3, ...)", type=list(probe.UPLOAD_TYPES), key="probe_upload"
        )
        if up is None:
            st.stop()
        st.audio(up.getvalue())
        with st.spinner(f"Embedding with {ws.embedder}..."):
            embedding = probe.embed_upload(ws, up.name, up.getvalue())
        res = probe.probe_embedding(ws, model, embedding, **context)
    else:
        ids = ws.segments["segment_id"]
        if ss.get("probe_segment") not in set(ids):
            ss["probe_segment"] = str(ids.iloc[0])
        common.state_widget(st.selectbox, "Segment", ids, key="probe_segment")
        common.audio_player(ws, ss["probe_segment"])
        res = probe.probe_segment(ws, model, ss["probe_segment"], **context)
except VoxSAEError as exc:
    st.error(str(exc))
    st.stop()

left, right = st.columns(2)
with left:
    st.subheader(f"Active latents of {model}")
    if res.latents.empty:
        st.caption("no latent fires on this clip")
    else:
        st.dataframe(
            res.latents, hide_index=True, on_select="rerun", selection_mode="single-row", key="probe_latents"
        )
        sel = ss.get("probe_latents")
        rows = sel.selection.rows if sel is not None else []
        if rows:
            common.open_latent_page(None, res.latents.iloc[rows[0]]["latent"])
        st.caption("Click a row to open the latent.")
with right:
    st.subheader("Nearest segments")
    for _, r in res.nearest.head(6).iterrows():
        c = st.columns([1, 1])
        with c[0]:
            common.audio_player(ws, r["segment_id"])
        c[1].markdown(probe.nearest_caption(r))
