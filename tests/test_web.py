"""The web page in a real headless Chromium: protect, download, compare with the onnx backend; brush; errors.

Needs ``make web`` (``make test`` runs it) and Debian's chromium (``.ci/run`` installs it);
skipped, with the reason, only where no Chromium can be found.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.target import target_colour
from generator.web_server import SITE, check_site
from trainer.commands.cli import main

from .conftest import write_mask, write_rgb
from .test_bad_files import bomb_png
from .web_page import PHOTOS, Page, photo, protect_like_the_cli, served_copy


@pytest.mark.parametrize("kind", PHOTOS)
def test_page_protects_like_the_onnx_backend(page, site, tmp_path, kind):
    assert page.error() == "" and "onnxruntime-web" in page.text("#model-info")
    image, mask = photo(tmp_path, kind)
    protect_like_the_cli(page, site, tmp_path, image, mask, model="model.onnx")
    assert "faster generator" not in page.text("#image-info")


def test_images_above_the_first_models_limit_get_the_next_one(browser, tmp_path):
    # the default generator's graph needs far more memory per pixel than the fast one's, so the page takes the
    # second model of models.json above the first one's max_pixels: here lowered below the photo's 5063 pixels
    models = [{"file": "model.onnx", "max_pixels": 5000}, {"file": "model-large.onnx", "max_pixels": 16777216}]
    with served_copy(tmp_path, models) as (_, url, _):
        page = Page(browser, url)
        assert "above 0.0 MP a faster one (model-large.onnx)" in page.text("#model-info")
        image, mask = photo(tmp_path, "png")
        protect_like_the_cli(page, url, tmp_path, image, mask, model="model-large.onnx")
        assert "the page protects with a faster generator" in page.text("#image-info")
        assert not page.errors, page.errors
        page.close()


def test_drop_then_brush_eraser_undo_clear(page, tmp_path):
    write_rgb(tmp_path / "a.png", 120, 160)
    # the image arrives by drag and drop, as from a file manager
    page.drop(tmp_path / "a.png")
    page.idle()
    assert page.text("#image-info") == "a.png: PNG, 160x120"
    box = page.page.locator("#mask-canvas").bounding_box()
    mouse = page.page.mouse

    def stroke(x0, y0, x1, y1):
        mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y0)
        mouse.down()
        mouse.move(box["x"] + box["width"] * x1, box["y"] + box["height"] * y1, steps=8)
        mouse.up()

    def protected() -> int:
        return int(page.text("#mask-info").split(" px")[0].replace(",", ""))

    page.page.fill("#brush-size", "20")
    stroke(0.2, 0.5, 0.8, 0.5)
    painted = protected()
    assert 0.1 * 120 * 160 < painted < 0.4 * 120 * 160
    page.page.check("#tool-eraser")
    stroke(0.4, 0.3, 0.4, 0.7)
    erased = protected()
    assert 0 < erased < painted
    page.page.click("#undo")
    assert protected() == painted
    page.page.click("#clear")
    assert protected() == 0
    page.page.click("#protect")  # nothing to protect: said so, nothing run
    assert "The mask is empty" in page.error()
    page.page.click("#undo")
    assert protected() == painted


def test_bad_files_are_refused_with_clear_messages(page, tmp_path):
    write_rgb(tmp_path / "a.png", 40, 52)
    write_mask(tmp_path / "small_mask.png", 20, 20, (0, 0, 5, 5))
    (tmp_path / "notes.png").write_text("not an image")
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    Image.new("RGB", (40, 40)).save(tmp_path / "anim.gif")
    write_mask(tmp_path / "full_mask.png", 40, 52, (0, 0, 40, 52))

    expected = {"notes.png": "not a PNG, JPEG or WebP image", "cut.png": "the PNG file is truncated",
                "anim.gif": "not a PNG, JPEG or WebP image",
                "bomb.png": "it is 30000x30000 = 900.0 MP; this page takes at most 16.8 MP"}
    for name, message in expected.items():
        page.open_image(tmp_path / name)
        assert f"Cannot open '{name}'" in page.error() and message in page.error(), page.error()
    page.open_image(tmp_path / "a.png")  # the tab is still alive after the bomb
    assert page.error() == "" and page.text("#image-info") == "a.png: PNG, 52x40"
    page.load_mask(tmp_path / "small_mask.png")
    assert "the mask is 20x20 but the image is 52x40" in page.error()
    strokes = np.zeros((40, 52, 4), np.uint8)
    strokes[5:15, 5:15, 3] = 255  # opaque black on transparency: a common way to draw a mask, which marks nothing
    Image.fromarray(strokes).save(tmp_path / "black_mask.png")
    page.load_mask(tmp_path / "black_mask.png")
    assert "it is drawn in black on a transparent background" in page.error(), page.error()
    page.load_mask(tmp_path / "full_mask.png")
    page.page.click("#protect")
    page.idle()
    assert "The mask covers the whole image" in page.error()


def test_a_model_that_does_not_load_is_reported(browser, tmp_path):
    with served_copy(tmp_path, without=("model.onnx",)) as (root, url, _):
        (root / "model.onnx").write_bytes(b"\x08\x07broken")
        page = Page(browser, url)
        assert page.page.get_attribute("body", "data-model") == "failed"
        assert "the model did not load" in page.error()
        page.close()


def test_target_colour_matches_python(browser, site):
    """The page's target colour is generator/target.py's, ties and truncated means included."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(site + "style.css")  # a same-origin document without the app: only the module is loaded
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (9, 7, 3), np.uint8) for _ in range(20)]
    images += [np.full((4, 4, 3), v, np.uint8) for v in ([128, 128, 0], [0, 0, 0], [255, 255, 255], [10, 10, 250])]
    skewed = np.zeros((3, 3, 3), np.uint8)
    skewed[0, 0] = [255, 0, 1]  # mean 28.33 -> 28: truncation, not rounding
    images.append(skewed)
    for pixels in images:
        rgba = np.concatenate([pixels, np.full(pixels.shape[:2] + (1,), 255, np.uint8)], -1).ravel().tolist()
        got = page.evaluate("async ([rgba, n]) => (await import('/src/protect.js')).targetColour(rgba, n)",
                            [rgba, pixels.shape[0] * pixels.shape[1]])
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
        assert got == target_colour(tensor)[0].tolist(), pixels.reshape(-1, 3).mean(0)
    context.close()


