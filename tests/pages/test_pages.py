"""Every page's logic through streamlit.testing.v1.AppTest, on a small workspace built here."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from dashboard_ws import build_workspace
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    old = os.environ.get("VOXSAE_DATA")
    build_workspace(root, "dash")
    os.environ["VOXSAE_DATA"] = old or ""
    return root


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches():
    """Every AppTest in this process shares Streamlit's global st.cache_data / st.cache_resource
    (one server would too): clear them so no test sees what an earlier test in this worker cached
    (a test that corrupted and restored a file, another data root)."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield


@pytest.fixture()
def ws(ws_root, monkeypatch):
    """The dashboard's workspace; data_root() points at it during the test."""
    from core.workspace.workspace import Workspace

    monkeypatch.setenv("VOXSAE_DATA", str(ws_root))
    monkeypatch.setenv("VOXSAE_WORKSPACE", "dash")
    monkeypatch.setenv("VOXSAE_START_PAGE", "overview")  # restored after the test
    return Workspace.open(ws_root / "dash")


def app(page: str = "overview", **params) -> AppTest:
    """The app opened on `page` (as a URL /page?params would open it)."""
    os.environ["VOXSAE_START_PAGE"] = page
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_overview(ws):
    at = app()
    assert at.title and at.title[0].value == "Workspace dash", (at.main, at.sidebar)
    assert at.metric[0].value == f"{len(ws.segments):,}"
    models = at.dataframe[0].value
    assert list(models["model"]) == ["topk-L16-K2", "topk-L16-K4", "topk-L32-K2", "topk-L32-K4"]
    assert at.selectbox(key="_w_ws").value == "dash"
    assert at.query_params["ws"] == ["dash"] or at.query_params["ws"] == "dash"


def test_query_params_reopen_a_latent(ws):
    at = app("latents", model="topk-L16-K2", latent=3)
    assert at.selectbox(key="_w_model").value == "topk-L16-K2"
    assert at.title[0].value.startswith("Latent 3")
    qp = {k: at.query_params[k] for k in at.query_params}
    assert "3" in str(qp.get("latent")) and "topk-L16-K2" in str(qp.get("model"))


def test_latent_browser_and_page(ws):
    at = app("latents")
    assert at.title[0].value == "Latents of topk-L32-K4"
    table = at.dataframe[0].value
    assert {"latent", "label", "density", "max_activation", "association"} <= set(table.columns)
    assert (table["density"] > 0).all()  # dead hidden by default
    latent = int(table.sort_values("density", ascending=False)["latent"].iloc[0])
    at.session_state["latent"] = latent
    at.run()
    assert not at.exception
    assert at.title[0].value.startswith(f"Latent {latent}")
    audio = at.get("audio")
    assert len(audio) >= 10  # top + quantile segments, each with a player
    assert at.get("vega_lite_chart"), "histogram / breakdown / UMAP charts"
    near = [b for b in at.button if b.key and b.key.startswith("near_")]
    assert near
    near[0].click().run()
    assert at.title[0].value.startswith(f"Latent {near[0].label}")


def test_labeling_save_conflict_and_export(ws):
    a = app("labeling")
    b = app("labeling")
    a.text_input(key="_w_author").input("ana").run()
    fk = "topk-L32-K4_0_0"
    a.text_input(key=f"name_{fk}").input("Spanish")
    a.text_input(key=f"tags_{fk}").input("lang; es")
    next(x for x in a.button if x.label == "Save label").click().run()
    assert any("Saved label 'Spanish'" in s.value for s in a.success)
    with sqlite3.connect(ws.labels_path) as con:
        assert con.execute("select name, author, tags from labels").fetchall() == [
            ("Spanish", "ana", '["lang", "es"]')
        ]
    # tab b opened the form before a saved: its save is refused, nothing is lost
    b.text_input(key=f"name_{fk}").input("Other idea")
    next(x for x in b.button if x.label == "Save label").click().run()
    assert any("after you opened it" in w.value for w in b.warning)
    with sqlite3.connect(ws.labels_path) as con:
        assert con.execute("select name from labels").fetchall() == [("Spanish",)]
        assert {r[0] for r in con.execute("select name from label_history")} == {"Spanish", "Other idea"}
    assert len(a.get("download_button")) == 2
    # the browser's table shows the label
    at = app("latents")
    table = at.dataframe[0].value
    assert "Spanish" in set(table["label"])


