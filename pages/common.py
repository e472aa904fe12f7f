"""Shared dashboard state: the current view (workspace, model, latent, page parameters), mirrored
in the URL query parameters so a copied link reopens it, and the cached loaders every page uses.

Models and stores are st.cache_resource (one per server); tables are st.cache_data. Nothing here
computes an analysis: it only calls core/.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import streamlit as st

from core.constants import DEFAULT_WORKSPACE, WORKSPACE_JSON, data_root
from core.errors import VoxSAEError


def _leave_pages_directory_mode() -> None:
    """Make a first request for /latents run through app.py (sidebar, state), not pages/latents.py alone.

    The only use of Streamlit's private API in the dashboard, kept here because no public way exists
    (streamlit 1.67, read in its source):
    - runtime/pages_manager.py: the first PagesManager of the process sets the class attribute
      `PagesManager.uses_pages_directory` to whether a pages/ folder sits beside the main script;
    - runtime/scriptrunner/script_runner.py: while it is True, every run executes `_mpa_v1` (a
      navigation over pages/*.py that runs the requested page script by itself) instead of app.py;
    - commands/navigation.py: only `st.navigation` sets it to False, and st.navigation is called by
      app.py, which such a run never reaches (calling it from a page instead left the page blank
      when tried);
    - config.py: the one option about it, `client.showSidebarNavigation`, only hides that navigation.
    The folder keeps its name pages/ (the user's choice), so the flag is flipped here and the run
    restarted through app.py. A fresh server without it answers /latents with the pages/ folder's
    navigation and "No workspace found"; tests/pages/test_browser.py's first request is /overview.
    This module is imported first by app.py and by every page, so it runs before any output."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without the flag
        return
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if st.runtime.exists():
            st.rerun()


_leave_pages_directory_mode()


def freeze_startup_objects() -> None:
    """Move what the server has imported (Streamlit, pandas, the model catalogue; not torch, which
    core.sae imports only when a page uses a model) into the collector's permanent generation, once
    per process. Streamlit runs a full collection after every script run (runner.postScriptGC);
    with those ~260k long-lived objects tracked it took 0.17-0.2 s a run on 10M segments (twice on
    a server's first page: the pages/ folder run, then app.py's); frozen, 0.02 s. Objects made
    later are collected as before; only cyclic garbage alive at this first call is never freed."""
    import gc

    if gc.get_freeze_count():
        return
    import pandas  # noqa: F401

    import core.sae.catalog  # noqa: F401

    gc.freeze()


# URL parameter -> type. Global ones belong to every page; the rest to the page that shows them.
GLOBAL_PARAMS = {"ws": str, "model": str}
PAGE_PARAMS = {
    "overview": {},
    "latents": {"latent": int, "q": str, "min_density": float},
    "labeling": {"latent": int},
    "grid": {"grid_attr": str},
    "splitting": {"split_attr": str},
    "steering": {"steer_attr": str, "steer_model": str, "steer_latent": int, "steer_value": float},
    "probe": {"probe_segment": str},
    "continuous": {"cont_attr": str},
}
ALL_PARAMS = {**GLOBAL_PARAMS, **{k: t for p in PAGE_PARAMS.values() for k, t in p.items()}}


# -- state <-> URL ---------------------------------------------------------------------------
def init_state() -> None:
    """First run of a session: copy the URL's parameters into session state. Every run: keep
    page parameters alive while their page is not shown (Streamlit drops unrendered widget keys)."""
    ss = st.session_state
    if not ss.get("_voxsae_init"):
        ss["_voxsae_init"] = True
        for key, typ in ALL_PARAMS.items():
            if key in st.query_params:
                raw = st.query_params.get(key)
                with contextlib.suppress(TypeError, ValueError):
                    ss[key] = typ(raw)
    for key in ALL_PARAMS:
        if key in ss:
            ss[key] = ss[key]


def sync_query_params(page_key: str) -> None:
    """Write the current view into the URL (global parameters + this page's)."""
    wanted = {}
    for key in [*GLOBAL_PARAMS, *PAGE_PARAMS.get(page_key, {})]:
        val = st.session_state.get(key)
        if val is not None and val != "":
            wanted[key] = str(val)
    current = {k: st.query_params.get(k) for k in st.query_params}
    if current != wanted:
        st.query_params.from_dict(wanted)


def state_widget(widget, label: str, *args, key: str, **kwargs):
    """A widget whose value lives in session_state[key] (the view), not in the widget's own key.

    The widget gets the key `_w_<key>`, is synced from the view before it renders and writes back on
    change, so the view survives page switches and programmatic changes (e.g. a grid click setting
    the model) without Streamlit's 'value set via Session State' conflicts.
    """
    ss = st.session_state
    wkey = f"_w_{key}"
    if key in ss and (wkey not in ss or ss[wkey] != ss[key]):
        ss[wkey] = ss[key]

    def _changed() -> None:
        ss[key] = ss[wkey]

    value = widget(label, *args, key=wkey, on_change=_changed, **kwargs)
    ss[key] = value
    return value


def open_latent_page(model: str | None, latent: int) -> None:
    """Switch to the latents page showing `latent` of `model` (None: of the current model)."""
    if model is not None:
        st.session_state["model"] = model
    st.session_state["latent"] = int(latent)
    st.switch_page("pages/latents.py")


# -- workspaces and models ---------------------------------------------------------------------
def workspace_names() -> list[str]:
    """Workspaces under data_root() (re-listed at most every 10 s)."""
    return _workspace_names(str(data_root()))


@st.cache_data(ttl=10, show_spinner=False)
def _workspace_names(root: str) -> list[str]:
    path = Path(root)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if (p / WORKSPACE_JSON).is_file())


def default_workspace() -> str:
    return os.environ.get("VOXSAE_WORKSPACE") or DEFAULT_WORKSPACE


def default_model(models: list[str]) -> str | None:
    """The paper's cell (topk-L200-K20) when the workspace has it, else the last listed."""
    if not models:
        return None
    from core.analysis.analyze import paper_model

    try:
        return paper_model(models) or models[-1]
    except Exception:  # pragma: no cover - an analyses module mid-change must not break the app
        return models[-1]


@st.cache_resource(show_spinner="Opening workspace...", max_entries=4)
def _open_ws(name: str, key: str):
    from core.dashboard import segments_table
    from core.workspace.workspace import Workspace

    ws = Workspace.open(name)
    segments_table.load(ws)  # the table once per server: the memory-mapped copy dashboard-cache wrote
    return ws


def open_ws(name: str):
    from core.dashboard.cache_keys import workspace_key

    return _open_ws(name, workspace_key(name))


def warn_segments_table(ws) -> None:
    """The stored segment-table copy's refusal, once per run (the sidebar's): said on the page,
    not only on the server's stderr, while the rows come from the parquet."""
    from core.dashboard import segments_table

    problem = segments_table.problem(ws)
    if problem:
        st.warning(problem)


def model_names(ws) -> list[str]:
    """The workspace's usable models, from the one model catalogue (core.sae.catalog: cfg.json
    reads); every model folder left out, or whose metrics cannot be read, gets a visible warning
    that names it and says why (the model picker never drops one silently)."""
    from core.sae.catalog import scan_models

    models, problems = scan_models(ws)
    for problem in problems:
        st.warning(problem.line().removeprefix("warning: "))
    return [m.name for m in models]


@st.cache_resource(show_spinner="Loading latent index...", max_entries=8)
def _latent_index(root: str, fingerprint: str, model: str, key: tuple[str, bool]):
    from core.dashboard.browse import load_index

    ws = open_ws_by_root(root)
    return load_index(ws, model)


def open_ws_by_root(root: str):
    from core.workspace.workspace import Workspace

    name = Path(root).name
    if Path(root).parent == data_root():
        return open_ws(name)
    return Workspace(Path(root))


def latent_index(ws, model: str):
    """The stored activation index of `model` (None when not built yet), cached per weights version."""
    from core.dashboard.cache_keys import index_key

    return _latent_index(str(ws.root), ws.fingerprint, model, index_key(ws, model))


def ensure_latent_index(ws, model: str):
    """The index, or a button that builds it (with progress) and then reruns."""
    idx = latent_index(ws, model)
    if idx is not None:
        return idx
    st.info(
        f"The activation index of **{model}** is not built yet for this corpus "
        "(`python -m core analyze` builds it; it is computed once and stored)."
    )
    if st.button("Build it now", key=f"build_index_{model}", type="primary"):
        from core.dashboard.browse import build_index

        bar = st.progress(0.0, text="encoding segments")
        try:
            build_index(ws, model, progress=lambda f, t: bar.progress(min(1.0, f), text=t))
        except VoxSAEError as exc:
            st.error(str(exc))
            st.stop()
        st.rerun()
    st.stop()


@st.cache_resource(show_spinner=False, max_entries=8)
def label_store(root: str):
    from core.labels.store import LabelStore
    from core.workspace.workspace import Workspace

    return LabelStore.for_workspace(Workspace(Path(root)))


def labels_for(ws, model: str) -> dict:
    return label_store(str(ws.root)).for_model(model)


@st.cache_data(show_spinner=False, max_entries=256)
def _segment_wav(_ws, root: str, content: str, segment_id: str) -> bytes:
    """Keyed on (root, content key of _ws, segment); _ws (not hashed) is the workspace opened
    with that key: not opened again for each of a page's players (5-10 ms each at 10M rows)."""
    from core.dashboard.playback import segment_wav

    return segment_wav(_ws, segment_id)


def audio_player(ws, segment_id: str) -> None:
    """st.audio of a catalogue segment (cut server-side); a caption when its audio is absent."""
    try:
        from core.dashboard.cache_keys import content_key

        st.audio(_segment_wav(ws, str(ws.root), content_key(ws), str(segment_id)), format="audio/wav")
    except VoxSAEError as exc:
        st.caption(f"no audio: {exc}")


# -- page helpers ---------------------------------------------------------------------------
def current_ws():
    """The selected workspace, or a message + stop when there is none."""
    name = st.session_state.get("ws")
    if not name:
        st.warning(
            f"No workspace found under {data_root()}. Build the demo with `make demo` or "
            "`python -m core demo-corpus`."
        )
        st.stop()
    try:
        return open_ws(name)
    except VoxSAEError as exc:
        st.error(str(exc))
        st.stop()


def current_model(ws) -> str:
    model = st.session_state.get("model")
    if not model:
        st.warning(
            f"Workspace **{ws.name}** has no trained models yet: `python -m core train --workspace {ws.name}`."
        )
        st.stop()
    return model


def show_error(exc: Exception) -> None:
    st.error(str(exc))
