"""Take the README's screenshot of the web page: a photo, a region painted with the brush, protected, edited.

    make web && python scripts/web_screenshot.py web/screenshot.png

Serves web/dist like ``paintguard web``, drives Debian's Chromium headless with
Playwright, paints with the mouse as a person would, presses Protect, then "See what an editor gets", and saves
a screenshot of the whole page.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from generator.web_browser import launch_chromium, serve_in_background  # noqa: E402
from generator.web_server import SITE, address, check_site  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", default="web/screenshot.png")
    args = parser.parse_args()
    check_site(SITE)
    server = serve_in_background(SITE)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        photo = Path(tmp) / "astronaut.png"
        Image.fromarray(data.astronaut()).resize((384, 384), Image.LANCZOS).save(photo)  # a photo scikit-image ships
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(address(server))
        page.locator("body[data-model=ready]").wait_for(timeout=120_000)
        page.set_input_files("#image-input", str(photo))
        page.locator("body[data-state=idle]").wait_for()
        box = page.locator("#mask-canvas").bounding_box()
        page.fill("#brush-size", "40")
        # paint over the flag patch on the sleeve, as a person protecting a logo would
        for y in (0.72, 0.78):
            page.mouse.move(box["x"] + box["width"] * 0.27, box["y"] + box["height"] * y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.40, box["y"] + box["height"] * y, steps=10)
            page.mouse.up()
        page.click("#protect")
        page.locator("body[data-state=idle]").wait_for(timeout=120_000)
        page.click("#inpaint")  # step 4: what an editor makes of the original and of the protected image
        page.locator("body[data-state=idle]").wait_for(timeout=120_000)
        said = page.text_content("#edit-status")
        page.screenshot(path=args.output, full_page=True)
        browser.close()
    server.shutdown()
    print(f"the editor view said: {said}\nwrote {args.output}")


if __name__ == "__main__":
    main()