def test_grid_page_and_opening_a_cell(ws):
    at = app("grid")
    assert at.title[0].value == "Precision / recall grid"
    assert len(at.get("vega_lite_chart")) == 2
    import json

    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert "precision_cell" in json.dumps(spec)  # the click selection is wired
    assert "95% CI" in json.dumps(spec)  # the tooltip field
    headline = [m.value for m in [*at.success, *at.warning]]
    assert len(headline) == 1 and "lower bounds (95% CI)" in headline[0] and "test speakers" in headline[0]
    intervals = next(d.value for d in at.dataframe if "precision [95% CI]" in d.value.columns)
    assert "topk-L16-K2" in set(intervals["model"]) and len(intervals) == len(set(intervals["model"]))
    assert (intervals["test speakers"] > 0).all()
    pick = at.selectbox[-1]
    option = next(o for o in pick.options if o.startswith("topk-L16-K2"))
    pick.select(option).run()
    # the page switched to the latent (AppTest does not render the target of st.switch_page)
    assert at.session_state["model"] == "topk-L16-K2"
    assert not at.exception


def test_splitting_page(ws):
    at = app("splitting")
    assert at.title[0].value == "Feature splitting"
    assert at.get("vega_lite_chart")
    assert any(s.value == "Detected splits" for s in at.subheader)


def test_steering_slider_changes_means(ws):
    at = app("steering")
    assert at.title[0].value == "Steering"
    means1 = at.table[0].value.copy()  # rows: quantities, columns: classes
    assert list(means1.columns) == ["es", "en"]  # the paper's first task: language es vs en
    at.slider(key="_w_steer_value").set_value(2.5).run()
    means2 = at.table[0].value
    assert list(means1.loc["mean delta_s after"]) != list(means2.loc["mean delta_s after"])
    assert list(means1.loc["mean delta_s before"]) == list(means2.loc["mean delta_s before"])
    assert list(means2.loc["v_phi set to"]) == ["-2.5000", "+2.5000"]
    at.slider(key="_w_steer_value").set_value(0.0).run()
    m0 = at.table[0].value
    assert list(m0.loc["mean delta_s before"]) == list(m0.loc["mean delta_s after"])
    at.radio[0].set_value(at.radio[0].options[1]).run()
    assert list(at.table[0].value.columns) == ["es"]
    assert not at.exception


def test_probe_a_segment(ws):
    at = app("probe")
    assert at.title[0].value == "Probe a clip"
    lat = at.dataframe[0].value
    assert {"latent", "activation", "label"} <= set(lat.columns) and len(lat) >= 1
    assert (lat["activation"].diff().dropna() <= 0).all()
    assert len(at.get("audio")) >= 2
    at.selectbox(key="_w_probe_segment").select("seg0100").run()
    assert not at.exception


def test_probe_a_segment_by_id_above_the_select_box_limit(ws, monkeypatch):
    """A workspace with more than SEGMENT_LIST_MAX segments gets a text box for the id: a known id
    is probed, an unknown one is said and not replaced."""
    from core.dashboard import probe

    monkeypatch.setattr(probe, "SEGMENT_LIST_MAX", 10)
    at = app("probe")
    assert not at.exception
    box = at.text_input(key="_w_probe_segment")
    assert box.value == "seg0000"
    box.set_value("seg0100").run()
    assert not at.exception and not at.error
    assert at.session_state["probe_segment"] == "seg0100" and at.dataframe
    at.text_input(key="_w_probe_segment").set_value("nope").run()
    assert not at.exception
    assert any("no segment 'nope'" in e.value for e in at.error)
    assert at.session_state["probe_segment"] == "nope"


