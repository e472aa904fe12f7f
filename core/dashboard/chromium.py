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


def launch(playwright):
    """A headless Chromium browser from a started sync_playwright()."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(ARGS), headless=True)
