"""Headless Chromium for driving the real dashboard (tests/pages/test_browser.py and
bench/dashboard_speed.py): Debian's chromium through Playwright, launched with these flags
(no sandbox or GPU in containers; no network beyond the local server; no first-run work)."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def fake_microphone(wav) -> tuple[str, ...]:
    """Flags that make getUserMedia's microphone play the WAV file `wav` (in a loop) and grant
    access without asking: the probe page's recording, tested without a microphone."""
    return (
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
    )


def launch(playwright, extra_args=()):
    """A headless Chromium browser from a started sync_playwright() (`extra_args`: more flags,
    e.g. fake_microphone(wav))."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args], headless=True)
