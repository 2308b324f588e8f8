"""The web page while a user does several things at once: files opened during a run, masks edited after one,
the keyboard alone, a resized window, a server that has stopped, a model that did not load."""

from __future__ import annotations

from .conftest import write_mask, write_rgb
from .web_page import TIMEOUT_MS, Page, photo, protect_like_the_cli, served_copy


def mask_count(page: Page) -> int:
    return int(page.text("#mask-info").split(" px")[0].replace(",", ""))


def test_nothing_else_is_opened_or_undone_while_protecting(page, tmp_path):
    """A second image opened during a run was shown with the first one's result, and saved under its name;
    Ctrl+Z emptied the mask the run was reading."""
    write_rgb(tmp_path / "first.png", 420, 560, seed=1)  # a run long enough to act during it (seconds)
    write_mask(tmp_path / "first_mask.png", 420, 560, (70, 70, 210, 280))
    write_rgb(tmp_path / "second.png", 40, 52, seed=2)
    page.open_image(tmp_path / "first.png")
    page.load_mask(tmp_path / "first_mask.png")
    painted = mask_count(page)
    page.page.click("#protect")
    assert page.page.is_disabled("#image-input") and page.page.is_disabled("#mask-input")
    page.page.keyboard.press("Control+z")
    page.drop(tmp_path / "second.png")
    # a drop was ignored without a word
    assert page.text("#status") == "Busy: 'second.png' was not opened; drop it again when this is done."
    page.idle()
    assert page.text("#status").startswith("Protected in"), page.text("#status")
    assert page.text("#image-info") == "first.png: PNG, 560x420" and mask_count(page) == painted
    assert page.download(tmp_path / "downloaded.png") == "first_protected.png"
    # once it has run, a drop anywhere on the page opens the file: on the painting too, not only on the box
    page.drop(tmp_path / "second.png", on="#stage")
    page.idle()
    assert page.text("#image-info") == "second.png: PNG, 52x40"
    page.drop(tmp_path / "first.png", tmp_path / "second.png")  # the second was left out without a word
    page.idle()
    assert page.text("#image-info") == "first.png: PNG, 560x420"
    assert page.text("#status") == ("Opened the first of the 2 dropped files; the page protects one image at a time. "
                                    "Paint the region to protect, then press Protect.")


def test_a_result_goes_once_its_mask_is_edited(page, tmp_path):
    """The old result stayed downloadable for a mask the user had since changed."""
    image, mask = photo(tmp_path, "png")
    page.open_image(image)
    page.load_mask(mask)
    page.page.click("#protect")
    page.idle()
    assert not page.page.is_disabled("#download")
    assert page.page.is_visible("#results")
    page.page.click("#undo")  # back to the empty mask
    assert page.page.is_disabled("#download") and page.page.is_disabled("#clear")  # nothing to clear either
    assert page.text("#status") == "The mask changed: press Protect again."
    # the figures go with their room: a blank box 340 px high, wider than a phone's screen, stayed
    assert page.page.locator("#result-canvas").get_attribute("width") == "0" and page.page.is_hidden("#results")
    page.load_mask(mask)
    page.page.click("#protect")
    page.idle()
    page.load_mask(mask)
    assert page.text("#status") == f"Loaded the mask '{mask.name}': press Protect again."
    assert page.page.is_hidden("#results") and page.page.is_disabled("#download")


def test_the_keyboard_reaches_the_file_pickers(page):
    """Both file inputs were display: none inside labels that take no focus: without a mouse nothing opened."""
    focused = []
    for _ in range(6):
        page.page.keyboard.press("Tab")
        focused.append(page.page.evaluate_handle("() => document.activeElement.id").json_value())
    assert focused.index("image-input") < focused.index("brush-size")
    assert page.page.is_disabled("#mask-input")  # until an image is open


