import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer.inpainting.discriminator import NLayerDiscriminator
from trainer.training.inpainter_losses import (
    amplitude_spectrum_loss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    hole_l1,
    masked_l1_loss,
    mean_colour_fill,
    r1_penalty,
    resize_mask,
)


def box_mask(b: int, h: int, w: int, top: int, left: int, bottom: int, right: int) -> torch.Tensor:
    m = torch.zeros(b, 1, h, w)
    m[..., top:bottom, left:right] = 1
    return m


# --- discriminator -------------------------------------------------------------------------------

def test_discriminator_layout_and_shapes_match_pix2pixhd():
    d = NLayerDiscriminator(3, ndf=8, n_layers=3)
    logits, features = d(torch.rand(2, 3, 64, 64))
    # 4x4 convs with padding 2: stride 2 three times (64 -> 33 -> 17 -> 9), then two stride-1 layers (+1 each)
    assert logits.shape == (2, 1, 11, 11)
    assert [f.shape[1] for f in features] == [8, 16, 32, 64]
    assert features[-1].shape[-1] == 10
    # upstream parameter names, so a LaMa discriminator state dict would load
    assert {k.split(".")[0] for k in d.state_dict()} == {"model0", "model1", "model2", "model3", "model4"}
    assert "model0.1.weight" not in d.state_dict()  # no norm on the first layer


def test_discriminator_widths_are_capped():
    d = NLayerDiscriminator(3, ndf=16, n_layers=2, max_features=24)
    _, features = d(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in features] == [16, 24, 24]


# --- masked L1 -----------------------------------------------------------------------------------

def test_masked_l1_weights_hole_and_known_region_separately():
    target = torch.zeros(1, 3, 4, 4)
    mask = box_mask(1, 4, 4, 0, 0, 2, 4)  # top half is the hole
    pred = target.clone()
    pred[..., :2, :] = 1.0  # error only in the hole
    assert masked_l1_loss(pred, target, mask, weight_missing=0, weight_known=10) == 0
    # averaged over all pixels, as LaMa: half the pixels carry an error of 1 with weight 3
    assert masked_l1_loss(pred, target, mask, weight_missing=3, weight_known=10).item() == pytest.approx(1.5)
    pred = target.clone()
    pred[..., 2:, :] = 1.0  # error only in the known region
    assert masked_l1_loss(pred, target, mask, weight_missing=3, weight_known=10).item() == pytest.approx(5.0)


# --- high-frequency term -------------------------------------------------------------------------

def grating(h: int, w: int, period: int, shift: int = 0) -> torch.Tensor:
    x = torch.arange(w, dtype=torch.float32)
    row = 0.5 + 0.4 * torch.sin(2 * math.pi * (x - shift) / period)
    return row.expand(1, 3, h, w).clone()


def test_amplitude_spectrum_is_zero_for_identical_images_and_positive_otherwise():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 64)
    mask = box_mask(2, 64, 64, 8, 8, 40, 40)
    assert amplitude_spectrum_loss(image, image, mask).item() == 0
    other = mask * torch.rand(2, 3, 64, 64) + (1 - mask) * image
    assert amplitude_spectrum_loss(other, image, mask).item() > 0.01


def test_amplitude_spectrum_prefers_a_shifted_texture_to_a_blurred_one():
    # the reason for the term: pixel losses prefer the blur, this one the sharp but misplaced texture
    target = grating(32, 32, period=8)
    shifted = grating(32, 32, period=8, shift=3)
    blurred = F.avg_pool2d(target, 5, stride=1, padding=2, count_include_pad=False)
    mask = torch.ones(1, 1, 32, 32)
    assert amplitude_spectrum_loss(shifted, target, mask).item() < 1e-5
    assert amplitude_spectrum_loss(blurred, target, mask).item() > 0.01
    assert hole_l1(shifted, target, mask).item() > hole_l1(blurred, target, mask).item()


def test_amplitude_spectrum_only_counts_patches_with_hole():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 64, 64)
    pred = target.clone()
    pred[..., :32, :32] = 0.5  # wrong only in the top-left patch
    hole_elsewhere = box_mask(1, 64, 64, 40, 40, 60, 60)
    assert amplitude_spectrum_loss(pred, target, hole_elsewhere, patch=32).item() == 0
    assert amplitude_spectrum_loss(pred, target, box_mask(1, 64, 64, 0, 0, 8, 8), patch=32).item() > 0


def test_amplitude_spectrum_gradient_flows_and_is_finite_at_zero_error():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 32, 32)
    mask = box_mask(1, 32, 32, 4, 4, 20, 20)
    pred = target.clone().requires_grad_(True)
    amplitude_spectrum_loss(pred, target, mask, patch=16).backward()
    assert torch.isfinite(pred.grad).all()
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    amplitude_spectrum_loss(pred, target, mask, patch=16).backward()
    assert pred.grad.abs().sum() > 0


# --- adversarial ---------------------------------------------------------------------------------

def test_generator_loss_is_non_saturating():
    logits = torch.tensor([[-5.0, 0.0, 5.0]]).requires_grad_(True)
    loss = generator_adversarial_loss(logits)
    assert loss.item() == pytest.approx(F.softplus(-logits).mean().item())
    loss.backward()
    # raising D's opinion of the fake lowers the loss, and a confident "fake" still gives a strong gradient
    assert (logits.grad < 0).all()
    assert logits.grad[0, 0].abs() > 0.3


