"""A page of the web site in headless Chromium, for the browser tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import base64
import json
import shutil
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

from generator.io import read_image
from generator.web_browser import serve_in_background
from generator.web_server import SITE, address, check_site
from trainer.commands.cli import main

from .conftest import write_mask, write_rgb

EPS = 0.025
TIMEOUT_MS = 60_000  # model load and WebAssembly compile on a busy 2-core machine


@contextmanager
def served_copy(tmp_path: Path, models: list[dict] | None = None, without: tuple[str, ...] = (),
                inpainter: dict | None = None) -> Iterator[tuple[Path, str, object]]:
    """A copy of the built page, with another ``models`` list (and no editor view's ``inpainter`` unless given) or
    ``without`` some files, served in the background: (its folder, its address, the server, which a test may stop
    early)."""
    root = tmp_path / "site"
    shutil.copytree(SITE, root, ignore=shutil.ignore_patterns(*without))
    if models is not None:
        listed = {"models": models} if inpainter is None else {"models": models, "inpainter": inpainter}
        (root / "models.json").write_text(json.dumps(listed))
    server = serve_in_background(root)
    try:
        yield root, address(server), server
    finally:
        server.shutdown()
        server.server_close()


class Page:
    """One page of the site, recording every request so tests can show nothing left this computer."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(accept_downloads=True)
        self.requests: list[tuple[str, str]] = []
        self.errors: list[str] = []
        host = urlparse(url).netloc
        # anything for another host is recorded and aborted: the page must work with no network at all
        self.context.route("**/*", lambda route: route.continue_() if urlparse(route.request.url).netloc == host
                           or route.request.url.startswith(("blob:", "data:")) else route.abort())
        self.page = self.context.new_page()
        self.page.on("request", lambda r: self.requests.append((r.method, r.url)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        # locators wait in Playwright's own world: the page's CSP forbids the eval that wait_for_function uses
        self.page.locator("body[data-model]").wait_for(timeout=TIMEOUT_MS)

    def text(self, selector: str) -> str:
        return self.page.text_content(selector) or ""

    def idle(self) -> None:
        """Wait until the page has finished opening a file or protecting (it flags that on <body>)."""
        self.page.locator("body[data-state=idle]").wait_for(timeout=TIMEOUT_MS)

    def open_image(self, path) -> None:
        self.page.set_input_files("#image-input", str(path))  # the change handler marks the page working at once
        self.idle()

    def drop(self, *paths, on: str = "#open") -> None:
        """Drop the files ``paths`` on the element ``on``, as from a file manager (without waiting for the page)."""
        # the bytes go as base64: a list of numbers took seconds to pass for an image of a few hundred KB
        transfer = self.page.evaluate_handle(
            "(files) => { const t = new DataTransfer(); for (const [data, name] of files) "
            "t.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name, {type: 'image/png'}));"
            " return t; }",
            [[base64.b64encode(Path(path).read_bytes()).decode(), Path(path).name] for path in paths])
        self.page.dispatch_event(on, "drop", {"dataTransfer": transfer})

    def load_mask(self, path) -> None:
        self.page.set_input_files("#mask-input", str(path))
        self.idle()

    def download(self, to: Path) -> str:
        """Press Download PNG and save the file at ``to``; returns the file name the page suggested."""
        with self.page.expect_download() as download:
            self.page.click("#download")
        download.value.save_as(to)
        return download.value.suggested_filename

    def error(self) -> str:
        return self.text("#error") if self.page.is_visible("#error") else ""

    def close(self) -> None:
        self.context.close()


PHOTOS = ("png", "png-gamma", "png-icc", "jpeg-rotated", "webp-rotated")


def photo(tmp_path, kind: str) -> tuple[Path, Path]:
    """An odd, non-square image of one of the ``PHOTOS`` kinds and its mask: a plain PNG; one tagged with a gamma of
    1.0 (browsers convert its colours, the CLI reads its values); one with an RGB ICC profile (the CLI keeps it); a
    JPEG and a lossless WebP stored on their side with an EXIF rotation."""
    mask = tmp_path / "photo_mask.png"
    if kind.startswith("png"):
        image = tmp_path / "photo.png"
        write_rgb(image, 61, 83, seed=7)
        write_mask(mask, 61, 83, (10, 20, 40, 60))
        if kind == "png-gamma":
            tags = PngImagePlugin.PngInfo()
            tags.add(b"gAMA", struct.pack(">I", 100000))
            Image.open(image).save(image, pnginfo=tags)
        elif kind == "png-icc":
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
            Image.open(image).save(image, icc_profile=srgb)
    else:
        exif = Image.Exif()
        exif[0x0112] = 6  # shown turned 90 degrees clockwise: upright it is 61 wide, 83 high
        smooth = np.linspace(0, 255, 61 * 83 * 3).reshape(61, 83, 3).astype(np.uint8)  # JPEG-friendly content
        if kind == "jpeg-rotated":
            image = tmp_path / "photo.jpg"
            Image.fromarray(smooth).save(image, exif=exif, quality=90)
        else:
            image = tmp_path / "photo.webp"
            Image.fromarray(smooth).save(image, exif=exif, lossless=True)
        write_mask(mask, 83, 61, (10, 20, 40, 60))
    return image, mask


def protect_like_the_cli(page: Page, site: str, tmp_path: Path, image: Path, mask: Path, model: str) -> None:
    """Protect ``image`` in the page and check that ``model`` did it, as ``paintguard protect --backend onnx`` does."""
    page.open_image(image)
    page.load_mask(mask)
    assert page.error() == "" and "1,200 px protected" in page.text("#mask-info")
    page.page.click("#protect")
    page.idle()
    assert page.error() == "" and page.text("#status").startswith("Protected in")
    source = check_site(SITE)[model]["source"]  # the generator the page's model was exported from (the Makefile's)
    assert page.page.get_attribute("#status", "data-generator") == source
    saved = tmp_path / "downloaded.png"
    assert page.download(saved) == "photo_protected.png"

    moved = (read_image(saved).double() - read_image(image).double()).abs().max().item()
    assert 5 / 255 < moved <= EPS + 1e-9  # the noise is there, within the bound after decoding
    cli = tmp_path / "cli.png"
    assert main(["protect", str(image), "--mask", str(mask), "-o", str(cli), "--backend", "onnx",
                 "--checkpoint", Path(source).stem]) == 0
    web, reference = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in (saved, cli))
    assert np.abs(web - reference).max() <= 1
    # the colour profile travels as the CLI carries it (an RGB one into the PNG; none where the file had none)
    assert Image.open(saved).info.get("icc_profile") == Image.open(cli).info.get("icc_profile")
    # offline: every request went to the page's own server, and none sent anything
    assert all(urlparse(url).netloc == urlparse(site).netloc for _, url in page.requests if url.startswith("http"))
    assert {method for method, _ in page.requests} == {"GET"}
