"""Edges of the public API found by trying odd inputs: each is refused in one sentence at the boundary, or gives a
result within the documented guarantees, never NaN or a deep torch error."""

import math

import numpy as np
import pytest
import torch

from generator import Protector
from generator.save import save_protected, write_image
from trainer import IterativeConfig, load_inpainter, protect_iterative


def batch(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4:size // 2 + 4, size // 4:size // 2 + 4] = 1
    return torch.rand(1, 3, size, size), mask


@pytest.fixture(scope="module")
def inpainter():
    return load_inpainter("lama-tiny")


def test_refine_in_float16_steps_in_float32():
    """Its field came out of autocast in float16, where Adam's eps (1e-8) is 0: every pixel was NaN."""
    image, mask = batch()
    protector = Protector.from_checkpoint(dtype=torch.float16, inpainter="lama-tiny")
    protected = protector.protect(image, mask, method="refine", steps=1)
    assert torch.isfinite(protected).all() and (protected - image).abs().max() <= 0.025


def test_a_method_whose_noise_is_not_finite_is_an_error(monkeypatch):
    image, mask = batch()
    protector = Protector.from_checkpoint(inpainter="lama-tiny")
    monkeypatch.setattr(protector, "_refine", lambda image, mask, steps: torch.full_like(image, math.nan))
    with pytest.raises(RuntimeError, match="the 'refine' method's noise is not finite"):
        protector.protect(image, mask, method="refine")


def test_the_noise_of_an_empty_mask_is_zero_as_protect_returns_it_unchanged():
    image, mask = batch()
    noise = Protector.from_checkpoint().noise(torch.cat([image, image]), torch.cat([mask, torch.zeros_like(mask)]))
    assert noise[0].abs().max() > 0.02 and noise[1].abs().max() == 0


def test_the_optimiser_leaves_the_callers_tensors_alone(inpainter):
    image, mask = batch()
    given = image.clone().requires_grad_(True)
    result = protect_iterative(inpainter, given, mask, IterativeConfig(steps=1))
    assert given.grad is None and torch.equal(given.detach(), image)
    # any non-zero pixel is protected, as for Protector: a negative mask is the same region
    again, first = (protect_iterative(inpainter, image, m, IterativeConfig(steps=1),
                                      generator=torch.Generator().manual_seed(1)) for m in (-mask, mask))
    assert torch.equal(again.noise, first.noise) and result.noise.abs().max() <= 0.025


@pytest.mark.parametrize("options,message", [
    ({"eps": "0.1"}, "eps must be a finite number, got '0.1'"),
    ({"eps": 2}, "eps must be positive and at most 1, got 2.0"),
    ({"lr": math.inf}, "lr must be a finite number, got inf"),
    ({"init_scale": math.nan}, "init_scale must be a finite number"),
    ({"init_scale": 0.5}, r"init_scale must be in \[0, eps\]"),
    ({"betas": (1.5, 0.5)}, r"betas must be two numbers in \[0, 1\)"),
    ({"adam_eps": -1}, "adam_eps must be positive"),
    ({"dilation": 2.5}, "dilation must be a whole number >= 1"),
    ({"eot_samples": 2.5}, "eot_samples must be a whole number >= 1"),
])
def test_optimiser_settings_are_checked_when_made(options, message):
    with pytest.raises(ValueError, match=message):
        IterativeConfig(**options)


def test_numpy_integers_are_whole_numbers():
    assert IterativeConfig(steps=np.int64(3), eot_samples=np.int32(2)).steps == 3


@pytest.mark.parametrize("options,error,message", [
    ({"target": torch.tensor([math.nan, 0.0, 0.0])}, ValueError, r"target values must lie in \[0, 1\]"),
    ({"target": torch.zeros(4)}, ValueError, r"target must be a tensor \(3,\) or \(1,3\)"),
    ({"init_noise": torch.full((1, 3, 32, 32), math.nan)}, ValueError, "init_noise holds NaN or inf values"),
    ({"init_noise": np.zeros((1, 3, 32, 32), np.float32)}, TypeError, "init_noise must be a float tensor"),
])
def test_the_optimisers_own_inputs_are_refused_before_any_step(inpainter, options, error, message):
    image, mask = batch()
    with pytest.raises(error, match=message):
        protect_iterative(inpainter, image, mask, IterativeConfig(steps=1), **options)


def test_an_image_too_small_for_the_inpainter_is_one_sentence(inpainter):
    image, mask = batch(8)
    with pytest.raises(ValueError, match="the inpainter takes images larger than 8 px on each side, got 8x8"):
        protect_iterative(inpainter, image, mask, IterativeConfig(steps=1))
    assert inpainter(*batch(9)).shape == (1, 3, 9, 9)  # padded to 16: its bottleneck is 2 px


def test_saving_refuses_what_would_break_the_bound(tmp_path):
    original = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match=r"the protected image's values must lie in \[0, 1\], got \[nan, nan\]"):
        save_protected(torch.full((3, 8, 8), math.nan), original, tmp_path / "x.png", 0.025)
    with pytest.raises(ValueError, match=r"must be a float tensor \(3,H,W\) in \[0, 1\], got \(1, 3, 8, 8\)"):
        save_protected(original[None], original[None], tmp_path / "x.png", 0.025)
    with pytest.raises(ValueError, match="cannot tell the image format from the name \\(no extension\\); use .png"):
        write_image(original, tmp_path / "noext")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_name_where_a_network_or_a_device_goes_is_one_sentence():
    with pytest.raises(TypeError, match=r"for a name or a file use Protector.from_checkpoint\('generator-lama-tiny'\)"):
        Protector("generator-lama-tiny")
    with pytest.raises(ValueError, match="device 'None' cannot be used here: not a torch device"):
        Protector.iterative(device=None)
    with pytest.raises(TypeError, match="an inpainter checkpoint is a shipped name or a file path, got NoneType"):
        load_inpainter(None)


def test_a_float_mask_with_nan_is_refused_as_an_array_is(tmp_path):
    from PIL import Image

    from generator import read_mask

    image, _ = batch()
    samples = np.zeros((32, 32), np.float32)
    samples[8:16, 8:16], samples[0, 0] = 1, math.nan  # NaN != 0 read the corner as protected
    mask = Image.fromarray(samples, mode="F")
    with pytest.raises(ValueError, match="the mask holds NaN values"):
        Protector.from_checkpoint().protect(image, mask)
    mask.save(tmp_path / "m.tif")
    with pytest.raises(ValueError, match=f"mask '{tmp_path / 'm.tif'}' holds NaN values"):
        read_mask(tmp_path / "m.tif")
