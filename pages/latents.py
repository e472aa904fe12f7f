"""Latent browser (sortable, filterable table) and a latent's page (histogram, audible top and
quantile segments, attribute breakdown, nearest latents by decoder cosine, its matches in the
other SAEs it was compared with (core.dashboard.universality_view), UMAP)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core.dashboard import browse
from core.dashboard.projection import activation_map, load_projection
from core.dashboard.universality_view import latent_matches
from core.errors import VoxSAEError
from pages import common

ws = common.current_ws()
model = common.current_model(ws)
index = common.ensure_latent_index(ws, model)
ss = st.session_state


def _open_latent(latent: int | None) -> None:
    ss["latent"] = latent
    ss["_browse_gen"] = ss.get("_browse_gen", 0) + 1  # fresh table selection / picker next time


def _label_stamp() -> tuple | None:
    """The label store's version stamp, or None (with a warning) when labels.sqlite cannot be read:
    the latents are still shown, without names."""
    try:
        return common.label_store(str(ws.root)).version_stamp()
    except VoxSAEError as exc:
        st.warning(f"Labels are not shown: {exc}")
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _table(root: str, fingerprint: str, model: str, label_stamp: tuple | None, index_id: int) -> pd.DataFrame:
    ws = common.open_ws_by_root(root)
    labels = common.labels_for(ws, model) if label_stamp is not None else None
    return browse.latent_table(common.latent_index(ws, model), labels)


@st.cache_data(show_spinner=False, max_entries=256)
def _page(root: str, fingerprint: str, model: str, latent: int, index_id: int) -> browse.LatentPage:
    """index_id: identity of the cached index object, so a rebuilt index (retrained model) misses."""
    ws = common.open_ws_by_root(root)
    return browse.latent_page(
        ws, common.latent_index(ws, model), latent, decoder=browse.decoder_directions(ws, model)
    )


@st.cache_data(show_spinner=False)
def _projection(root: str, fingerprint: str):
    return load_projection(common.open_ws_by_root(root))


def browser() -> None:
    st.title(f"Latents of {model}")
    table = _table(str(ws.root), ws.fingerprint, model, _label_stamp(), id(index))
    c = st.columns([3, 2, 1, 1])
    if not 0.0 <= float(ss.get("min_density") or 0.0) <= 100.0:  # a hand-edited link; False for NaN
        st.warning(f"Min density {ss['min_density']} is not a percentage; showing every density.")
        ss["min_density"] = 0.0
    query = common.state_widget(c[0].text_input, "Filter (label, association or latent id)", key="q")
    min_density = common.state_widget(
        c[1].number_input,
        "Min density (%)",
        min_value=0.0,
        max_value=100.0,
        step=0.1,
        key="min_density",
        format="%.2f",
    )
    hide_dead = c[2].checkbox("Hide dead", value=True)
    labelled_only = c[3].checkbox("Labelled only", value=False)
    view = browse.filter_latents(
        table, query, min_density_pct=min_density or 0.0, hide_dead=hide_dead, labelled_only=labelled_only
    )
    st.caption(
        f"{len(view)} of {len(table)} latents. Click a row to open the latent; click a header to sort."
    )
    event = st.dataframe(
        view[
            [
                "latent",
                "label",
                "density",
                "max_activation",
                "mean_activation",
                "association",
                "association_f1",
            ]
        ],
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=f"latent_table_{model}_{ss.get('_browse_gen', 0)}",
        column_config={
            "density": st.column_config.ProgressColumn(
                "density", format="%.3f", min_value=0.0, max_value=1.0
            ),
            "max_activation": st.column_config.NumberColumn("max act.", format="%.3f"),
            "mean_activation": st.column_config.NumberColumn("mean act.", format="%.3f"),
            "association": st.column_config.TextColumn("strongest association"),
            "association_f1": st.column_config.NumberColumn("F1", format="%.2f"),
        },
        height=560,
    )
    rows = event.selection.rows if event is not None else []
    if rows:
        _open_latent(int(view.iloc[rows[0]]["latent"]))
        st.rerun()
    c = st.columns([1, 3])
    pick = c[0].number_input(
        "Open latent id",
        min_value=0,
        max_value=index.d_sae - 1,
        value=None,
        step=1,
        key=f"pick_{ss.get('_browse_gen', 0)}",
    )
    if pick is not None:
        _open_latent(int(pick))
        st.rerun()


def segment_list(frame: pd.DataFrame, quantile: bool = False) -> None:
    meta_cols = browse.metadata_columns(frame)
    for _, row in frame.iterrows():
        c = st.columns([2, 3])
        with c[0]:
            common.audio_player(ws, row["segment_id"])
        c[1].markdown(browse.segment_caption(row, meta_cols, quantile=quantile))


def matches_in_other_saes(latent: int) -> None:
    """Its one-to-one matches in the SAEs `universality` compared this model with (stored results)."""
    st.subheader("Matches in other SAEs")
    matches = latent_matches(ws, model, latent)
    if matches.empty:
        st.caption(
            f"Not compared with another SAE yet: `python -m core universality --workspace {ws.name} "
            f"--models {model},OTHER [--model-workspace W2]`."
        )
        return
    st.dataframe(
        matches[["model", "workspace", "latent", "correlation", "decoder_cosine", "link"]],
        hide_index=True,
        key=f"matches_{model}_{latent}",
        column_config={
            "latent": st.column_config.NumberColumn("matched latent", format="%d"),
            "correlation": st.column_config.NumberColumn("activation corr.", format="%.3f"),
            "decoder_cosine": st.column_config.NumberColumn("decoder cosine", format="%.3f"),
            "link": st.column_config.LinkColumn("open", display_text="open latent"),
        },
    )


def latent_view(latent: int) -> None:
    try:
        page = _page(str(ws.root), ws.fingerprint, model, int(latent), id(index))
    except VoxSAEError as exc:
        st.error(str(exc))
        st.button("Back to the list", on_click=_open_latent, args=(None,))
        return
    readable = _label_stamp() is not None
    label = common.label_store(str(ws.root)).get(model, latent) if readable else None
    c = st.columns([5, 1, 1], vertical_alignment="center")
    c[0].title(f"Latent {latent}" + (f" · {label.name}" if label else ""))
    c[1].button("List", on_click=_open_latent, args=(None,), icon=":material/arrow_back:", help="all latents")
    c[2].page_link("pages/labeling.py", label="Label it", icon=":material/label:")
    if label and label.description:
        st.caption(label.description)
    m = st.columns(4)
    m[0].metric("Density", f"{100 * page.density:.2f} %")
    m[1].metric("Segments active", f"{page.count:,}")
    m[2].metric("Max activation", f"{page.max_activation:.3f}")
    stats = common.latent_index(ws, model).stats.iloc[latent]
    with m[3]:
        st.caption("Strongest association")
        if stats["association"]:
            st.markdown(
                f"**{stats['association']}**  \nF1 {stats['association_f1']:.2f} · precision "
                f"{100 * stats['association_precision']:.0f}% · recall {100 * stats['association_recall']:.0f}%"
            )
        else:
            st.markdown("-")
    if page.count == 0:
        st.info("This latent never fires on this corpus (dead).")
        return
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Activation density")
        hist = (
            alt.Chart(page.histogram)
            .mark_bar()
            .encode(
                x=alt.X("bin_start:Q", bin="binned", title="activation"),
                x2="bin_end:Q",
                y=alt.Y("count:Q", title="segments"),
                tooltip=["bin_start", "bin_end", "count"],
            )
            .properties(height=220)
        )
        st.altair_chart(hist, width="stretch")
    with right:
        st.subheader("Attribute breakdown (top 100)")
        bd = page.breakdown
        if bd.empty:
            st.caption("no categorical attributes")
        else:
            chart = (
                alt.Chart(bd)
                .mark_bar()
                .encode(
                    x=alt.X("top_share:Q", title="share of top activations", axis=alt.Axis(format="%")),
                    y=alt.Y("value:N", title=None),
                    row=alt.Row(
                        "attribute:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")
                    ),
                    color=alt.Color("attribute:N", legend=None),
                    tooltip=[
                        "attribute",
                        "value",
                        "top_count",
                        alt.Tooltip("top_share:Q", format=".1%"),
                        alt.Tooltip("base_share:Q", format=".1%"),
                        alt.Tooltip("lift:Q", format=".2f"),
                    ],
                )
                .resolve_scale(y="independent")
                .properties(width=260)
            )
            st.altair_chart(chart)
    st.subheader("Top-activating segments")
    segment_list(page.top)
    with st.expander("Samples across the activation quantiles", expanded=True):
        segment_list(page.quantiles, quantile=True)
    left, right = st.columns([2, 3])
    with left:
        st.subheader("Nearest latents (decoder cosine)")
        near = page.nearest.assign(
            label=browse.label_names(
                common.labels_for(ws, model) if readable else None, page.nearest["latent"]
            )
        )
        for _, r in near.iterrows():
            cc = st.columns([1, 1, 3])
            cc[0].button(
                f"{int(r['latent'])}",
                key=f"near_{int(r['latent'])}",
                on_click=_open_latent,
                args=(int(r["latent"]),),
            )
            cc[1].write(f"{r['cosine']:.3f}")
            cc[2].write(r["label"] or "")
        matches_in_other_saes(latent)
    with right:
        st.subheader("UMAP of the embeddings")
        proj = _projection(str(ws.root), ws.fingerprint)
        if proj is None:
            st.caption("The map is not computed yet (`python -m core dashboard-cache`).")
            if st.button("Compute the map now"):
                from core.dashboard.projection import compute_projection

                bar = st.progress(0.0)
                compute_projection(ws, progress=lambda f, t: bar.progress(min(1.0, f), text=t))
                _projection.clear()
                st.rerun()
        else:
            frame = activation_map(proj, common.latent_index(ws, model).column(latent))  # active on top
            chart = (
                alt.Chart(frame)
                .mark_circle(size=12, opacity=0.7)
                .encode(
                    x=alt.X("x:Q", axis=None),
                    y=alt.Y("y:Q", axis=None),
                    color=alt.Color("activation:Q", scale=alt.Scale(scheme="viridis")),
                    tooltip=["row", alt.Tooltip("activation:Q", format=".3f")],
                )
                .properties(height=360)
            )
            st.altair_chart(chart, width="stretch")


latent = ss.get("latent")
if latent is not None and not (0 <= int(latent) < index.d_sae):  # e.g. a hand-edited link
    st.warning(
        f"{model} has no latent {int(latent)} (its latents are 0-{index.d_sae - 1}); showing the list."
    )
    latent = ss["latent"] = None
if latent is None:
    browser()
else:
    latent_view(int(latent))
