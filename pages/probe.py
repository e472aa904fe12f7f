"""Probe a clip: upload audio (size-limited by .streamlit/config.toml) or pick a catalogue segment;
see its active latents with their labels and its nearest segments."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from core.dashboard import views as dashboard
from core.errors import VoxSAEError
from pages import common

ws = common.current_ws()
model = common.current_model(ws)
ss = st.session_state
st.title("Probe a clip")

src = st.radio("Clip", ["pick a segment", "upload audio"], horizontal=True, key="probe_source")
embedding = None
exclude = None
if src == "upload audio":
    up = st.file_uploader(
        "Audio file (wav, flac, ogg, mp3, ...)",
        type=["wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aiff", "au"],
        key="probe_upload",
    )
    if up is None:
        st.stop()
    st.audio(up.getvalue())
    from core.audio.read import load_audio

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("upload" + Path(up.name).suffix.lower())
        path.write_bytes(up.getvalue())
        try:
            audio = load_audio(path)
            with st.spinner(f"Embedding with {ws.embedder}..."):
                embedding = dashboard.embed_clip(ws, audio)
        except VoxSAEError as exc:
            st.error(str(exc).replace(str(path), up.name))
            st.stop()
else:
    ids = ws.segments["segment_id"]
    if ss.get("probe_segment") not in set(ids):
        ss["probe_segment"] = str(ids.iloc[0])
    common.state_widget(st.selectbox, "Segment", ids, key="probe_segment")
    row = int(ids.index[ids == ss["probe_segment"]][0])
    common.audio_player(ws, ss["probe_segment"])
    embedding = ws.embeddings[row]
    exclude = row

idx = common.latent_index(ws, model)
try:
    res = dashboard.probe_embedding(
        ws,
        model,
        embedding,
        labels=common.labels_for(ws, model),
        stats=None if idx is None else idx.stats,
        exclude_row=exclude,
    )
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
            ss["latent"] = int(res.latents.iloc[rows[0]]["latent"])
            st.switch_page("pages/latents.py")
        st.caption("Click a row to open the latent.")
with right:
    st.subheader("Nearest segments")
    meta = [c for c in res.nearest.columns if c not in ("row", "source", "start_s", "end_s", "duration_s")]
    for _, r in res.nearest.head(6).iterrows():
        c = st.columns([1, 1])
        with c[0]:
            common.audio_player(ws, r["segment_id"])
        shown = [k for k in meta if k == "cosine" or (pd.notna(r[k]) and str(r[k]).strip())]
        c[1].markdown(" · ".join(f"{k}: `{r[k]:.3f}`" if k == "cosine" else f"{k}: `{r[k]}`" for k in shown))