class LinearD(nn.Module):
    """A 1x1-conv 'discriminator' whose input gradient is known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -2.0, 3.0]).reshape(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_r1_is_the_squared_input_gradient_norm_and_trains_the_discriminator():
    d = LinearD()
    real = torch.rand(2, 3, 4, 5).requires_grad_(True)
    penalty = r1_penalty(d(real), real)
    # d logits.sum() / dx = w at every pixel: ||grad||^2 = H * W * |w|^2 = 20 * 14 per image
    assert penalty.item() == pytest.approx(20 * 14)
    penalty.backward()
    # d/dw (H W |w|^2) = 2 H W w: the penalty reaches D's weights through the double backward
    assert torch.allclose(d.conv.weight.grad.flatten(), 2 * 20 * torch.tensor([1.0, -2.0, 3.0]))


def test_r1_needs_real_images_with_grad_and_is_zero_without_grad_mode():
    d = LinearD()
    real = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(d(real), real)
    with torch.no_grad():
        assert r1_penalty(d(real), real).item() == 0


def test_discriminator_loss_adds_r1_times_gp_coef():
    torch.manual_seed(0)
    d = LinearD()
    real = torch.rand(2, 3, 4, 4).requires_grad_(True)
    real_logits, fake_logits = d(real), torch.randn(2, 1, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    without, _ = discriminator_adversarial_loss(real_logits, fake_logits, real, mask, gp_coef=0.0,
                                                mask_as_fake_target=False)
    with_gp, metrics = discriminator_adversarial_loss(real_logits, fake_logits, real, mask, gp_coef=0.5,
                                                      mask_as_fake_target=False)
    assert metrics["r1"].item() == pytest.approx(16 * 14)
    assert (with_gp - without).item() == pytest.approx(0.5 * 16 * 14, rel=1e-5)


def test_mask_as_fake_target_calls_only_the_hole_of_a_fake_fake():
    real = torch.rand(1, 3, 8, 8).requires_grad_(True)
    real_logits = real.mean(1, keepdim=True)[..., :4, :4]  # any function of real, for R1
    fake_logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    mask = box_mask(1, 8, 8, 0, 0, 8, 4)  # left half of the image is the hole
    loss, _ = discriminator_adversarial_loss(real_logits, fake_logits, real, mask, gp_coef=0.0)
    (grad,) = torch.autograd.grad(loss, fake_logits)
    # gradient descent lowers D's logit (says "fake") in the hole, raises it (says "real") outside
    assert (grad[..., :, :2] > 0).all() and (grad[..., :, 2:] < 0).all()

    loss, _ = discriminator_adversarial_loss(real_logits, fake_logits, real, mask, gp_coef=0.0,
                                             mask_as_fake_target=False)
    (grad,) = torch.autograd.grad(loss, fake_logits)
    assert (grad > 0).all()


def test_mask_is_resized_to_the_logits_only_when_allowed():
    mask = box_mask(1, 8, 8, 0, 0, 8, 4)
    small = resize_mask(mask, (4, 4))
    assert small.shape == (1, 1, 4, 4) and small[..., :2].eq(1).all() and small[..., 2:].eq(0).all()
    real = torch.rand(1, 3, 8, 8).requires_grad_(True)
    with pytest.raises(ValueError, match="allow_scale_mask"):
        discriminator_adversarial_loss(real.mean(1, keepdim=True)[..., :4, :4], torch.zeros(1, 1, 4, 4), real, mask,
                                       allow_scale_mask=False)


# --- feature matching ----------------------------------------------------------------------------

def test_feature_matching_is_the_mean_over_layers_of_the_per_layer_distance():
    real = [torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 2, 2)]
    fake = [torch.ones(1, 2, 4, 4), torch.full((1, 4, 2, 2), 3.0)]
    assert feature_matching_loss(real, real).item() == 0
    assert feature_matching_loss(fake, real).item() == pytest.approx((1 + 9) / 2)
    assert feature_matching_loss(fake, real, p=1).item() == pytest.approx((1 + 3) / 2)
    with pytest.raises(ValueError):
        feature_matching_loss(fake[:1], real)


def test_feature_matching_trains_the_generator_through_the_discriminator():
    torch.manual_seed(0)
    d = NLayerDiscriminator(3, ndf=4, n_layers=2).requires_grad_(False)
    image = torch.rand(2, 3, 32, 32)
    fake = (image + 0.2 * torch.randn_like(image)).requires_grad_(True)
    _, fake_features = d(fake)
    with torch.no_grad():
        _, real_features = d(image)
    feature_matching_loss(fake_features, real_features).backward()
    assert fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.parameters())


# --- metrics -------------------------------------------------------------------------------------

def test_hole_l1_and_mean_colour_fill():
    image = torch.zeros(2, 3, 4, 4)
    image[:, :, :, 2:] = 1.0  # right half white
    mask = box_mask(2, 4, 4, 0, 0, 4, 1)  # leftmost column is the hole
    fill = mean_colour_fill(image, mask)
    # known pixels: one black column and two white ones -> mean 2/3
    assert torch.allclose(fill[..., 0], torch.full((2, 3, 4), 2 / 3))
    assert torch.equal(fill[..., 1:], image[..., 1:])
    assert torch.allclose(hole_l1(fill, image, mask), torch.full((2,), 2 / 3))
    assert torch.equal(hole_l1(image, image, mask), torch.zeros(2))
