"""How large an image the built web page protects, and how fast: one pass per size in headless Chromium.

    python benchmarks/web_sizes.py [--sizes 1024x1024 2048x1024 2048x2048 3000x2000 3840x2160] [--edit]

Needs ``make web`` and Debian's chromium. Each size gets a fresh page, a random image and a
rectangular mask; it prints which generator of ``web/models.json`` the page used, the network's time
(the page's own figure) and any error the page showed (``std::bad_alloc``: WebAssembly's 4 GB were
not enough). With ``--edit`` the page then runs its editor view (step 4: the inpainter on the original and
on the protected image), whatever models.json's limit for it, and prints its time and error too.
``benchmarks/onnx_speed.py`` compares the page with PyTorch and onnxruntime at two sizes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from generator.cli_parser import ArgumentParser
from trainer.commands.cli import run_guarded


def size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=size, nargs="+", default=[(1024, 1024), (2048, 1024), (2048, 2048)],
                        metavar="WxH",
                        help="the image sizes the page protects (default: 1024x1024 2048x1024 2048x2048)")
    parser.add_argument("--edit", action="store_true", help="also run the editor view on each protected image")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from generator.web_browser import launch_chromium, open_page, serve_in_background
    from generator.web_server import SITE, check_site

    check_site(SITE)
    server = serve_in_background(SITE)
    heads, rules = (" editor view (s) | its error |", "---:|---|") if args.edit else ("", "")
    print(f"| image | MP | generator | network (s) | error |{heads}\n|---|---:|---|---:|---|{rules}")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = launch_chromium(p)
        for w, h in args.sizes:
            image, mask = Path(tmp) / "image.png", Path(tmp) / "mask.png"
            Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)).save(image)
            hole = np.zeros((h, w), np.uint8)
            hole[h // 3:h // 2, w // 3:w // 2] = 255
            Image.fromarray(hole).save(mask)
            page = open_page(browser, server, image, mask)
            page.click("#protect")
            page.locator("body[data-state=idle]").wait_for(timeout=1_800_000)
            network = page.get_attribute("#status", "data-network-ms")
            error = page.text_content("#error") if page.is_visible("#error") else ""
            generator = page.get_attribute("#status", "data-generator") if not error else "-"
            seconds = f"{float(network) / 1000:.1f}" if network and not error else "-"
            row = f"| {w}x{h} | {w * h / 1e6:.1f} | {generator} | {seconds} | {error} |"
            if args.edit and not error:
                row += edit(page)
            print(row, flush=True)
            page.close()
        browser.close()
    server.shutdown()


def edit(page) -> str:
    """The editor view's columns for the protected image on ``page``: its seconds and any error it showed."""
    # the page's limit is a choice made from this very measurement: lift it to see where memory ends
    page.evaluate("() => { window.paintguard.state.inpainter.max_pixels = Infinity; }")
    page.evaluate("() => document.getElementById('inpaint').disabled = false")
    page.click("#inpaint")
    page.locator("body[data-state=idle]").wait_for(timeout=1_800_000)
    error = page.text_content("#error") if page.is_visible("#error") else ""
    said = page.text_content("#edit-status") or ""
    seconds = said.rsplit("; ", 1)[-1].split(" s on ")[0] if said and not error else "-"
    return f" {seconds} | {error} |"


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