def test_the_mask_stays_on_the_image_when_the_window_narrows(page, tmp_path):
    page.page.set_viewport_size({"width": 1280, "height": 900})
    write_rgb(tmp_path / "wide.png", 300, 900)
    page.open_image(tmp_path / "wide.png")
    page.page.set_viewport_size({"width": 390, "height": 844})
    # the page refits on the window's resize event, which a loaded machine delivered after more than 200 ms
    page.page.wait_for_function("() => document.getElementById('image-canvas').getBoundingClientRect().width <= 390",
                                timeout=10_000)
    image, overlay = (page.page.locator(s).bounding_box() for s in ("#image-canvas", "#mask-canvas"))
    assert image["width"] <= 390 and abs(image["width"] - overlay["width"]) < 1, (image, overlay)
    # a refused file is said where the user sees it, not below the fold
    (tmp_path / "notes.png").write_text("not an image")
    page.open_image(tmp_path / "notes.png")
    box = page.page.locator("#error").bounding_box()
    assert "Cannot open 'notes.png'" in page.error() and 0 <= box["y"] and box["y"] + box["height"] <= 844


def test_a_model_that_did_not_load_stays_said(browser, tmp_path):
    """Opening an image hid the failure and said "Loading the model…" for good."""
    with served_copy(tmp_path, without=("model.onnx",)) as (_, url, _):
        page = Page(browser, url)
        assert page.error() == ("the model did not load (HTTP 404 for model.onnx); build the page with 'make web' "
                                "and serve it with 'paintguard web'.")
        image, _ = photo(tmp_path, "png")
        page.open_image(image)
        assert page.error().startswith("the model did not load (HTTP 404")
        assert page.text("#status") == "Something went wrong (see below)."
        assert not page.errors, page.errors
        page.close()


def test_large_images_protect_after_the_server_stops(browser, tmp_path):
    """"Works offline once loaded": the faster model for large images was fetched only when first needed."""
    models = [{"file": "model.onnx", "max_pixels": 5000}, {"file": "model-large.onnx", "max_pixels": 16777216}]
    with served_copy(tmp_path, models) as (_, url, server):
        page = Page(browser, url)
        page.page.locator("body[data-models=fetched]").wait_for(timeout=TIMEOUT_MS)
        server.shutdown()
        image, mask = photo(tmp_path, "png")
        protect_like_the_cli(page, url, tmp_path, image, mask, model="model-large.onnx")
        assert not page.errors, page.errors
        page.close()


def test_the_page_says_when_it_does_not_work_offline_for_large_images(browser, tmp_path):
    """"Works offline once loaded" was said even when the large images' model had not downloaded."""
    with served_copy(tmp_path, without=("model-large.onnx",)) as (_, url, _):
        page = Page(browser, url)
        page.page.locator("body[data-models=partly]").wait_for(timeout=TIMEOUT_MS)
        assert page.text("#model-info").endswith(
            "Works offline once loaded up to 4.2 MP; the model for larger images did not download, and is tried "
            "again when one needs it."), page.text("#model-info")
        assert page.error() == ""  # the default model works: nothing is wrong yet
        page.close()


def test_undo_brings_back_the_image_a_drop_replaced(page, tmp_path):
    """A file dropped by mistake replaced the image and the mask painted on it, with no way back."""
    image, mask = photo(tmp_path, "png")
    write_rgb(tmp_path / "stray.png", 40, 52, seed=2)
    page.open_image(image)
    page.load_mask(mask)
    page.page.click("#protect")
    page.idle()
    page.drop(tmp_path / "stray.png", on="#stage")
    page.idle()
    assert page.text("#image-info") == "stray.png: PNG, 52x40" and mask_count(page) == 0
    assert page.text("#status").endswith("Undo reopens 'photo.png' with its mask.")
    page.page.mouse.move(*_centre(page))  # a stroke on the stray image is undone first
    page.page.mouse.down()
    page.page.mouse.up()
    assert mask_count(page) > 0
    page.page.keyboard.press("Control+z")
    assert page.text("#image-info") == "stray.png: PNG, 52x40" and mask_count(page) == 0
    page.page.click("#undo")
    assert page.text("#image-info") == "photo.png: PNG, 83x61" and mask_count(page) == 1200
    assert page.text("#status") == "Reopened 'photo.png' with its mask, in place of 'stray.png'."
    # the result is not brought back: it is made again from the mask, which is now the one undo goes through
    assert page.page.is_hidden("#results") and page.page.is_disabled("#download")
    page.page.click("#undo")  # the loaded mask
    assert mask_count(page) == 0 and page.page.is_disabled("#undo")  # one image back, not two
    page.page.click("#protect")
    assert page.error().startswith("The mask is empty")


def _centre(page: Page) -> tuple[float, float]:
    box = page.page.locator("#mask-canvas").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
