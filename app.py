"""VoxSAE dashboard: `streamlit run app.py` (or `make demo`).

Sidebar: workspace and model pickers (default workspace: $VOXSAE_WORKSPACE, else demo). The current
view (workspace, model, latent, page parameters) lives in the URL query parameters, so a copied
link reopens it. Pages in pages/ only show what core/ computes.
"""

from __future__ import annotations

import os

import streamlit as st

from pages import common

st.set_page_config(page_title="VoxSAE", page_icon=":material/graphic_eq:", layout="wide")
common.freeze_startup_objects()
common.init_state()

# the page a bare URL opens (VOXSAE_START_PAGE: tests start each AppTest on the page they test)
PAGE_SPECS = {
    "overview": ("Overview", ":material/dashboard:"),
    "latents": ("Latents", ":material/view_list:"),
    "labeling": ("Labeling", ":material/label:"),
    "grid": ("Grid", ":material/grid_on:"),
    "splitting": ("Splitting", ":material/call_split:"),
    "steering": ("Steering", ":material/tune:"),
    "continuous": ("Continuous", ":material/show_chart:"),
    "probe": ("Probe a clip", ":material/mic:"),
}
START = os.environ.get("VOXSAE_START_PAGE", "overview")
START = START if START in PAGE_SPECS else "overview"
PAGES = {
    key: st.Page(f"pages/{key}.py", title=title, icon=icon, url_path=key, default=key == START)
    for key, (title, icon) in PAGE_SPECS.items()
}
page = st.navigation(list(PAGES.values()))
page_key = next((k for k, p in PAGES.items() if p is page or p.url_path == page.url_path), START)

with st.sidebar:
    st.markdown("### VoxSAE")
    names = common.workspace_names()
    ss = st.session_state
    if ss.get("ws") not in names:
        default = common.default_workspace()
        ss["ws"] = default if default in names else (names[0] if names else None)
    if names:
        common.state_widget(st.selectbox, "Workspace", names, key="ws")
        try:
            ws = common.open_ws(ss["ws"])
            common.warn_segments_table(ws)
            models = common.model_names(ws)
        except Exception as exc:  # a broken workspace must not take the whole app down
            st.error(str(exc))
            models = []
        if ss.get("model") not in models:
            if ss.get("model") and models:  # a link to a model this workspace does not have
                st.warning(
                    f"workspace {ss['ws']} has no model {ss['model']!r}; showing {common.default_model(models)}"
                )
            ss["model"] = common.default_model(models)
        if models:
            common.state_widget(st.selectbox, "Model", models, key="model")
        else:
            st.caption("no trained models in this workspace")
    else:
        st.caption("no workspaces found")
    common.state_widget(st.text_input, "Your name (for labels)", key="author", placeholder="anonymous")

common.sync_query_params(page_key)
page.run()
