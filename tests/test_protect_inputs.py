"""Protector.protect on the inputs a new user plausibly has: the bound in every float dtype, EXIF-rotated PIL
images, and mistakes refused in one sentence rather than passed through or failed deep inside torch."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from generator import Protector
from tests.test_protect_api import EPS, box_mask, loud_net, rgb


@pytest.fixture
def protector() -> Protector:
    return Protector(loud_net())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_float_tensors_keep_the_bound_in_their_own_dtype(protector, dtype):
    torch.manual_seed(0)
    image = torch.rand(3, 24, 40, dtype=torch.float64)
    image[:, :4], image[:, 4:8], image[:, 8:12] = 0, 1, 0.026  # near 0 the output's ulp is finer than the input's
    image = image.to(dtype)
    out = protector.protect(image, torch.from_numpy(box_mask()))
    assert out.dtype == dtype and out.shape == image.shape
    # no slack: rounding to the dtype (2e-3 in bfloat16, an ulp in float32) used to carry pixels past eps
    assert ((out - image).abs() <= EPS).all()
    assert ((out.double() - image.double()).abs() <= EPS).all()
    assert (out.double() - image.double()).abs().max() > 0.9 * EPS  # the loud net still moves pixels to the bound


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_arrays_keep_the_bound_in_their_own_dtype(protector, dtype):
    image = (rgb() / 255).astype(dtype)
    image[:4], image[8:12] = 7 / 255, 0.026
    out = protector.protect(image, box_mask())
    assert out.dtype == dtype and out.shape == image.shape
    assert (np.abs(out - image) <= EPS).all()
    assert (np.abs(out.astype(np.float64) - image.astype(np.float64)) <= EPS).all()


def test_float64_input_keeps_its_precision(protector):
    # rounded through float32 it moved every pixel, and an "unchanged" image came back changed
    image = torch.rand(1, 3, 24, 40, dtype=torch.float64)
    with pytest.warns(UserWarning, match="empty mask"):
        assert torch.equal(protector.protect(image, torch.zeros(24, 40)), image)
        assert np.array_equal(protector.protect(image[0].permute(1, 2, 0).numpy(), np.zeros((24, 40))),
                              image[0].permute(1, 2, 0).numpy())
    out = protector.protect(image, torch.from_numpy(box_mask()))
    untouched = out == image
    assert untouched.float().mean() > 0.1  # where the noise is zero, the float64 pixels are the caller's own


def test_exif_rotated_pil_image_is_read_upright_like_its_path(tmp_path, protector):
    """A phone photo stored sideways with EXIF orientation 6; the mask is drawn on what a viewer shows."""
    upright, mask = rgb(24, 40), box_mask(24, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer turns the stored pixels 90 degrees clockwise
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "photo.png", exif=exif.tobytes())
    opened = Image.open(tmp_path / "photo.png")
    assert opened.size == (24, 40) and ImageOps.exif_transpose(opened).size == (40, 24)

    from_path = protector.protect(tmp_path / "photo.png", mask)
    from_pil = protector.protect(Image.open(tmp_path / "photo.png"), mask)  # was: "mask size 40x24 ... 24x40"
    assert from_pil.size == (40, 24)
    np.testing.assert_array_equal(np.asarray(from_pil), np.asarray(from_path))
    # a PIL mask with the orientation tag is turned upright too
    stored_mask = Image.fromarray(mask).transpose(Image.Transpose.ROTATE_90)
    stored_mask.save(tmp_path / "mask.png", exif=exif.tobytes())
    np.testing.assert_array_equal(np.asarray(protector.protect(upright, Image.open(tmp_path / "mask.png"))),
                                  protector.protect(upright, mask))


def refused(call, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)


def test_nan_empty_and_meta_inputs_are_refused_in_one_sentence(protector):
    mask = box_mask()
    nan = np.full((24, 40, 3), np.nan, np.float32)
    refused(lambda: protector.protect(nan, mask), ValueError, r"must lie in \[0, 1\], got \[nan")  # was NaN out
    refused(lambda: protector.protect(torch.from_numpy(nan).permute(2, 0, 1), mask), ValueError, "got \\[nan")
    # zero-size images: a tensor failed in torch's min(), an array came back empty with two warnings
    refused(lambda: protector.protect(np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0))), ValueError, "no pixels")
    refused(lambda: protector.protect(torch.rand(3, 0, 0), torch.zeros(0, 0)), ValueError, "no pixels")
    # tensors on 'meta' hold no values: torch said "Tensor.item() cannot be called on meta tensors"
    refused(lambda: protector.protect(torch.empty(3, 24, 40, device="meta"), mask), ValueError, "'meta' device")
    refused(lambda: protector.protect(torch.rand(3, 24, 40), torch.empty(24, 40, device="meta")), ValueError,
            "'meta' device")


def test_protect_batch_refuses_what_protect_refuses(protector):
    image, mask = torch.from_numpy(rgb()).permute(2, 0, 1)[None], torch.from_numpy(box_mask())[None, None]
    # both came back almost white, 0.996 away from the image, without a word
    refused(lambda: protector.protect_batch(image, mask), ValueError, "floating point in \\[0, 1\\], got torch.uint8")
    refused(lambda: protector.protect_batch(image.float(), mask), ValueError, r"must lie in \[0, 1\], got \[0, 255\]")
    refused(lambda: protector.protect_batch(torch.empty(1, 3, 24, 40, device="meta"), mask), ValueError, "'meta'")
    out = protector.protect_batch(image.float() / 255, mask)
    assert (out - image / 255).abs().max() <= EPS + 1e-6


def test_argument_mistakes_are_refused_in_one_sentence(tmp_path, protector):
    from generator.protector import save_generator

    path = save_generator(loud_net(), tmp_path / "g.safetensors")
    # a name, as --dtype takes it, failed inside nn.Module.to with its list of overloads
    refused(lambda: Protector.from_checkpoint(path, dtype="bfloat16"), TypeError, "resolve_dtype")
    refused(lambda: Protector(loud_net(), dtype=torch.int32), TypeError, "floating-point torch.dtype")
    refused(lambda: protector.to(dtype="float32"), TypeError, "floating-point torch.dtype")
    # a fractional step count failed inside the optimiser's range()
    refused(lambda: protector.protect(rgb(), box_mask(), method="iterative", steps=1.5), TypeError, "whole number")


def test_a_mask_layout_mistake_names_the_shape_given(protector):
    # an (H,W,1) tensor is read as (B,H,W): "mask size 1x40 does not match" alone sent users looking for a 1x40 mask
    mask = torch.from_numpy(box_mask())[..., None]
    refused(lambda: protector.protect(torch.rand(3, 24, 40), mask), ValueError, r"\(shape \(24, 40, 1\)\)")


@pytest.mark.parametrize("device, reason", [("gpu", "not a torch device"),
                                            ("meta", "'meta' tensors hold no values; use cpu or a GPU")]
                         + ([] if torch.cuda.is_available() else [("cuda", "has no cuda device")]))
def test_a_device_this_torch_cannot_use_is_refused_in_one_sentence(protector, device, reason):
    # torch said "Expected one of cpu, cuda, ... device type at start of device string", or failed deep inside
    # Module.to (an AssertionError on a CPU-only build), or later, on the first protect
    refused(lambda: Protector(loud_net(), device=device), ValueError, f"device '{device}' cannot be used here: .*"
                                                                       f"{reason}")
    refused(lambda: protector.to(device=device), ValueError, reason)
    assert protector.device == torch.device("cpu")
