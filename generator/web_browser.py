"""Driving the built web page from Python: the page served from a background thread, and headless Chromium.

The page's tests, ``benchmarks/onnx_speed.py``, ``benchmarks/web_sizes.py`` and ``scripts/web_screenshot.py`` use
these; Chromium is Debian's (``apt-get install chromium``), driven through Playwright.
"""

from __future__ import annotations

import os
import shutil
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from generator.web_server import SITE, address, make_server

# a test machine has no sandbox helper, no GPU and no network: keep Chromium from reaching out or waiting on them
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_chromium() -> str | None:
    """The path of an installed Chromium (or Chrome), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def launch_chromium(playwright):
    """Headless Chromium through a started ``sync_playwright()``; a clear error when none is installed."""
    executable = find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium found: install Debian's chromium (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)


def serve_in_background(root: str | os.PathLike = SITE) -> ThreadingHTTPServer:
    """The page folder ``root`` served on a free local port from a daemon thread; ``shutdown()`` stops it."""
    server = make_server(root, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def open_page(browser, server: ThreadingHTTPServer, image: str | os.PathLike, mask: str | os.PathLike,
              timeout_ms: int = 120_000):
    """A new tab of the page ``server`` serves, its model loaded and ``image`` and ``mask`` read in: ready for
    a click on #protect."""
    page = browser.new_page()
    page.goto(address(server))
    page.locator("body[data-model=ready]").wait_for(timeout=timeout_ms)
    for path, selector in ((image, "#image-input"), (mask, "#mask-input")):
        page.set_input_files(selector, str(path))
        page.locator("body[data-state=idle]").wait_for(timeout=timeout_ms)
    return page
