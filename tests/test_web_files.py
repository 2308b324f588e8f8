"""Files the page reads as `paintguard protect` reads them, in headless Chromium: a PNG with bytes after its end,
WebP turned by EXIF, 16-bit masks. (Colour tags and profiles: ``test_web.py``'s ``PHOTOS``.)"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

from generator.io import read_image, read_mask

from .conftest import write_mask, write_rgb


def png_bytes(samples: np.ndarray, colour: int) -> bytes:
    """A 16-bit PNG of ``samples`` (H, W, C) written by hand: each row with the next of PNG's five filters, so that
    the page's own unfiltering meets them all (Pillow cannot write 16-bit colour)."""
    h, w, c = samples.shape
    rows = samples.astype(">u2").reshape(h, w * c).view(np.uint8).reshape(h, -1).astype(int)
    bpp, out = 2 * c, b""
    for y, row in enumerate(rows):
        up = rows[y - 1] if y else np.zeros_like(row)
        left = np.concatenate([np.zeros(bpp, int), row[:-bpp]])
        corner = np.concatenate([np.zeros(bpp, int), up[:-bpp]])
        p = left + up - corner
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))
        kind = y % 5
        predicted = [0 * row, left, up, (left + up) // 2, paeth][kind]
        out += bytes([kind]) + bytes(((row - predicted) % 256).astype(np.uint8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(out)) + chunk(b"IEND", b"")


def page_mask(page) -> np.ndarray:
    h, w = page.page.evaluate("() => [window.paintguard.editor.height, window.paintguard.editor.width]")
    return np.array(page.page.evaluate("() => Array.from(window.paintguard.editor.mask)"), np.uint8).reshape(h, w)


def test_a_png_with_bytes_after_its_end_opens_as_pillow_reads_it(page, tmp_path):
    write_rgb(tmp_path / "a.png", 40, 52)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "tail.png").write_bytes(data + b"\n\0\0\0")  # a writer's trailing newline or padding
    page.open_image(tmp_path / "tail.png")
    assert page.error() == "" and page.text("#image-info") == "tail.png: PNG, 52x40"
    (tmp_path / "cut.png").write_bytes(data[:-20] + b"\n\0\0\0")  # IEND missing: still truncated
    page.open_image(tmp_path / "cut.png")
    assert "the PNG file is truncated" in page.error()


def test_a_webp_turned_by_exif_opens_upright_as_the_cli_reads_it(page, tmp_path):
    for orientation in range(1, 9):  # one page for all: a page costs seconds, an image a few milliseconds
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"turned{orientation}.webp"
        Image.fromarray(write_rgb(tmp_path / "x.png", 17, 29, seed=orientation)).save(path, exif=exif, lossless=True)
        page.open_image(path)
        assert page.error() == ""
        upright = (read_image(path).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        h, w = upright.shape[:2]
        assert page.text("#image-info") == f"{path.name}: WebP, {w}x{h}"
        rgba = np.array(page.page.evaluate("() => Array.from(window.paintguard.state.image.rgba)"), np.uint8)
        assert np.array_equal(rgba.reshape(h, w, 4)[..., :3], upright), orientation


def test_a_16_bit_mask_marks_what_the_cli_reads(page, tmp_path):
    """A label mask of 1s is protected at 16 bits, as Pillow reads greyscale; colour and alpha by their high bytes,
    as Pillow keeps them. The browser alone rounded every sample to 8 bits, so 1s marked nothing."""
    write_rgb(tmp_path / "image.png", 23, 31)
    page.open_image(tmp_path / "image.png")
    for colour, channels in {0: 1, 2: 3, 4: 2, 6: 4}.items():
        rng = np.random.default_rng(colour)
        samples = rng.choice([0, 1, 200, 256, 300, 65535], size=(23, 31, channels)).astype(np.uint16)
        samples[:3] = 0  # some rows of nothing
        if channels in (2, 4):
            samples[..., -1] = rng.choice([0, 1, 256, 65535], size=(23, 31))  # alpha: transparent below 256
        path = tmp_path / f"image_mask{colour}.png"
        path.write_bytes(png_bytes(samples, colour))
        expected = read_mask(path)[0].numpy().astype(np.uint8)
        assert 0 < expected.sum() < expected.size
        page.load_mask(path)
        assert page.error() == ""
        assert np.array_equal(page_mask(page), expected), colour
    write_mask(tmp_path / "plain_mask.png", 23, 31, (2, 3, 9, 12))  # and an 8-bit one as before
    page.load_mask(tmp_path / "plain_mask.png")
    assert np.array_equal(page_mask(page), read_mask(tmp_path / "plain_mask.png")[0].numpy().astype(np.uint8))
