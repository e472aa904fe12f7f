"""Labeling: name, description, tags and confidence for any latent (SQLite, WAL, with history),
label suggestions from core.analysis.suggestions beside the form, CSV/JSON export and import."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from core.dashboard import labeling_view
from core.dashboard.cache_keys import content_key
from core.errors import VoxSAEError
from core.labels.store import LabelConflict
from core.sae.catalog import get_model
from pages import common

ws = common.current_ws()
model = common.current_model(ws)
ss = st.session_state
store = common.label_store(str(ws.root))
d_sae = get_model(ws, model).d_sae
author = (ss.get("author") or "").strip() or "anonymous"

st.title(f"Label latents of {model}")
if ss.get("_label_flash"):
    st.success(ss.pop("_label_flash"))
if ss.get("latent") is not None and not 0 <= int(ss["latent"]) < d_sae:
    st.warning(
        f"{model} has no latent {int(ss['latent'])} (its latents are 0-{d_sae - 1}); showing latent 0."
    )
    ss["latent"] = None
if ss.get("latent") is None:
    ss["latent"] = 0
latent = common.state_widget(
    st.number_input, "Latent", min_value=0, max_value=d_sae - 1, step=1, key="latent"
)
latent = int(latent)
try:
    current = store.get(model, latent)
except VoxSAEError as exc:  # e.g. a labels.sqlite that is not a database
    st.error(str(exc))
    st.stop()
version_key = f"_label_version_{model}_{latent}"
if version_key not in ss:
    ss[version_key] = current.version if current else 0


@st.cache_data(show_spinner=False, max_entries=16)
def _suggestions(root: str, content: str, model: str):
    from core.analysis.suggestions import load_suggestions

    return load_suggestions(common.open_ws_by_root(root), model)


form_col, side = st.columns([3, 2])
with form_col:
    if current:
        st.caption(
            f"Current label v{current.version} by **{current.author or 'anonymous'}**, "
            f"{dt.datetime.fromtimestamp(current.updated_at):%Y-%m-%d %H:%M:%S}"
        )
    else:
        st.caption("This latent has no label yet.")
    fk = f"{model}_{latent}_{ss.get(version_key, 0)}"
    with st.form(f"label_form_{fk}"):
        name = st.text_input("Name", value=current.name if current else "", key=f"name_{fk}", max_chars=200)
        description = st.text_area(
            "Description", value=current.description if current else "", key=f"desc_{fk}", height=100
        )
        tags = st.text_input(
            "Tags (separated by ;)", value="; ".join(current.tags) if current else "", key=f"tags_{fk}"
        )
        confidence = st.slider(
            "Confidence",
            0.0,
            1.0,
            value=float(current.confidence) if current else 0.5,
            step=0.05,
            key=f"conf_{fk}",
        )
        overwrite = st.checkbox("Overwrite a newer label saved meanwhile", value=False, key=f"ow_{fk}")
        submitted = st.form_submit_button("Save label", type="primary")
    if submitted:
        try:
            saved = store.save(
                model,
                latent,
                name,
                description,
                tags,
                confidence,
                author,
                expected_version=None if overwrite else ss[version_key],
                known_models={model: d_sae},
            )
            ss[version_key] = saved.version
            ss["_label_flash"] = f"Saved label '{saved.name}' for latent {latent} (v{saved.version})."
            st.rerun()
        except LabelConflict as exc:
            st.warning(
                f"{exc}. Their label: **{exc.current.name}**. Your text is kept in the history; "
                "tick 'Overwrite' and save again to replace theirs, or reload to see theirs."
            )
            if st.button("Load the newer label"):
                ss[version_key] = exc.current.version
                st.rerun()
        except VoxSAEError as exc:
            st.error(str(exc))

with side:
    st.subheader("Suggestions")
    sugg = _suggestions(str(ws.root), content_key(ws, model), model)
    if sugg is None:
        st.caption("No suggestions computed for this model (`python -m core analyze`).")
    else:
        lines = labeling_view.suggestion_lines(sugg, latent)
        if not lines:
            st.caption("No attribute value is detected by this latent.")
        for line in lines:
            st.markdown(f"- {line}")
    st.page_link("pages/latents.py", label="Open this latent's page", icon=":material/open_in_new:")

st.subheader("History of this latent")
hist = store.history(model, latent)
if hist:
    st.dataframe(labeling_view.history_frame(hist), hide_index=True)
else:
    st.caption("no saves yet")

st.subheader("All labels of this model")
labels = store.for_model(model)
if labels:
    st.dataframe(labeling_view.labels_frame(labels), hide_index=True)
else:
    st.caption("no labels yet")

st.subheader("Export and import")
c = st.columns(3)
c[0].download_button("Export CSV", store.export_csv(), file_name=f"labels-{ws.name}.csv", mime="text/csv")
c[1].download_button(
    "Export JSON", store.export_json(), file_name=f"labels-{ws.name}.json", mime="application/json"
)
# no `type=` filter: Streamlit would refuse another type with an exception box before this script
# runs; import_text refuses it (by its extension) with one message instead
upload = st.file_uploader("Import labels (CSV or JSON)", key="label_import", help=labeling_view.IMPORT_RULES)
if upload is not None and st.button("Import", key="do_import"):
    known = labeling_view.known_models(ws)
    try:
        report = store.import_text(
            upload.getvalue(),
            labeling_view.import_format(upload.name),
            author=author,
            known_models=known,
            where=upload.name,
        )
    except VoxSAEError as exc:
        st.error(f"Nothing imported: {exc}")
    else:
        (st.warning if report.errors else st.success)(labeling_view.import_message(report))
        if report.errors:
            st.dataframe(labeling_view.import_errors_frame(report), hide_index=True)
