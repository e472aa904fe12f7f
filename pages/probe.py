"""Probe a clip: pick a catalogue segment, upload audio (size-limited by .streamlit/config.toml) or
record from the microphone; see its active latents with their labels and associations and its
nearest segments. An upload and a recording take one path (core.dashboard.probe.embed_bytes)."""

from __future__ import annotations

import streamlit as st

from core.constants import SAMPLE_RATE
from core.dashboard import probe
from core.errors import VoxSAEError
from pages import common

ws = common.current_ws()
model = common.current_model(ws)
ss = st.session_state
st.title("Probe a clip")

idx = common.latent_index(ws, model)
try:
    labels = common.labels_for(ws, model)
except VoxSAEError as exc:  # e.g. a labels.sqlite that is not a database: probe without names
    st.warning(f"Labels are not shown: {exc}")
    labels = None
context = {"labels": labels, "stats": None if idx is None else idx.stats}
src = st.radio("Clip", ["pick a segment", "upload audio", "record"], horizontal=True, key="probe_source")
try:
    if src == "record":
        rec = st.audio_input(
            "Record a clip",
            key="probe_recording",
            sample_rate=SAMPLE_RATE,  # the rate the embedders read: nothing to resample
            help=f"{probe.MIN_UPLOAD_S:g} s to {probe.MAX_UPLOAD_S / 60:g} min; press the microphone, "
            "speak (or play music), press stop",
        )
        if rec is None:
            probe.warm_embedder(ws)  # its weights load while the user records, not after
            st.stop()
        with st.spinner(f"Embedding with {ws.embedder}..."):
            clip = probe.embed_recording(ws, rec.getvalue())
        st.caption(probe.pieces_caption(clip))
        res = probe.probe_embedding(ws, model, clip.embedding, **context)
    elif src == "upload audio":
        # no `type=` filter: Streamlit would refuse another type with an exception box before this
        # script runs; probe.embed_upload refuses it with one message instead
        up = st.file_uploader(
            f"Audio file ({', '.join(probe.UPLOAD_TYPES)})",
            key="probe_upload",
            help=f"{probe.MIN_UPLOAD_S:g} s to {probe.MAX_UPLOAD_S / 60:g} min of audio, "
            f"at most {probe.MAX_UPLOAD_BYTES // 2**20} MB",
        )
        if up is None:
            st.stop()
        with st.spinner(f"Embedding with {ws.embedder}..."):
            clip = probe.embed_upload(ws, up.name, up.getvalue())
        st.audio(up.getvalue())  # only what decoded as audio is played back
        st.caption(probe.pieces_caption(clip))
        res = probe.probe_embedding(ws, model, clip.embedding, **context)
    else:
        ids = probe.segment_choices(ws)
        # a select box needs a listed id; an unknown id typed in the text box is said (not replaced)
        if not ss.get("probe_segment") or (
            ids is not None and not probe.known_segment(ws, ss["probe_segment"])
        ):
            ss["probe_segment"] = str(ws.segments["segment_id"].iloc[0])
        if ids is not None:
            common.state_widget(st.selectbox, "Segment", ids, key="probe_segment")
        else:
            common.state_widget(st.text_input, f"Segment id (one of {len(ws):,})", key="probe_segment")
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
        st.markdown(probe.active_summary(res.latents))
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
