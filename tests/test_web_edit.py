"""The web page's editor view (step 4): what an inpainting editor makes of the original and of the protected
image, in headless Chromium, against `paintguard inpaint --original` on the downloaded file."""

from __future__ import annotations

import json
import re

import numpy as np
import torch
from PIL import Image

from generator.io import read_image, read_mask
from generator.target import target_colour
from generator.web_server import SITE
from trainer.commands.cli import main
from trainer.evaluation.editor_masks import DRAWN, EDITOR_MASKS
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.losses import masked_mse

from .conftest import one_line_error, write_mask
from .web_page import Page, photo, served_copy


def generators() -> list[dict]:
    """The built page's generators (its models.json), for a copy of the page with another inpainter or none."""
    return json.loads((SITE / "models.json").read_text())["models"]


def protect_and_download(page: Page, tmp_path, image, mask):
    page.open_image(image)
    page.load_mask(mask)
    page.page.click("#protect")
    page.idle()
    saved = tmp_path / "protected.png"
    page.download(saved)
    return saved


def canvas_pixels(page: Page, canvas: str) -> np.ndarray:
    """The RGB pixels a canvas of the page holds (H, W, 3)."""
    width, height, data = page.page.evaluate(
        "(id) => { const c = document.getElementById(id); "
        "return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }",
        canvas)
    return np.asarray(data, dtype=np.uint8).reshape(height, width, 4)[..., :3].astype(int)


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.?\d*", text)]


def test_the_editor_view_says_what_paintguard_inpaint_says(page, tmp_path, capsys):
    image, mask = photo(tmp_path, "png")
    page.open_image(image)
    assert page.page.is_hidden("#edit")  # nothing to show before a protection
    saved = protect_and_download(page, tmp_path, image, mask)
    assert page.page.is_visible("#edit") and not page.page.is_disabled("#inpaint")
    page.page.click("#inpaint")
    page.idle()
    assert page.error() == "", page.error()
    said = page.text("#edit-status")

    edited = tmp_path / "edited.png"
    assert main(["inpaint", str(saved), "--mask", str(mask), "-o", str(edited), "--original", str(image)]) == 0
    cli = capsys.readouterr().out.strip()
    # the same sentence; its figures printed to 2 and 4 places agree within the last place (float round-off
    # between onnxruntime-web and PyTorch may move one)
    words = lambda text: re.sub(r"[-+]?\d+\.?\d*", "#", text)  # noqa: E731
    page_line, cli_line = said.rsplit("; ", 1)[0], cli.rsplit("; wrote", 1)[0]
    assert words(page_line) == words(cli_line), (page_line, cli_line)
    assert np.allclose(numbers(page_line), numbers(cli_line), atol=0.011)
    assert re.fullmatch(r"\d+\.\d s on wasm\.", said.rsplit("; ", 1)[1])

    # the losses themselves, against PyTorch's on the same files, with the original's target colour
    batch = torch.stack([read_image(saved), read_image(image)])
    masks = read_mask(mask)[None].expand(2, -1, -1, -1)
    with torch.no_grad():
        fills = load_inpainter("lama-tiny")(batch, masks)
    attack = masked_mse(fills, target_colour(batch[1:]).reshape(1, 3, 1, 1).expand_as(fills), masks)
    status = page.page.locator("#edit-status")
    web = [float(status.get_attribute(f"data-attack-{which}")) for which in ("protected", "original")]
    assert np.allclose(web, attack.tolist(), rtol=1e-4), (web, attack)
    assert attack[0] < attack[1]  # the protection moved the fill towards the target
    # the page shows the edits around the mask (its 40x30 px box, 16 px more on each side within the 83x61 image):
    # the protected one is the CLI's edited file there within one level
    x0, y0, x1, y1 = map(int, page.page.get_attribute("#edits", "data-box").split(","))
    assert (x0, y0, x1, y1) == (4, 0, 76, 56)
    shown = canvas_pixels(page, "edit-protected-canvas")
    assert np.abs(shown - np.asarray(Image.open(edited).convert("RGB"))[y0:y1, x0:x1].astype(int)).max() <= 1
    assert canvas_pixels(page, "edit-original-canvas").shape == shown.shape

    # an editor's looser mask: the edits of the protected one go, and the page says what --editor-mask says
    page.page.select_option("#editor-mask", "mask-dilate-9")
    assert page.page.is_hidden("#edits") and "The editor's mask changed" in page.text("#edit-status")
    page.page.click("#inpaint")
    page.idle()
    looser = page.text("#edit-status")
    assert main(["inpaint", str(saved), "--mask", str(mask), "-o", str(edited), "--original", str(image),
                 "--editor-mask", "mask-dilate-9", "--overwrite"]) == 0
    cli = capsys.readouterr().out.strip()
    page_line, cli_line = looser.rsplit("; ", 1)[0], cli.rsplit("; wrote", 1)[0]
    assert "fill of the mask drawn 4 px looser (mask-dilate-9) scores" in page_line
    assert words(page_line) == words(cli_line), (page_line, cli_line)
    assert np.allclose(numbers(page_line), numbers(cli_line), atol=0.011)
    assert page.page.get_attribute("#edits", "data-box") == "0,0,80,60"  # around the looser mask: 4 px more a side


