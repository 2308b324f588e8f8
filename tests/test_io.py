"""Reading images and masks: orientation, mode conversion, errors."""

import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from generator.io import ImageReadError, _to_rgb, mask_region, open_rgb, pil_to_tensor, read_image, read_mask
from generator.messages import PaintGuardWarning

ORIENTATION = 0x0112


def save_with_orientation(img: Image.Image, path, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    img.save(path, exif=exif)


def asymmetric_rgb(h: int = 2, w: int = 4) -> np.ndarray:
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3) * 10


# EXIF 3: rotate 180, 6: rotate 90 clockwise, 8: rotate 90 anticlockwise to display.
@pytest.mark.parametrize("orientation, quarter_turns", [(3, 2), (6, -1), (8, 1)])
def test_png_exif_orientation_is_applied(tmp_path, orientation, quarter_turns):
    stored = asymmetric_rgb()
    upright = np.rot90(stored, quarter_turns).copy()
    path = tmp_path / "rotated.png"
    save_with_orientation(Image.fromarray(stored), path, orientation)
    np.testing.assert_array_equal(np.asarray(open_rgb(path)), upright)
    torch.testing.assert_close(read_image(path), torch.from_numpy(upright).permute(2, 0, 1) / 255.0)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    # Flat halves survive JPEG compression: left red, right blue, stored 64 wide x 32 high.
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :32] = (255, 0, 0)
    stored[:, 32:] = (0, 0, 255)
    path = tmp_path / "rotated.jpg"
    save_with_orientation(Image.fromarray(stored), path, 6)  # displayed rotated 90 deg clockwise
    image = read_image(path)
    assert image.shape == (3, 64, 32)
    assert image[0, :24].mean() > 0.9 and image[2, :24].mean() < 0.1  # red now on top
    assert image[2, 40:].mean() > 0.9 and image[0, 40:].mean() < 0.1  # blue at the bottom


def test_mask_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((2, 4), np.uint8)
    stored[0, 0] = 255
    path = tmp_path / "mask.png"
    save_with_orientation(Image.fromarray(stored), path, 6)
    mask = read_mask(path, size=(4, 2))
    expected = np.rot90(stored, -1) > 0
    np.testing.assert_array_equal(mask[0].numpy(), expected.astype(np.float32))


def test_grey_and_bilevel_become_rgb(tmp_path):
    Image.fromarray(np.full((3, 5), 128, np.uint8)).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (3, 3, 5) and image.dtype == torch.float32
    torch.testing.assert_close(image, torch.full((3, 3, 5), 128 / 255))

    bits = Image.fromarray(np.array([[True, False]]))
    bits.save(tmp_path / "bits.png")
    assert Image.open(tmp_path / "bits.png").mode == "1"
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "bits.png")), [[[255] * 3, [0] * 3]])


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    rgb = np.asarray(open_rgb(tmp_path / "rgba.png")).astype(int)
    assert rgb.shape == (1, 3, 3)
    np.testing.assert_array_equal(rgb[0, 0], [255, 0, 0])  # opaque stays
    np.testing.assert_array_equal(rgb[0, 1], [255, 255, 255])  # transparent -> white
    np.testing.assert_allclose(rgb[0, 2], [127, 127, 127], atol=1)  # half black over white

    Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "la.png")), [[[255] * 3, [0] * 3]])


def test_premultiplied_grey_alpha_converts(tmp_path):
    # Pillow converts "La" only to "LA": straight to RGBA it raised "conversion from La to L not supported"
    la = Image.fromarray(np.array([[[0, 0], [0, 255], [200, 255]]], np.uint8), "LA").convert("La")
    np.testing.assert_array_equal(np.asarray(_to_rgb(la)), [[[255] * 3, [0] * 3, [200] * 3]])
    np.testing.assert_array_equal(mask_region(la), [[False, False, True]])


