"""The real dashboard in a real headless Chromium (Debian's /usr/bin/chromium via Playwright).

Starts `streamlit run app.py` on a free 127.0.0.1 port against a workspace built here, then: opens
a latent and finds an <audio> element with a source; moves the steering slider and sees the means
change; saves a label, restarts the server and finds the label still there. On the embedded
default (built small), records hold music through Chromium's fake microphone on the probe page and
finds the identified music latent among the active ones. A screenshot of every page goes to
tests/.artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.request
from pathlib import Path

import pytest
from dashboard_ws import DashboardServer

from core.dashboard.chromium import CHROMIUM, fake_microphone, launch

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / ".artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"Debian's chromium is not installed ({CHROMIUM})"
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from dashboard_ws import build_workspace

    root = tmp_path_factory.mktemp("browser")
    old = os.environ.get("VOXSAE_DATA")
    ws = build_workspace(root, "dash")
    from core.dashboard.browse import load_index

    stats = load_index(ws, "topk-L32-K4").stats
    live = int(stats.sort_values("density", ascending=False)["latent"].iloc[0])
    if old is not None:
        os.environ["VOXSAE_DATA"] = old
    if ARTIFACTS.exists():  # the default-workspace test (maybe on another worker) keeps its own
        for p in [*ARTIFACTS.glob("[0-9]*.png"), *ARTIFACTS.glob("*.log")]:
            p.unlink()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    srv = DashboardServer(root, ARTIFACTS / "streamlit-dash.log")
    srv.live_latent = live
    srv.start().wait_ready(60)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def playwright_session():
    """One sync_playwright() per test module: a second one in the same thread while the first is
    open refuses to start ("Sync API inside the asyncio loop")."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_session):
    b = launch(playwright_session)
    yield b
    b.close()


def _open(page, server, path: str, text: str) -> None:
    page.goto(server.url(path))
    page.get_by_text(text, exact=False).first.wait_for(timeout=60_000)
    _settle(page)


