"""``Protector.protect_batch`` and ``noise``, the tensor entries a pipeline calls directly: the same methods, defaults,
mask rule and bound as ``protect``, an ordinary tensor back, and each mistake refused in one sentence."""

from __future__ import annotations

import warnings

import pytest
import torch

from generator import Protector
from generator.protector import DEFAULT_STEPS
from tests.test_protect_api import EPS, loud_net
from trainer.objective.iterative import IterativeConfig, protect_iterative


@pytest.fixture
def protector() -> Protector:
    return Protector(loud_net())


def batch(b: int = 2, h: int = 24, w: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    mask = torch.zeros(b, 1, h, w)
    mask[:, :, 4:12, 6:20] = 1
    return torch.rand(b, 3, h, w), mask


def test_the_result_is_an_ordinary_tensor_within_the_bound(protector):
    image, mask = batch()
    image.requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warned twice about reading values off a graph
        out = protector.protect_batch(image, mask)
    assert not out.is_inference() and not out.requires_grad
    out[:, :, 0, 0] = 0  # in place: "Inplace update to inference tensor" before
    # no float32 slack: the sum's rounding carried pixels to 0.025000006
    assert float((protector.protect_batch(image, mask).double() - image.detach().double()).abs().max()) <= EPS
    assert protector.protect(image.detach()[0], mask[0]).requires_grad is False


def test_the_defaults_and_the_mask_rule_are_protect_s(protector, monkeypatch):
    protector.inpainter = torch.nn.Identity()  # never called: _optimise is replaced below
    seen = []
    monkeypatch.setattr(Protector, "_optimise", lambda self, image, mask, steps, init: seen.append(steps)
                        or torch.zeros_like(image))
    image, mask = batch(1)
    for method in ("iterative", "hybrid"):
        protector.protect_batch(image, mask, method)
    assert seen == [DEFAULT_STEPS["iterative"], DEFAULT_STEPS["hybrid"]]  # protect_batch ran 5 steps for both
    # any non-zero pixel is protected, as protect reads it: a -1 mask was "empty" here and protected there
    assert torch.equal(protector.protect_batch(image, -mask), protector.protect_batch(image, mask))


@pytest.mark.parametrize("call, error, message", [
    (lambda p, x, m: p.protect_batch(x, m, "nope"), ValueError, "unknown method 'nope'; choose from"),
    (lambda p, x, m: p.protect(x, m, ""), ValueError, "unknown method ''; choose from"),  # was the default
    (lambda p, x, m: p.protect_batch(x, m, "generator", -3), ValueError, "steps must be >= 0 and only applies"),
    (lambda p, x, m: p.protect_batch(x, m, "iterative", 0), ValueError, "the 'iterative' method needs steps >= 1"),
    (lambda p, x, m: p.protect(x[0], m[0], "hybrid", True), TypeError, "steps must be a whole number, got True"),
    (lambda p, x, m: p.protect_batch(x, m.masked_fill(m == 0, float("nan"))), ValueError, "the mask holds NaN"),
    (lambda p, x, m: p.protect(x[0], m[0].masked_fill(m[0] == 0, float("nan"))), ValueError, "the mask holds NaN"),
    (lambda p, x, m: p.protect(x[0], m[0, 0].numpy() * float("nan")), ValueError, "the mask holds NaN"),
    (lambda p, x, m: p.noise(x[0], m[0]), ValueError, r"expected image \(B,3,H,W\) and mask \(B,1,H,W\)"),
    (lambda p, x, m: p.noise(x * 255, m), ValueError, "image values must lie in"),
    (lambda p, x, m: Protector.iterative(torch.nn.Identity()).protect(x[0], m[0], "refine"), ValueError,
     "this Protector has no generator"),  # it said "use 'hybrid'", which fails there too
    (lambda p, x, m: p.protect(x[0, :1], m[0]), ValueError, r"grey\? x.expand\(3, -1, -1\)"),
    (lambda p, x, m: p.protect(x[0].permute(1, 2, 0), m[0]), ValueError, r"channels last\? x.permute\(2, 0, 1\)"),
    (lambda p, x, m: p.protect(x[0], m[0].expand(3, -1, -1)), ValueError, r"an RGB mask\? mask.any\(0\)"),
    (lambda p, x, m: p.protect(x[0], m[0].permute(1, 2, 0)), ValueError, r"channels last\? mask\[\.\.\., 0\]"),
    (lambda p, x, m: p.protect(x[0], m[0].numpy()), ValueError, r"channels first\? mask\[0\]"),
    # each of these failed deep inside with an AttributeError or torch's own words
    (lambda p, x, m: p.protect_batch(x[0].permute(1, 2, 0).numpy(), m), TypeError,
     "the image must be a tensor, got ndarray; Protector.protect takes PIL images"),
    (lambda p, x, m: p.noise(x, m, "red"), ValueError, r"target must be a tensor \(3,\) or \(1,3\)"),
    (lambda p, x, m: p.noise(x, m, torch.tensor([255.0, 0, 0])), ValueError, "target values must lie in"),
    (lambda p, x, m: Protector(None, inpainter=True), TypeError, "inpainter must be a module, a shipped name"),
])
def test_mistakes_are_one_sentence(protector, call, error, message):
    image, mask = batch(1)
    with pytest.raises(error, match=message):
        call(protector, image, mask)


def test_the_optimiser_s_own_entry_checks_its_inputs():
    with pytest.raises(ValueError, match="steps must be a whole number >= 0, got -1"):
        IterativeConfig(steps=-1)
    with pytest.raises(ValueError, match="lr must be positive, got -1"):
        IterativeConfig(lr=-1)
    image, mask = batch(1)
    conv = torch.nn.Conv2d(4, 3, 1)  # float32 weights
    mistakes = [  # each failed deep inside, or (0..255) came back almost white without a word
        ((torch.nn.Identity(), image[0], mask[0]), ValueError, r"expected image \(B,3,H,W\)"),
        ((conv, image * 255, mask), ValueError, r"image values must lie in \[0, 1\]"),
        ((conv, image.double(), mask), ValueError, r"the image is torch.float64 but the inpainter runs in torch.float32"),
        ((conv, image.repeat(2, 1, 1, 1), mask), ValueError, r"mask \(1, 1, 24, 40\) does not match image"),
        (("lama-tiny", image, mask), TypeError, "the inpainter must be a module .trainer.load_inpainter"),
        ((conv, image, mask, {"steps": 1}), TypeError, "config must be an IterativeConfig, got dict"),
    ]
    for args, error, message in mistakes:
        with pytest.raises(error, match=message):
            protect_iterative(*args)
    with pytest.raises(ValueError, match=r"init_noise \(1, 3, 4, 4\) does not match image"):
        protect_iterative(conv, image, mask, init_noise=torch.zeros(1, 3, 4, 4))


def test_the_noise_is_an_ordinary_tensor(protector):
    image, mask = batch()
    noise = protector.noise(image, mask, torch.tensor([0.0, 1.0, 0.0]))  # one target for the batch
    assert not noise.is_inference() and noise.abs().max() <= EPS
    noise.mul_(0.5)  # "Inplace update to inference tensor outside InferenceMode" before


def test_its_warnings_point_at_the_caller_s_line(protector):
    """Called directly or through ``protect``, a warning names the user's file, not the package's own."""
    image, mask = batch()
    mask[0] = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        protector.protect_batch(image, mask)
        protector.protect(image[0], mask[0])
        protector.protect_batch(image, torch.ones_like(mask))
    assert len(caught) == 3 and all(w.filename == __file__ for w in caught), [(w.filename, w.message) for w in caught]


def test_target_colour_says_what_it_takes():
    """A (3,H,W) image gave an IndexError, a uint8 one torch's mean() error, an array an AttributeError."""
    from generator import target_colour

    for bad in (torch.rand(3, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.rand(1, 8, 8, 3).numpy()):
        with pytest.raises(ValueError, match="target_colour takes float images"):
            target_colour(bad)