def test_no_workspace_message(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXSAE_DATA", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    assert any("No workspace found" in w.value for w in at.warning)


def test_probe_an_uploaded_clip_core_path(ws):
    """What the probe page does with an upload: load -> embed with the workspace's embedder -> probe."""
    from core.audio.read import load_audio, save_wav
    from core.dashboard import probe

    t = np.arange(3 * 16_000) / 16_000
    path = ws.root.parent / "upload.wav"
    save_wav(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    emb = probe.embed_clip(ws, load_audio(path))
    assert emb.shape == (ws.dim,) and np.isfinite(emb).all()
    res = probe.probe_embedding(ws, "topk-L32-K4", emb, n_nearest=3)
    assert len(res.nearest) == 3 and (res.nearest["cosine"].diff().dropna() <= 0).all()
    assert (res.latents["activation"] > 0).all()


def test_dashboard_cache_command(ws):
    """`python -m core dashboard-cache` builds what is missing and leaves the rest."""
    import shutil

    from core.cli import main
    from core.dashboard.browse import load_index
    from core.sae.catalog import list_models

    shutil.rmtree(ws.cache_dir / "browse")
    assert load_index(ws, "topk-L16-K2") is None
    assert main(["dashboard-cache", "--workspace", str(ws.root), "--no-umap"]) == 0
    assert all(load_index(ws, m.name) is not None for m in list_models(ws))


def test_links_to_missing_latents_or_models_say_so(ws):
    at = app("latents", model="topk-L32-K4", latent=999)
    assert any("has no latent 999" in w.value and "0-31" in w.value for w in at.warning), at.warning
    assert at.title[0].value == "Latents of topk-L32-K4"  # the list instead
    at = app("steering", model="topk-L32-K4", steer_latent=999)
    assert any("has no latent 999" in w.value for w in at.warning)
    assert 0 <= at.number_input(key="_w_steer_latent").value < 32
    at = app("labeling", model="topk-L32-K4", latent=-3)
    assert any("has no latent -3" in w.value for w in at.warning)
    at = app("overview", model="topk-L99-K9")
    assert any("has no model 'topk-L99-K9'" in w.value for w in at.sidebar.warning)


# -- hostile input through the pages (issue "Trust") ------------------------------------------
def _probe_upload(name: str, data: bytes) -> AppTest:
    at = app("probe")
    at.radio(key="probe_source").set_value("upload audio").run()
    at.file_uploader(key="probe_upload").set_value((name, data, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("noise.wav", "unreadable or corrupt audio"),
        ("silent.wav", "all silence"),
        ("zero-hz.wav", "corrupt audio header"),
    ],
)
def test_probe_page_refuses_a_bad_upload_with_one_message(ws, name, why):
    from dashboard_ws import hostile_uploads

    data = next(d for n, d, _ in hostile_uploads() if n == name)
    at = _probe_upload(name, data)
    assert [e.value for e in at.error] == [e.value for e in at.error if e.value.startswith(f"{name}: ")]
    assert len(at.error) == 1 and why in at.error[0].value
    assert not at.get("audio") and not at.dataframe  # nothing played, nothing probed


def test_probe_page_probes_a_good_upload(ws):
    from dashboard_ws import tone, wav_of

    at = _probe_upload("clip.wav", wav_of(tone(2.0)))
    assert not at.error
    lat = at.dataframe[0].value
    assert len(lat) >= 1 and (lat["activation"] > 0).all()
    assert len(at.get("audio")) >= 2  # the upload itself + its nearest segments


def _probe_record(data: bytes) -> AppTest:
    """The probe page given `data` as its microphone recording (AppTest's st.audio_input value)."""
    at = app("probe")
    at.radio(key="probe_source").set_value("record").run()
    at.audio_input(key="probe_recording").set_value(("2025-01-01T10-00_audio.wav", data, "audio/wav")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_probe_page_probes_a_recording(ws):
    """A 6 s recording: cut like ingested audio, embedded with the workspace's resemblyzer, its
    active latents (the same as the core path gives) named, its nearest segments playable."""
    from dashboard_ws import wav_of

    from core.dashboard import probe

    t = np.arange(6 * 16_000) / 16_000
    clip = (
        0.3 * np.sin(2 * np.pi * (180 + 30 * np.sin(2 * np.pi * 0.7 * t)) * t) * (0.6 + 0.4 * np.sin(8 * t))
    )
    data = wav_of(clip)
    at = _probe_record(data)
    assert not at.error
    model = at.subheader[0].value.removeprefix("Active latents of ")
    expected = probe.embed_recording(ws, data)
    assert len(expected.pieces) == 1 and expected.pieces[0].duration_s == pytest.approx(6.0, abs=0.05)
    want = probe.probe_embedding(ws, model, expected.embedding)
    lat = at.dataframe[0].value
    assert list(lat["latent"]) == list(want.latents["latent"]) and len(lat) >= 1
    assert np.allclose(lat["activation"], want.latents["activation"])
    assert any(c.value == probe.pieces_caption(expected) for c in at.caption)
    assert any(m.value.startswith(f"Active: **{int(lat['latent'].iloc[0])}**") for m in at.markdown)
    assert len(at.get("audio")) >= 6  # its nearest segments' players


@pytest.mark.parametrize(
    ("audio", "why"),
    [
        (None, "the recording: empty file (0 bytes)"),
        ("hiss", "the recording: silence: no sound found"),
        ("click", "the recording: 0.20 s of audio"),
    ],
)
def test_probe_page_refuses_a_bad_recording_with_one_message(ws, audio, why):
    from dashboard_ws import tone, wav_of

    data = {
        None: b"",
        "hiss": wav_of(0.0003 * np.random.default_rng(0).standard_normal(48_000)),
        "click": wav_of(tone(0.2)),
    }[audio]
    at = _probe_record(data)
    assert [e.value for e in at.error] == [at.error[0].value] and at.error[0].value.startswith(why)
    assert not at.dataframe and not at.get("audio")  # nothing probed, nothing played


def test_latent_page_shows_its_matches_in_other_saes(ws):
    from core.analysis.universality import universality

    at = app("latents", model="topk-L32-K4", latent=_live_latent(ws, "topk-L32-K4"))
    hint = [c.value for c in at.caption if "universality" in c.value]
    assert hint == [
        "Not compared with another SAE yet: `python -m core universality --workspace dash "
        "--models topk-L32-K4,OTHER [--model-workspace W2]`."
    ]
    res = universality(ws, "topk-L16-K2", "topk-L32-K2")
    pair = res["pairs"][0]
    at = app("latents", model="topk-L16-K2", latent=pair["latent_a"])
    shown = next(d.value for d in at.dataframe if "decoder_cosine" in d.value.columns)
    assert shown.to_dict("records")[0] == {
        "model": "topk-L32-K2",
        "workspace": "dash",
        "latent": pair["latent_b"],
        "correlation": pytest.approx(pair["correlation"]),
        "decoder_cosine": pytest.approx(pair["decoder_cosine"]),
        "link": f"latents?ws=dash&model=topk-L32-K2&latent={pair['latent_b']}",
    }
    assert not [c for c in at.caption if "Not compared" in c.value]
    # and from the other side
    at = app("latents", model="topk-L32-K2", latent=pair["latent_b"])
    shown = next(d.value for d in at.dataframe if "decoder_cosine" in d.value.columns)
    assert shown.loc[0, "model"] == "topk-L16-K2" and shown.loc[0, "latent"] == pair["latent_a"]


def _live_latent(ws, model: str) -> int:
    from core.dashboard.browse import load_index

    stats = load_index(ws, model).stats
    return int(stats.sort_values("density", ascending=False)["latent"].iloc[0])


def test_labeling_page_imports_good_rows_and_lists_the_rejected(ws):
    import json

    rows = [
        {"model": "topk-L16-K2", "latent": 3, "name": "imported ok"},
        {"model": "topk-L16-K2", "latent": True, "name": "a bool id"},
        {"model": "topk-L16-K2", "latent": 2**70, "name": "past int64"},
        {"model": "topk-L16-K2", "latent": 16, "name": "past d_sae (16 latents)"},
        {"model": "topk-L16-K2", "latent": 4, "name": {"nested": "dict"}},
        {"model": "topk-L16-K2", "latent": 5, "name": "nan", "confidence": float("nan")},
    ]
    at = app("labeling")
    at.file_uploader(key="label_import").set_value(
        ("labels.json", json.dumps(rows).encode(), "application/json")
    )
    at.run()
    next(b for b in at.button if b.key == "do_import").click().run()
    assert not at.exception
    assert [w.value for w in at.warning] == [
        "Imported 1 label(s); skipped 5 row(s) with a problem (listed below, nothing of them was saved)."
    ]
    problems = at.dataframe[-1].value
    assert list(problems["line"]) == [2, 3, 4, 5, 6]
    assert "not an integer: True" in problems["problem"].iloc[0]
    assert "past the largest latent id" in problems["problem"].iloc[1]
    assert "out of range for topk-L16-K2 (0..15)" in problems["problem"].iloc[2]
    assert "name is not text: a dict" in problems["problem"].iloc[3]
    assert "confidence is not a number: nan" in problems["problem"].iloc[4]
    with sqlite3.connect(ws.labels_path) as con:
        assert con.execute("select latent, name from labels where model = 'topk-L16-K2'").fetchall() == [
            (3, "imported ok")
        ]


def test_labeling_page_refuses_deeply_nested_json_whole(ws):
    at = app("labeling")
    deep = ("[" * 50_000 + "]" * 50_000).encode()
    at.file_uploader(key="label_import").set_value(("deep.json", deep, "application/json")).run()
    next(b for b in at.button if b.key == "do_import").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Nothing imported: deep.json: JSON nested too deeply to read"]


@pytest.fixture()
def corrupt_labels(ws):
    """labels.sqlite replaced by junk for one test, then put back."""
    path = ws.labels_path
    sides = [path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    with sqlite3.connect(path) as con:  # fold the write-ahead log into the file before saving it
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    saved = path.read_bytes()
    for extra in sides:
        extra.unlink(missing_ok=True)
    path.write_bytes(b"junk, not SQLite " * 100)
    yield path
    for extra in sides:  # whatever SQLite left beside the junk belongs to the junk
        extra.unlink(missing_ok=True)
    path.write_bytes(saved)


def test_a_corrupt_label_store_is_one_message_and_pages_still_open(ws, corrupt_labels):
    at = app("labeling")
    assert [e.value for e in at.error] == [f"cannot read {corrupt_labels}: file is not a database"]
    at = app("latents")
    assert at.title[0].value == "Latents of topk-L32-K4" and len(at.dataframe[0].value) > 0
    assert any(f"Labels are not shown: cannot read {corrupt_labels}" in w.value for w in at.warning)
    at = app("probe")
    assert at.dataframe and any("Labels are not shown" in w.value for w in at.warning)


def test_labeling_page_refuses_a_file_that_is_not_csv_or_json(ws):
    at = app("labeling")
    assert at.title and at.title[0].value.startswith("Label latents of"), (
        [e.value for e in at.error],
        [w.value for w in at.warning],
    )
    assert not at.error, [e.value for e in at.error]
    at.file_uploader(key="label_import").set_value(("labels.txt", b"model,latent,name\n", "text/plain")).run()
    next(b for b in at.button if b.key == "do_import").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Nothing imported: labels.txt: unknown label file format 'txt' (use csv or json)"
    ]


@pytest.mark.parametrize("value", ["nan", "inf", "99", "-1e308"])
def test_a_link_with_a_steering_value_off_the_slider_says_so(ws, value):
    at = app("steering", steer_value=value)
    assert any("is not a value the slider offers (-3 to 3); showing a = 1" in w.value for w in at.warning)
    assert at.slider(key="_w_steer_value").value == 1.0
    assert list(at.table[0].value.loc["v_phi set to"]) == ["-1.0000", "+1.0000"]


@pytest.mark.parametrize("value", ["nan", "-5", "1e400"])
def test_a_link_with_a_density_that_is_not_a_percentage_says_so(ws, value):
    at = app("latents", min_density=value)
    assert any("is not a percentage; showing every density" in w.value for w in at.warning)
    assert len(at.dataframe[0].value) > 0  # the list, not an empty filter


def test_unusable_models_are_named_with_their_reason(ws):
    """The model picker never drops a model silently (the Trust issue, item 8): a model folder that
    cannot be used gets a visible warning naming it and why and is not offered; one whose
    metrics.json is corrupt stays offered, with a warning that its metrics are not shown."""
    models = ws.models_dir
    saved = {
        p: p.read_bytes()
        for p in (models / "topk-L16-K2" / "cfg.json", models / "topk-L32-K2" / "metrics.json")
    }
    weights = models / "topk-L16-K4" / "sae_weights.safetensors"
    saved[weights] = weights.read_bytes()
    try:
        (models / "topk-L16-K2" / "cfg.json").write_text("[]")
        (models / "topk-L32-K2" / "metrics.json").write_text("{nmse: 0.1")
        weights.write_bytes(saved[weights][:200])  # truncated
        at = app()
        warnings = sorted(w.value for w in at.sidebar.warning)
        assert warnings == [
            "model topk-L16-K2 skipped: cfg.json: corrupt SAE config (a JSON list, not an object)",
            "model topk-L16-K4 skipped: sae_weights.safetensors: weights do not match cfg.json "
            "(truncated, corrupt or from another model)",
            "model topk-L32-K2: metrics.json: corrupt metrics (not JSON: Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1)); its training metrics are not shown",
        ]
        assert at.selectbox(key="_w_model").options == ["topk-L32-K2", "topk-L32-K4"]
        table = at.dataframe[0].value
        assert list(table["model"]) == ["topk-L32-K2", "topk-L32-K4"]
        assert table["nmse"].isna().tolist() == [True, False]  # its metrics are not shown, the model is
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


def test_a_latent_pages_players_do_not_open_the_workspace_again(ws, monkeypatch):
    from core.workspace.workspace import Workspace

    at = app("latents")
    latent = int(at.dataframe[0].value.sort_values("density", ascending=False)["latent"].iloc[0])
    at.session_state["latent"] = latent
    opened = []
    real = Workspace.__init__

    def counted(self, root):
        opened.append(str(root))
        real(self, root)

    monkeypatch.setattr(Workspace, "__init__", counted)
    at.run()
    assert not at.exception and len(at.get("audio")) >= 10
    assert len(opened) <= 3, opened  # the sidebar's and the page's open_ws (workspace_key), not one a player


def test_the_servers_startup_objects_are_frozen_once(ws_root):
    import subprocess
    import sys

    code = (
        "import gc, json, os, sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file(sys.argv[1], default_timeout=60); at.run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "frozen = gc.get_freeze_count()\n"
        "at.run()\n"
        "import pandas\n"
        "tracked = {id(o) for o in gc.get_objects()}\n"
        "print(json.dumps([frozen, gc.get_freeze_count(), id(pandas.DataFrame) in tracked]))\n"
    )
    env = dict(os.environ, VOXSAE_DATA=str(ws_root), VOXSAE_WORKSPACE="dash", VOXSAE_START_PAGE="overview")
    out = subprocess.run(
        [sys.executable, "-c", code, APP], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    frozen, after_rerun, dataframe_tracked = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert frozen > 50_000 and after_rerun <= frozen  # pandas, Streamlit, the catalogue's imports; once
    assert not dataframe_tracked  # a frozen object is not scanned by the collections after each run