def test_a_page_without_an_inpainter_has_no_editor_view(browser, tmp_path):
    with served_copy(tmp_path, generators()) as (_, url, _):
        page = Page(browser, url)
        image, mask = photo(tmp_path, "png")
        protect_and_download(page, tmp_path, image, mask)
        assert page.error() == "" and page.page.is_hidden("#edit")
        assert not page.errors, page.errors
        page.close()


def test_an_image_above_the_inpainters_limit_is_sent_to_the_cli(browser, tmp_path):
    inpainter = {"file": "inpainter.onnx", "max_pixels": 5000}
    with served_copy(tmp_path, generators(), inpainter=inpainter) as (_, url, _):
        page = Page(browser, url)
        image, mask = photo(tmp_path, "png")  # 5063 pixels
        protect_and_download(page, tmp_path, image, mask)
        assert page.page.is_visible("#edit") and page.page.is_disabled("#inpaint")
        assert "the editor view takes at most 0.0 MP (browser memory): 'paintguard inpaint' shows it for any size" \
            in page.text("#edit-note")
        assert not page.errors, page.errors
        page.close()


def test_the_edits_go_with_their_result(page, tmp_path):
    """The editor view shows what an editor makes of the result on show: an edited mask takes both away."""
    image, mask = photo(tmp_path, "png")
    protect_and_download(page, tmp_path, image, mask)
    page.page.click("#inpaint")
    page.idle()
    assert page.page.is_visible("#edits") and "dB PSNR" in page.text("#edit-status")
    page.page.click("#protect")  # a new result: the edits of the last one go
    page.idle()
    assert page.page.is_visible("#edit") and page.page.is_hidden("#edits") and page.text("#edit-status") == ""
    page.page.click("#inpaint")
    page.idle()
    assert page.page.is_visible("#edits")
    page.page.click("#undo")  # back to the empty mask: the result goes, and its edits with it
    assert page.page.is_hidden("#edit") and page.text("#edit-status") == ""
    assert page.page.locator("#edit-protected-canvas").get_attribute("width") == "0"


def test_an_inpainter_that_does_not_load_is_reported_and_the_page_goes_on(browser, tmp_path):
    inpainter = {"file": "inpainter.onnx", "max_pixels": 6000000}
    with served_copy(tmp_path, generators(), without=("inpainter.onnx",), inpainter=inpainter) as (_, url, _):
        page = Page(browser, url)
        image, mask = photo(tmp_path, "png")
        protect_and_download(page, tmp_path, image, mask)
        page.page.click("#inpaint")
        page.idle()
        assert page.error().startswith("The editor view failed: the model did not load (HTTP 404 for inpainter.onnx)")
        assert page.page.is_hidden("#edits") and not page.page.is_disabled("#download")
        page.page.click("#protect")  # protection itself still works
        page.idle()
        assert page.text("#status").startswith("Protected in") and page.error() == ""
        assert not page.errors, page.errors
        page.close()


def test_the_editors_masks_are_drawn_as_paintguard_inpaint_draws_them(page, tmp_path, capsys):
    rng = np.random.default_rng(0)
    region = (rng.random((37, 45)) < 0.03).astype(np.uint8)  # scattered dots: every edge case of the windows
    region[:6, :10] = region[30:, 40:] = 1  # and regions that reach the border
    for name, draw in EDITOR_MASKS.items():
        got = page.page.evaluate("async ([name, mask, w, h]) => Array.from((await import('/src/edit.js'))"
                            ".editorMask(name, Uint8Array.from(mask), w, h))", [name, region.ravel().tolist(), 45, 37])
        want = draw(torch.from_numpy(region).float()[None, None])[0, 0].numpy()
        assert np.array_equal(np.asarray(got).reshape(37, 45), want), name
    words = page.page.evaluate("async () => Object.fromEntries(Object.entries((await import('/src/edit.js'))"
                               ".EDITOR_MASKS).map(([name, [drawn]]) => [name, drawn]))")
    assert words == DRAWN
    options = page.page.eval_on_selector_all("#editor-mask option", "os => os.map((o) => [o.value, o.textContent])")
    assert options == [["", "the protected mask"]] + [[n, f"a mask {d}"] for n, d in DRAWN.items()]

    # a mask that an editor's tighter one empties: refused on the page as on the command line
    image, mask = photo(tmp_path, "png")
    write_mask(mask, 61, 83, (10, 20, 40, 26))  # 6 px wide: 4 px in from each side leaves nothing
    saved = protect_and_download(page, tmp_path, image, mask)
    page.page.select_option("#editor-mask", "mask-erode-9")
    page.page.click("#inpaint")
    page.idle()
    assert page.error() == "The mask drawn 4 px tighter (mask-erode-9) is empty: nothing to inpaint."
    assert page.page.is_hidden("#edits") and not page.page.is_disabled("#inpaint")
    assert main(["inpaint", str(saved), "--mask", str(mask), "-o", str(tmp_path / "e.png"), "--editor-mask",
                 "mask-erode-9"]) == 2
    assert one_line_error(capsys).endswith("drawn 4 px tighter (mask-erode-9) is empty: nothing to inpaint")
    # and one that a looser one spreads over the whole image
    write_mask(mask, 61, 83, (10, 10, 51, 73))  # within 16 px of every side
    page.load_mask(mask)
    page.page.click("#protect")
    page.idle()
    page.page.select_option("#editor-mask", "mask-dilate-33")
    page.page.click("#inpaint")
    page.idle()
    assert page.error() == ("The mask drawn 16 px looser (mask-dilate-33) covers the whole image: nothing is left "
                            "for the inpainter to see.")
