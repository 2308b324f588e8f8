"""Protector.protect on every input kind: the same kind back, the bound kept, bad input refused."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from generator import Protector
from generator.convert import from_tensor, mask_to_tensor, to_tensor
from generator.io import read_image
from generator.protector import save_generator
from generator.save import quantize_within_bound
from generator.unet import NoiseUNet, UNetConfig
from trainer.inpainting.inpainter import save_inpainter

EPS = 0.025
LEVELS = 6  # 0.025 * 255 = 6.375: an 8-bit result may move a pixel by at most 6 levels


def loud_net(seed: int = 0) -> NoiseUNet:
    """A tiny generator whose tanh saturates, so the noise is near +-eps and the bound does real work."""
    torch.manual_seed(seed)
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4))
    with torch.no_grad():
        net.head[0].weight.normal_(std=10.0)
    return net


@pytest.fixture
def protector() -> Protector:
    return Protector(loud_net())


def rgb(h: int = 24, w: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def box_mask(h: int = 24, w: int = 40) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[4:12, 6:20] = 255
    return m


def levels_moved(out, original: np.ndarray) -> int:
    return int(np.abs(np.asarray(out).astype(np.int16) - original.astype(np.int16)).max())


def test_tensor_in_tensor_out_batched_and_single(protector):
    torch.manual_seed(1)
    batch, mask = torch.rand(2, 3, 24, 40, dtype=torch.float64), torch.zeros(2, 1, 24, 40)
    mask[0, :, 2:10, 3:9] = 1
    mask[1, :, 12:20, 20:30] = 1
    out = protector.protect(batch, mask)
    assert out.shape == batch.shape and out.dtype == torch.float64 and out.device == batch.device
    assert (out - batch).abs().max() <= EPS + 1e-6 and (out - batch).abs().max() > 0.9 * EPS
    single = protector.protect(batch[1].float(), mask[1, 0])  # (3,H,W) image, (H,W) mask
    assert single.shape == (3, 24, 40) and single.dtype == torch.float32
    torch.testing.assert_close(single, out[1].float(), atol=1e-5, rtol=0)  # batched convs round differently
    shared = protector.protect(batch.float(), mask[1, 0])  # one (H,W) mask for the whole batch
    torch.testing.assert_close(shared[1], single, atol=1e-5, rtol=0)


def test_every_kind_gives_the_same_protection(tmp_path, protector):
    pixels, m = rgb(), box_mask()
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    expected = quantize_within_bound(protector.protect(x, torch.from_numpy(m)[None, None])[0], x[0], EPS)
    Image.fromarray(pixels).save(tmp_path / "img.png")
    Image.fromarray(m).save(tmp_path / "mask.png")

    from_numpy = protector.protect(pixels, m)
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.uint8
    np.testing.assert_array_equal(from_numpy, expected)
    from_pil = protector.protect(Image.fromarray(pixels), Image.fromarray(m))
    assert isinstance(from_pil, Image.Image) and from_pil.mode == "RGB" and from_pil.size == (40, 24)
    np.testing.assert_array_equal(np.asarray(from_pil), expected)
    from_path = protector.protect(tmp_path / "img.png", str(tmp_path / "mask.png"))
    assert isinstance(from_path, Image.Image)
    np.testing.assert_array_equal(np.asarray(from_path), expected)
    # masks of any kind with any image kind; a bool array and an RGB mask with one non-zero channel
    rgb_mask = np.zeros((24, 40, 3), np.uint8)
    rgb_mask[4:12, 6:20, 2] = 1
    for mask in (m > 0, Image.fromarray(rgb_mask), rgb_mask, torch.from_numpy(m)):
        np.testing.assert_array_equal(protector.protect(pixels, mask), expected)
    assert 0 < levels_moved(expected, pixels) <= LEVELS


def test_float_and_grey_numpy(protector):
    pixels = rgb()
    out = protector.protect(pixels.astype(np.float32) / 255, box_mask())
    assert out.dtype == np.float32 and out.shape == (24, 40, 3)
    assert np.abs(out - pixels / 255).max() <= EPS + 1e-6
    grey = pixels[..., 0]
    out = protector.protect(grey, box_mask())  # the noise differs per channel, so grey comes back as RGB
    assert out.dtype == np.uint8 and out.shape == (24, 40, 3)
    assert 0 < levels_moved(out, np.repeat(grey[..., None], 3, -1)) <= LEVELS


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_pil_modes_are_converted_not_rejected(protector, mode):
    if mode == "I;16":
        img = Image.fromarray(np.random.default_rng(0).integers(0, 65536, (24, 40), dtype=np.uint16))
    else:
        img = Image.fromarray(rgb()).convert(mode)
    original, _ = to_tensor(img)
    out = protector.protect(img, box_mask())
    assert out.mode == "RGB" and out.size == img.size
    back = torch.from_numpy(np.array(out)).permute(2, 0, 1).double() / 255
    assert (back - original[0].double()).abs().max() <= EPS + 1e-9


def test_round_trip_helpers():
    pixels = rgb()
    for value in (pixels, pixels.astype(np.float32) / 255, Image.fromarray(pixels),
                  torch.from_numpy(pixels).permute(2, 0, 1).double() / 255):
        tensor, kind = to_tensor(value)
        assert tensor.shape == (1, 3, 24, 40)
        assert tensor.dtype == (torch.float64 if isinstance(value, Tensor) else torch.float32)  # float64 is kept
        back = from_tensor(tensor, kind)
        assert type(back) is type(value)
        np.testing.assert_allclose(np.asarray(back, dtype=np.float64), np.asarray(value, dtype=np.float64),
                                   atol=1e-6)


def test_mask_conversion_any_non_zero_pixel():
    image = torch.zeros(1, 3, 2, 3)
    m = np.array([[0, 1, 0], [0, 0, 200]], np.uint8)
    expected = torch.tensor([[[[0.0, 1, 0], [0, 0, 1]]]])
    for mask in (m, Image.fromarray(m), torch.from_numpy(m).float() / 255, np.stack([0 * m, 0 * m, m], -1)):
        torch.testing.assert_close(mask_to_tensor(mask, image), expected)


def test_empty_mask_returns_the_image_unchanged_with_a_warning(protector):
    pixels = rgb()
    with pytest.warns(UserWarning, match="empty mask returned unchanged"):
        out = protector.protect(pixels, np.zeros((24, 40), np.uint8))
    np.testing.assert_array_equal(out, pixels)
    # in a batch, only the image with the empty mask is left alone
    batch, mask = torch.rand(2, 3, 24, 40), torch.zeros(2, 1, 24, 40)
    mask[1, :, :5, :5] = 1
    with pytest.warns(UserWarning):
        out = protector.protect(batch, mask)
    assert torch.equal(out[0], batch[0]) and not torch.equal(out[1], batch[1])


def test_full_mask_warns_that_nothing_can_be_protected(protector):
    with pytest.warns(UserWarning, match="covers the whole image"):
        out = protector.protect(rgb(), np.ones((24, 40)))
    assert out.shape == (24, 40, 3)  # training and evaluation code may pass such masks: no error


def test_bad_input_is_refused_clearly(protector):
    pixels = rgb()
    cases = [
        ((pixels, box_mask(24, 39)), ValueError, "does not match"),
        ((pixels * 1.0, box_mask()), ValueError, r"values must lie in \[0, 1\]"),
        ((pixels.astype(np.int32), box_mask()), ValueError, "uint8 or float"),
        ((torch.rand(4, 24, 40), box_mask()), ValueError, r"\(B,3,H,W\) or \(3,H,W\)"),
        ((torch.randint(0, 255, (3, 24, 40)), box_mask()), ValueError, "floating point"),
        ((torch.rand(3, 24, 40) * 255, box_mask()), ValueError, r"values must lie in \[0, 1\]"),
        ((torch.rand(3, 3, 24, 40), torch.ones(2, 1, 24, 40)), ValueError, "2 masks for 3 images"),
        (([[0.5]], box_mask()), TypeError, "unsupported image type list"),
        ((pixels, [[1]]), TypeError, "unsupported mask type list"),
    ]
    for args, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            protector.protect(*args)
    with pytest.raises(ValueError, match="unknown method 'fast'"):
        protector.protect(pixels, box_mask(), method="fast")
    with pytest.raises(ValueError, match="only applies to 'iterative', 'hybrid' and 'refine'"):
        protector.protect(pixels, box_mask(), steps=3)
    with pytest.raises(ValueError, match="need an inpainter"):
        protector.protect(pixels, box_mask(), method="iterative")


def test_iterative_and_hybrid(tmp_path, tiny_inpainter, steerable_inpainter):
    path = save_generator(loud_net(), tmp_path / "g.safetensors")
    protector = Protector.from_checkpoint(path, inpainter=save_inpainter(tiny_inpainter, tmp_path / "i.safetensors"))
    torch.manual_seed(0)
    image, mask = torch.rand(1, 3, 24, 32), torch.zeros(1, 1, 24, 32)
    mask[..., 6:14, 8:20] = 1
    one_pass = protector.protect(image, mask)
    with_lama = protector.protect(image, mask, method="iterative", steps=1)  # the loaded FFC inpainter runs
    assert (with_lama - image).abs().max() <= EPS + 1e-6 and not torch.allclose(with_lama, one_pass)

    protector.inpainter = steerable_inpainter  # a cheap toy inpainter for the rest
    # hybrid with 0 steps is exactly the generator's result: the generator's noise is the starting point
    torch.testing.assert_close(protector.protect(image, mask, method="hybrid", steps=0), one_pass)
    hybrid = protector.protect(image, mask, method="hybrid", steps=2)
    iterative = protector.protect(image, mask, method="iterative", steps=2)
    for out in (hybrid, iterative):
        assert (out - image).abs().max() <= EPS + 1e-6
        assert not torch.allclose(out, one_pass)
    assert not torch.allclose(hybrid, iterative)
    # deterministic, and usable where autograd is off (e.g. inside Lightning's predict loop)
    with torch.inference_mode():
        torch.testing.assert_close(protector.protect(image, mask, method="iterative", steps=2), iterative)


def test_optimiser_alone_needs_no_generator(steerable_inpainter):
    torch.manual_seed(0)
    image, mask = torch.rand(1, 3, 24, 32), torch.zeros(1, 1, 24, 32)
    mask[..., 6:14, 8:20] = 1
    alone = Protector.iterative(steerable_inpainter)
    with_generator = Protector(loud_net(), inpainter=steerable_inpainter)
    assert alone.net is None and alone.eps == with_generator.eps == EPS
    torch.testing.assert_close(alone.protect(image, mask, method="iterative", steps=2),
                               with_generator.protect(image, mask, method="iterative", steps=2))
    # its default method is the optimiser; a Protector with a generator defaults to one pass of it
    torch.testing.assert_close(alone.protect(image, mask, steps=2), alone.protect(image, mask, "iterative", steps=2))
    torch.testing.assert_close(with_generator.protect(image, mask), with_generator.protect(image, mask, "generator"))
    for method in ("generator", "hybrid"):
        with pytest.raises(ValueError, match="has no generator"):
            alone.protect(image, mask, method=method)


def test_device_and_dtype(tmp_path):
    path = save_generator(loud_net(), tmp_path / "g.safetensors")
    single = Protector.from_checkpoint(path)
    double = Protector.from_checkpoint(path, device="cpu", dtype=torch.float64)
    assert next(double.net.parameters()).dtype == torch.float64 and double.device == torch.device("cpu")
    image, mask = torch.rand(1, 3, 24, 40), torch.zeros(1, 1, 24, 40)
    mask[..., :8, :8] = 1
    out = double.protect(image, mask)
    assert out.dtype == torch.float32  # the input's dtype, whatever the model's
    torch.testing.assert_close(out, single.protect(image, mask), atol=1e-5, rtol=0)
    assert single.to(dtype=torch.float64).dtype == torch.float64


def test_bfloat16_generator_keeps_the_image_precision_and_the_exact_bound(tmp_path, steerable_inpainter,
                                                                          tiny_inpainter):
    path = save_generator(loud_net(), tmp_path / "g.safetensors")
    single = Protector.from_checkpoint(path, inpainter=steerable_inpainter)
    half = Protector.from_checkpoint(path, dtype=torch.bfloat16, inpainter=steerable_inpainter)
    assert next(half.net.parameters()).dtype == torch.bfloat16
    torch.manual_seed(0)
    image, mask = torch.rand(2, 3, 24, 40), torch.zeros(2, 1, 24, 40)
    mask[..., 4:12, 6:20] = 1
    out = half.protect(image, mask)
    # the sum is taken in float32: bfloat16 (8 significant bits) would move pixels by up to 2e-3 more, and its
    # eps rounds up to 0.02502, so only a clamp in the image's precision keeps the bound exact
    assert half.noise(image, mask).abs().max() <= EPS
    assert out.dtype == torch.float32 and (out - image).abs().max() <= EPS + 1e-6  # float32's own rounding
    reference = single.protect(image, mask)
    # the same noise but where it crosses zero: there bfloat16 may flip its sign (1.3% of the default's pixels)
    moved = (out - reference).abs()
    assert moved.mean() < 0.05 * EPS and (moved > 0.1 * EPS).float().mean() < 0.05 and moved.max() > 0
    # the optimiser still starts from the bfloat16 generator's noise, in float32
    hybrid = half.protect(image, mask, method="hybrid", steps=1)
    assert hybrid.dtype == torch.float32 and (hybrid - image).abs().max() <= EPS + 1e-6
    # the optimiser's convolutions (here an FFC inpainter's) run in bfloat16 too; its noise and the bound in float32
    full_opt = Protector.iterative(tiny_inpainter).protect(image, mask, method="iterative", steps=2)
    half_opt = Protector.iterative(tiny_inpainter, dtype=torch.bfloat16).protect(image, mask, method="iterative",
                                                                                 steps=2)
    assert half_opt.dtype == torch.float32 and (half_opt - image).abs().max() <= EPS + 1e-6
    assert not torch.equal(half_opt, full_opt)
    with pytest.raises(ValueError, match="needs the torch backend"):
        Protector.from_checkpoint(path, dtype=torch.bfloat16, backend="onnx")
    onnx = Protector.from_checkpoint(path, backend="onnx")
    with pytest.raises(ValueError, match="needs the torch backend"):  # .to() ran the float32 export as before
        onnx.to(dtype=torch.bfloat16)
    assert onnx.dtype == torch.float32


def test_bound_holds_after_the_png_round_trip_seeded_property(tmp_path, protector):
    """~50 random sizes and contents, 8-bit and 16-bit sources, extremes included: the saved PNG keeps the bound."""
    rng = np.random.default_rng(2024)
    for trial in range(50):
        h, w = (int(v) for v in rng.integers(16, 301, size=2))
        sixteen = trial % 2 == 1
        top = 65535 if sixteen else 255
        pixels = rng.integers(0, top + 1, (h, w) if sixteen else (h, w, 3))
        # flat extremes: where the noise would push past 0 or the maximum, clipping must still keep the bound
        pixels[: h // 4] = 0
        pixels[-(h // 4):] = top
        src = tmp_path / f"src{trial}.png"
        Image.fromarray(pixels.astype(np.uint16 if sixteen else np.uint8)).save(src)
        mask = np.zeros((h, w), bool)
        y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        mask[y:y + int(rng.integers(1, h - y)), x:x + int(rng.integers(1, w - x))] = True

        protector.protect(src, mask).save(tmp_path / "out.png")
        back = torch.from_numpy(np.array(Image.open(tmp_path / "out.png"))).permute(2, 0, 1).double() / 255
        original = read_image(src).double()
        assert back.shape == original.shape
        assert (back - original).abs().max() <= EPS + 1e-9, (trial, h, w, sixteen)
        if not sixteen:
            assert (back - original).abs().max() > 5 / 255  # the loud net really moved pixels by ~6 levels


def test_generator_package_imports_without_trainer():
    import subprocess
    import sys

    code = ("import sys; sys.modules['trainer'] = None\n"  # importing trainer would now fail
            "import numpy as np; from generator import Protector; from generator.unet import NoiseUNet, UNetConfig\n"
            "p = Protector(NoiseUNet(UNetConfig(widths=[8, 16], groups=4)))\n"
            "print(p.protect(np.zeros((16, 16, 3), np.uint8), np.eye(16)).shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert proc.stdout.strip() == "(16, 16, 3)"


def test_no_warning_for_ordinary_masks(protector):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        protector.protect(rgb(), box_mask())
