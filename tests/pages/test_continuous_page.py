"""The Continuous page through AppTest: on a workspace whose SAE bins the pitch it shows the
verdict, the figure and the table with links; picking another attribute shows its (negative)
verdict; a workspace without continuous attributes says so."""

from __future__ import annotations

import numpy as np
import pytest
from _continuous_synth import MODEL, pitch_workspace
from streamlit.testing.v1 import AppTest
from test_pages import app

from core.workspace.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    import streamlit as st

    st.cache_data.clear()  # AppTests of one process share Streamlit's caches
    st.cache_resource.clear()
    monkeypatch.setenv("VOXSAE_DATA", str(tmp_path))
    monkeypatch.setenv("VOXSAE_WORKSPACE", "p")
    monkeypatch.setenv("VOXSAE_START_PAGE", "continuous")  # restored after the test
    return tmp_path


def _run(**params) -> AppTest:
    return app("continuous", **params)  # test_pages' runner: the page as a URL would open it


def test_the_page_shows_the_binning_latents_in_order(data_root):
    pitch_workspace(data_root / "p", "bins")
    at = _run()
    assert at.title[0].value == "Continuous attributes: is there binning?"
    assert at.selectbox(key="_w_cont_attr").value == "f0_median_hz"  # the measured attribute first
    assert [s.value for s in at.success] and at.success[0].value.startswith("binning: yes, 4 latents")
    table = at.dataframe[0].value
    assert table["latent"].tolist()[:4] == [0, 1, 2, 3] and table["binning"].tolist()[:4] == [True] * 4
    assert table["link"].iloc[0] == f"latents?ws=p&model={MODEL}&latent=0"
    lows = table["range_lo"].tolist()[:4]
    assert lows == sorted(lows)
    assert any("300 segments (feature split)" in c.value for c in at.caption)
    # the figure: the activations and the ranges of the figure's latents
    spec = at.get("vega_lite_chart")[0].proto.spec
    assert "80 % range" in spec and "f0_median_hz" in spec
    # another attribute, and a link that names it
    at.selectbox(key="_w_cont_attr").set_value("speech_rate").run()
    assert at.warning[0].value.startswith("binning: no")
    assert _run(cont_attr="speech_rate").selectbox(key="_w_cont_attr").value == "speech_rate"


def test_a_constant_attribute_is_one_message(data_root):
    pitch_workspace(data_root / "p", "bins")
    at = _run(cont_attr="level")
    assert [e.value for e in at.error] == [
        "workspace p: attribute 'level' is constant (3) on the 300 analysed segments (feature split): "
        "nothing to correlate"
    ]


def test_a_workspace_without_continuous_attributes_says_so(data_root):
    ws = pitch_workspace(data_root / "p", "bins")
    seg = ws.segments.drop(columns=["level", "f0_median_hz", "speech_rate"])
    Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000)
    at = _run()
    assert "has no continuous attributes" in at.info[0].value