def _settle(page) -> None:
    """Wait until Streamlit has finished the run (no 'running' status widget)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000
    )
    page.wait_for_timeout(300)


def _move_steering_slider(page, key: str, presses: int) -> tuple[str, str]:
    """Press `key` on the steering slider; (means table before, after), waiting until it changed."""
    table = page.locator("[data-testid='stTable']").first
    before = table.inner_text()
    page.get_by_role("slider").first.focus()
    for _ in range(presses):
        page.keyboard.press(key)
    _settle(page)
    page.wait_for_function(
        "(b) => { const t = document.querySelector('[data-testid=\"stTable\"]'); return t && t.innerText !== b; }",
        arg=before,
        timeout=30_000,
    )
    _settle(page)
    return before, table.inner_text()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_dashboard_in_chromium(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)

    _open(page, server, "overview", "Workspace dash")
    assert page.get_by_text("NMSE against K").count() >= 1
    _shot(page, "1-overview")

    _open(page, server, "latents", "Latents of")
    _shot(page, "2-latent-browser")

    # a latent page: audio elements with a source (cut server-side from the catalogue)
    _open(page, server, f"latents?model=topk-L32-K4&latent={server.live_latent}", "Top-activating segments")
    audio = page.locator("audio")
    audio.first.wait_for(state="attached")
    src = audio.first.get_attribute("src")
    assert src and "/media/" in src, src
    with urllib.request.urlopen(server.url(src) if src.startswith("/") else src) as r:
        assert r.read(4) == b"RIFF"
    assert (
        f"latent={server.live_latent}" in page.url and "model=topk-L32-K4" in page.url
    )  # the view is in the URL
    _shot(page, "3-latent-page")
    page.get_by_text("UMAP of the embeddings").first.scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    _shot(page, "3b-latent-page-lower")

    _open(page, server, "grid", "Precision / recall grid")
    _shot(page, "4-grid")
    # a click on a heatmap cell opens that model's top latent (Altair selection -> on_select)
    chart = page.locator("[data-testid='stVegaLiteChart']").first
    chart.wait_for()
    page.wait_for_timeout(500)
    box = chart.locator("canvas, svg").first.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.35)
    page.get_by_text("Top-activating segments").first.wait_for(timeout=30_000)
    assert "/latents" in page.url and "latent=" in page.url, page.url
    _open(page, server, "splitting", "Feature splitting")
    _shot(page, "5-splitting")

    # steering: move the slider, the means table changes
    _open(page, server, "steering", "Means (Tables III-IV)")
    before, after = _move_steering_slider(page, "ArrowRight", 10)
    assert after != before
    assert re.search(r"1\.5", page.url), page.url  # steer_value follows the slider into the URL
    _shot(page, "6-steering")

    _open(page, server, "probe", "Probe a clip")
    page.get_by_text("Active latents of").first.wait_for()
    _shot(page, "7-probe")

    # labeling: save a label, restart the server, it is still there
    _open(page, server, f"labeling?latent={server.live_latent}", "Label latents of")
    page.get_by_label("Your name (for labels)").fill("browser-test")
    page.get_by_label("Your name (for labels)").press("Enter")
    _settle(page)
    page.get_by_label("Name", exact=True).fill("Spanish female voices")
    page.get_by_label("Description").fill("saved from Chromium")
    page.get_by_role("button", name="Save label").click()
    page.get_by_text("Saved label 'Spanish female voices'").wait_for()
    _settle(page)
    _shot(page, "8-labeling")

    server.stop()
    server.start().wait_ready(60)
    _open(page, server, f"labeling?latent={server.live_latent}", "Label latents of")
    page.get_by_text("Current label v1 by").first.wait_for()
    assert page.get_by_label("Name", exact=True).input_value() == "Spanish female voices"
    _open(page, server, f"latents?latent={server.live_latent}", "Top-activating segments")
    assert page.get_by_text("Spanish female voices").count() >= 1
    _shot(page, "9-latent-page-after-restart")
    page.close()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    """The embedded default built small by the same commands `make demo` runs."""
    from core.cli import main as cli
    from core.democorpus import build as demo_corpus

    root = tmp_path_factory.mktemp("browser-default")
    ws, built = demo_corpus.build(str(root / "demo"), scale=0.05, seed=7, jobs=2, progress=False)
    assert built
    path = str(ws.root)
    assert cli(["train", "--workspace", path, "--latents", "32,64", "--k", "4,8", "--epochs", "5"]) == 0
    assert cli(["analyze", "--workspace", path]) == 0
    assert cli(["dashboard-cache", "--workspace", path]) == 0  # a real UMAP fit, stored
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for p in ARTIFACTS.glob("default-*.png"):
        p.unlink()
    srv = DashboardServer(root, ARTIFACTS / "streamlit-demo.log", workspace="demo")
    srv.start().wait_ready(60)
    yield srv
    srv.stop()


def test_default_workspace_in_chromium(default_server, browser):
    """demo-corpus -> train -> analyze -> dashboard-cache -> every view a user opens first."""
    server = default_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    _open(page, server, "overview", "Workspace demo")
    assert page.get_by_text("NMSE against K").count() >= 1  # the models table is a canvas grid
    _shot(page, "default-1-overview")

    # the grid names the default tasks; its first cell opens a latent page with playable audio
    _open(page, server, "grid", "Precision / recall grid")
    assert page.get_by_text("language: es vs en").count() >= 1
    assert page.get_by_text("class: music vs voice").count() >= 1
    _shot(page, "default-2-grid")

    _open(page, server, "latents?model=topk-L64-K8", "Latents of topk-L64-K8")
    page.get_by_label("Open latent id").fill("0")
    page.get_by_label("Open latent id").press("Enter")
    page.get_by_text("Top-activating segments").first.wait_for()
    _settle(page)
    audio = page.locator("audio")
    audio.first.wait_for(state="attached")
    src = audio.first.get_attribute("src")
    with urllib.request.urlopen(server.url(src) if src.startswith("/") else src) as r:
        assert r.read(4) == b"RIFF"  # cut from the stored 8 kHz FLAC call, served as WAV
    page.get_by_text("UMAP of the embeddings").first.scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    assert page.get_by_text("UMAP of the embeddings").count() >= 1
    _shot(page, "default-3-latent-page")

    _open(page, server, "steering?model=topk-L64-K8", "Means (Tables III-IV)")
    before, after = _move_steering_slider(page, "ArrowLeft", 6)
    assert after != before
    _shot(page, "default-4-steering")
    page.close()


def _hold_music_wav(path: Path, seconds: float = 12.0) -> Path:
    """Newly composed hold music (a seed the corpus did not use) through a telephone line, as the
    default's calls carry it: the clip the fake microphone plays."""
    import numpy as np
    import soundfile as sf

    from core.audio.channel import telephone_channel
    from core.constants import SAMPLE_RATE
    from core.democorpus.music import hold_music

    music = telephone_channel(hold_music(np.random.default_rng(12345), seconds), SAMPLE_RATE)
    sf.write(str(path), 0.8 * music / np.abs(music).max(), SAMPLE_RATE, subtype="PCM_16")
    return path


def test_probe_a_recording_from_the_microphone(default_server, playwright_session, tmp_path):
    """Chromium's fake microphone plays hold music; the probe page records it (st.audio_input),
    and the latent `analyze` identified for class=music fires on it."""
    from core.analysis.identification import load_identification, model_result
    from core.workspace.workspace import Workspace

    model = "topk-L64-K8"
    ws = Workspace(default_server.data_root / "demo")
    music = model_result(load_identification(ws, "class", "music", ["voice"]), model)["latent"]
    wav = _hold_music_wav(tmp_path / "hold-music.wav")
    browser = launch(playwright_session, fake_microphone(wav))
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        _open(page, default_server, f"probe?model={model}", "Probe a clip")
        page.get_by_text("record", exact=True).click()
        record = page.get_by_role("button", name="Record", exact=True)
        record.wait_for()
        record.click()
        page.wait_for_timeout(8_000)  # 8 s of the 12 s clip
        page.get_by_role("button", name="Stop recording", exact=True).click()
        summary = page.get_by_text(re.compile(r"^Active: ")).first
        summary.wait_for()
        _settle(page)
        caption = page.get_by_text(re.compile(r" s clip: ")).first.inner_text()
        assert 6.0 <= float(caption.split(" s clip: ")[0]) <= 10.0, caption  # the recording's length
        parts = [part.split()[0] for part in summary.inner_text().removeprefix("Active: ").split(" · ")]
        active = [int(part) for part in parts if part.isdigit()]  # "12 (class=music)" -> 12
        assert music in active, (music, summary.inner_text())
        assert page.locator("audio").count() >= 6  # its nearest segments' players
        _shot(page, "default-5-probe-recording")
    finally:
        browser.close()


def test_browser_artifacts_are_ignored():
    text = (REPO / ".gitignore").read_text()
    assert "/tests/.artifacts/" in text
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists()