def test_palette_and_palette_transparency(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([0, 1])
    pal.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "pal.png")), [[[10, 20, 30], [200, 100, 50]]])

    pal.save(tmp_path / "pal_t.png", transparency=0)
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "pal_t.png")), [[[255] * 3, [200, 100, 50]]])


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (2, 2), (0, 0, 0, 0))  # no ink = white
    cmyk.save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "cmyk.tif")), np.full((2, 2, 3), 255))


def test_16_bit_keeps_precision_and_rescales(tmp_path):
    values = np.array([[0, 1000, 1100, 32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (3, 1, 5)
    torch.testing.assert_close(image[1], torch.from_numpy(values / 65535.0).float())
    assert image[0, 0, 1] < image[0, 0, 2]  # 8 bits would make these equal
    # The 8-bit view is rescaled, not clipped at 255.
    np.testing.assert_array_equal(np.asarray(open_rgb(tmp_path / "deep.png"))[0, :, 0], [0, 4, 4, 128, 255])


def test_32_bit_int_and_float_modes(tmp_path, recwarn):
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(tmp_path / "int.tif")
    assert Image.open(tmp_path / "int.tif").mode == "I"
    torch.testing.assert_close(read_image(tmp_path / "int.tif")[:, 0], torch.tensor([[0.0, 1.0]] * 3))
    Image.fromarray(np.array([[0.25, 1.0]], np.float32)).save(tmp_path / "unit.tif")
    torch.testing.assert_close(read_image(tmp_path / "unit.tif")[:, 0], torch.tensor([[0.25, 1.0]] * 3))
    assert not [w for w in recwarn.list if w.category is PaintGuardWarning], [str(w.message) for w in recwarn.list]

    # out of range, or not numbers: clipped as before, but said (a float TIFF in [0, 255] came out white silently)
    cases = {"float.tif": (np.array([[0.25, 2.0]], np.float32), [0.25, 1.0], "run from 0.25 to 2; a mode F image "
                           "is read as [0, 1], so values outside it are clipped"),
             "nan.tif": (np.array([[np.nan, 0.5]], np.float32), [0.0, 0.5], "run from 0.5 to 0.5, and some are not "
                         "numbers (read as 0)"),
             "wide.tif": (np.array([[-1, 70000]], np.int32), [0.0, 1.0], "a mode I image is read as [0, 65535]")}
    for name, (values, expected, words) in cases.items():
        Image.fromarray(values).save(tmp_path / name)
        assert Image.open(tmp_path / name).mode in ("F", "I")
        with pytest.warns(PaintGuardWarning, match=re.escape(f"the samples of image '{tmp_path / name}' run ")) as said:
            image = read_image(tmp_path / name)
        assert words in str(said[0].message)
        torch.testing.assert_close(image[:, 0], torch.tensor([expected] * 3))
    with pytest.warns(PaintGuardWarning, match="^the samples of the image run from 0.25 to 2;"):
        pil_to_tensor(Image.open(tmp_path / "float.tif"))


def assert_one_line_error(path, match: str) -> None:
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"cannot read image '{path}': ")
    assert match in message and "\n" not in message


def test_missing_file(tmp_path):
    assert_one_line_error(tmp_path / "x.png", "No such file or directory")
    assert issubclass(ImageReadError, ValueError)


def test_directory_and_garbage(tmp_path):
    assert_one_line_error(tmp_path, "directory")
    (tmp_path / "junk.png").write_bytes(b"definitely not an image\n" * 10)
    assert_one_line_error(tmp_path / "junk.png", "cannot identify image file")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file(tmp_path, suffix):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / f"noise{suffix}"
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"^cannot read image '.*noise\.(png|jpg)': \S") as info:
        open_rgb(path)
    assert "\n" not in str(info.value)


def test_mask_binarises_any_nonzero_channel(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (0, 0, 1)  # faint blue: luminance 0, still masked (any channel)
    rgb[1, 2] = (255, 255, 255)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png")
    assert mask.shape == (1, 2, 3) and mask.dtype == torch.float32
    np.testing.assert_array_equal(mask[0].numpy(), [[1, 0, 0], [0, 0, 1]])

    grey = np.array([[0, 1, 255]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "g.png").numpy(), [[[0, 1, 1]]])


def test_mask_alpha_counts_as_black(tmp_path):
    rgba = np.array([[[255, 255, 255, 0], [255, 255, 255, 255], [0, 0, 0, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png").numpy(), [[[0, 1, 0]]])


def test_palette_mask_uses_colours_not_indices(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # index 0 is white
    pal.putdata([0, 1])
    pal.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png").numpy(), [[[1, 0]]])


def test_mask_size_mismatch(tmp_path):
    path = tmp_path / "m.png"
    Image.new("L", (600, 400)).save(path)
    assert read_mask(path, size=(400, 600)).shape == (1, 400, 600)
    with pytest.raises(ImageReadError) as info:
        read_mask(path, size=(512, 512))
    assert str(info.value) == f"mask '{path}' is 600x400 but the image is 512x512"
    with pytest.raises(ImageReadError) as info:  # drawn on a photo stored sideways, which is read upright
        read_mask(path, size=(600, 400))
    assert str(info.value) == (f"mask '{path}' is 600x400 but the image is 400x600 (turned: draw the mask on the "
                               "image as viewers show it)")


def test_missing_mask(tmp_path):
    with pytest.raises(ImageReadError, match="^cannot read mask '.*m.png': No such file"):
        read_mask(tmp_path / "m.png")


def test_an_animation_is_read_as_its_first_frame_and_said_so(tmp_path):
    """Its other frames were dropped without a word; a still image (or a phone's MPO JPEG) gets none."""
    frames = [Image.new("RGB", (20, 16), (60 * i, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "still.png")
    with pytest.warns(UserWarning, match=r"image '.*a\.gif' is an animation of 3 frames; only the first is read") \
            as caught:
        image = read_image(tmp_path / "a.gif")
    assert caught[0].filename == __file__ and image.shape == (3, 16, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "still.png")
    frames[0].save(tmp_path / "scan.tif", save_all=True, append_images=frames[1:])  # pages were dropped silently
    with pytest.warns(UserWarning, match=r"image '.*scan\.tif' is a document of 3 pages; only the first is read"):
        read_image(tmp_path / "scan.tif")


@pytest.mark.parametrize("strokes, alpha, hint", [
    (0, 255, True),  # black strokes on transparency: the region is empty, and the warning says why
    (255, 255, False),  # white strokes: the region is the strokes
    (0, 0, False),  # all transparent: empty, nothing drawn
])
def test_a_mask_drawn_in_black_on_transparency_says_why_it_is_empty(tmp_path, strokes, alpha, hint):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[2:5, 3:7] = (strokes, strokes, strokes, alpha)
    Image.fromarray(rgba).save(tmp_path / "m.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = read_mask(tmp_path / "m.png")
    assert mask.sum() == (12 if strokes else 0)
    assert [str(w.message).split(":")[0] for w in caught] == (
        [f"mask '{tmp_path / 'm.png'}' is drawn in black on a transparent background, so it marks nothing"]
        if hint else [])


def test_read_mask_says_what_size_it_takes(tmp_path):
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "m.png")
    for size in [(1, 3, 4, 6), 4, (3, 4, 6)]:  # image.shape instead of image.shape[-2:]
        with pytest.raises(TypeError, match=r"size is the image's \(H, W\), e.g. image.shape\[-2:\]"):
            read_mask(tmp_path / "m.png", size=size)
    assert read_mask(tmp_path / "m.png", size=torch.Size([4, 6])).shape == (1, 4, 6)


def test_a_reader_given_no_path_says_what_it_takes(tmp_path):
    with pytest.raises(TypeError, match="expected the image's file path, got Image; Protector.protect takes PIL"):
        read_image(Image.new("RGB", (4, 4)))
    with pytest.raises(TypeError, match="expected the mask's file path, got Tensor"):
        read_mask(torch.zeros(1, 4, 4))
