"""Browser fixtures: Debian's Chromium driven by Playwright's Python package.

The browser is the system's (``/usr/bin/chromium``, installed by ``scripts/test`` through
apt when missing); Playwright never downloads one. Every test gets a fresh dev node and
bridge on 127.0.0.1 (the root conftest's ``live_bridge``) and fresh browser contexts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import requests

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -r requirements-dev.txt)")

from browser_support import Trader  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Debian's chromium is not installed (scripts/test installs it with apt-get when run as root)")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path) -> Iterator:
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def new_trader(browser, live_bridge) -> Iterator:
    """Factory: ``new_trader(name, width=1280)`` opens a fresh browser context (its own
    storage, like a separate browser window of a different person) on the page."""
    contexts = []

    def make(name: str, width: int = 1280, height: int = 900) -> Trader:
        context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        trader = Trader(context.new_page(), live_bridge, name)
        trader.open()
        return trader

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def stream_available(live_bridge) -> bool:
    """Whether this bridge serves GET /api/stream yet (the page falls back to polling)."""
    with requests.get(f"{live_bridge}/api/stream", params={"pair": "RTC/USDC"}, stream=True, timeout=5) as response:
        return response.status_code == 200