def test_web_command_serves_files_only_and_prints_the_address(tmp_path):
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-c", "import sys; from trainer.commands.cli import main; "
                             "sys.exit(main(['web', *sys.argv[1:]]))", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        line = proc.stdout.readline()
        assert line.startswith("paintguard web: serving")
        # the Makefile's WEB_GENERATOR and WEB_LARGE_GENERATOR
        assert "models from generator-lama-tiny.safetensors, then generator-lama-tiny-fast.safetensors" in line
        url = next(word for word in line.split() if word.startswith("http://127.0.0.1:"))
        with urllib.request.urlopen(url) as response:
            assert b"PaintGuard" in response.read()
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"  # WebAssembly threads
        with urllib.request.urlopen(url + "ort/ort-wasm-simd-threaded.jsep.wasm") as response:
            assert response.headers["Content-Type"] == "application/wasm"
        for path, method, code in (("src/", "GET", 404), ("../pyproject.toml", "GET", 404), ("", "POST", 501)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(urllib.request.Request(url + path, method=method, data=b"x" if method == "POST"
                                                              else None))
            assert err.value.code == code, path
        proc.terminate()  # as Ctrl+C: the way a server is stopped, said as "paintguard: error: interrupted"
        out, err = proc.communicate(timeout=10)
        assert (proc.returncode, out, err) == (0, "paintguard web: stopped\n", "")
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("model", ["model.onnx", "model-large.onnx", "inpainter.onnx"])
def test_web_command_refuses_a_missing_or_stale_page(tmp_path, monkeypatch, capsys, model):
    assert main(["web", "--root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not built (missing index.html" in err and "run 'make web'" in err
    root = tmp_path / "site"
    shutil.copytree(SITE, root, ignore=shutil.ignore_patterns("*.wasm", model))
    (root / "ort" / "ort-wasm-simd-threaded.jsep.wasm").write_bytes(b"")
    assert main(["web", "--root", str(root), "--port", "0"]) == 2  # a model that models.json lists is missing
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"is not built (missing {model})" in err
    shutil.copy(SITE / model, root / model)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / check_site(SITE)[model]["source"]
    shutil.copy(shipped, checkpoints)
    with open(checkpoints / shipped.name, "ab") as f:
        f.write(b" ")  # the checkpoint changed since the page's model was exported
    monkeypatch.setenv("PAINTGUARD_CHECKPOINTS", str(checkpoints))
    assert main(["web", "--root", str(root), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    variable = {"model.onnx": "WEB_GENERATOR", "model-large.onnx": "WEB_LARGE_GENERATOR",
                "inpainter.onnx": "WEB_INPAINTER"}[model]
    assert err.count("\n") == 0 and f"{model}' is stale" in err
    assert err.endswith(f"rebuild it with 'make web {variable}={shipped.stem}'")  # the generator it was built from


def test_header_sizes_match_pillow(browser, site):
    """The page reads every supported format's size from its header (the bomb check) as Pillow does."""
    import io

    context = browser.new_context()
    page = context.new_page()
    page.goto(site + "style.css")
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    cases = {"png": ("PNG", {}), "jpeg": ("JPEG", {"quality": 80}), "jpeg-exif": ("JPEG", {"exif": exif}),
             "progressive": ("JPEG", {"progressive": True}), "webp-lossy": ("WEBP", {"quality": 70}),
             "webp-lossless": ("WEBP", {"lossless": True}), "webp-extended": ("WEBP", {"exif": exif})}
    for name, (fmt, options) in cases.items():
        buffer = io.BytesIO()
        image = Image.fromarray(rgb).convert("RGBA") if name == "webp-extended" else Image.fromarray(rgb)
        image.save(buffer, format=fmt, **options)
        data = buffer.getvalue()
        head = page.evaluate("async (bytes) => (await import('/src/formats.js')).imageSize(new Uint8Array(bytes))",
                             list(data))
        assert (head["width"], head["height"], head["truncated"]) == (53, 37, False), name
        cut = page.evaluate("async (bytes) => (await import('/src/formats.js')).imageSize(new Uint8Array(bytes))",
                            list(data[: len(data) - 10]))
        assert cut["truncated"], name
    context.close()


def test_web_command_refuses_a_page_whose_model_list_is_broken(tmp_path, capsys):
    root = tmp_path / "site"
    shutil.copytree(SITE, root)
    for text in ("{", '{"models": []}'):
        (root / "models.json").write_text(text)
        assert main(["web", "--root", str(root), "--port", "0"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "models.json' " in err and "'make web'" in err


def test_web_command_refuses_a_model_list_naming_files_outside_the_page(tmp_path, capsys):
    root = tmp_path / "site"
    shutil.copytree(SITE, root, ignore=shutil.ignore_patterns("*.wasm"))
    (tmp_path / "outside.onnx").write_bytes((SITE / "model.onnx").read_bytes())
    for name in (None, 5, "", ".", "../outside.onnx", str(tmp_path / "outside.onnx"), "src/../../outside.onnx"):
        (root / "models.json").write_text(json.dumps({"models": [{"file": name}]}))
        assert main(["web", "--root", str(root), "--port", "0"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"lists {name!r}, not a file of the page" in err, err


def test_make_web_refuses_a_checkpoint_of_the_other_kind_before_touching_the_page():
    """``make web WEB_INPAINTER=<a generator>`` used to copy the generator over the page's inpainter, which
    ``paintguard web`` then refused; the Makefile's check says so in one line, before any export or copy."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    before = {name: (SITE / name).read_bytes() for name in ("model.onnx", "inpainter.onnx")}
    cases = {"WEB_INPAINTER=generator-lama-tiny": "WEB_INPAINTER: checkpoints/generator-lama-tiny.safetensors is "
             "a generator, not an inpainter; give an inpainter's name: ",
             "WEB_GENERATOR=lama-tiny": "WEB_GENERATOR: checkpoints/lama-tiny.safetensors is an inpainter, not a "
             "generator; give a generator's name: ",
             "WEB_LARGE_GENERATOR=mine": "WEB_LARGE_GENERATOR: no checkpoints/mine.safetensors; give the name of a "
             "checkpoint in checkpoints/"}
    for setting, said in cases.items():
        # -o: the set-up stamp counts as made, so that the check alone runs (make test set the clone up)
        out = subprocess.run(["make", "-s", "-o", ".venv/.paintguard-setup", "web", setting,
                              f"BIN={Path(sys.executable).parent}"], cwd=root, capture_output=True, text=True)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and out.stdout == "" and lines[0].startswith(f"make: {said}"), out
        assert len(lines) == 2 and "web-generators" in lines[1]  # make's own line that names the failed step
        if setting.startswith("WEB_INPAINTER"):
            # the shipped inpainters, the default first (lama-tiny-ft's file name sorts before lama-tiny's)
            assert lines[0].removeprefix(f"make: {said}").split(", ")[0] == "lama-tiny"
    assert before == {name: (SITE / name).read_bytes() for name in before}
