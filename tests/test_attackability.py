import torch
from torch import nn

from trainer.evaluation.attackability import protection_strength, steering_gain
from trainer.objective.iterative import IterativeConfig

from .conftest import SteerableInpainter


class ConstantFill(nn.Module):
    """Fills the hole with grey whatever the image: nothing can steer it."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hole = (mask > 0).to(image.dtype)
        return hole * 0.5 + (1 - hole) * image


class MeanFill(nn.Module):
    """Fills the hole with the mean of the known pixels: the noise passes through, averaged."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hole = (mask > 0).to(image.dtype)
        known = 1 - hole
        mean = (image * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True)
        return hole * mean + known * image


def batch(b: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    image = 0.45 + 0.1 * torch.rand(b, 3, size, size)  # mean 0.5, where SteerableInpainter is steepest
    mask = torch.zeros(b, 1, size, size)
    mask[..., 4:12, 4:12] = 1
    return image, mask


def test_steering_gain_is_zero_when_the_fill_ignores_the_image():
    image, mask = batch()
    gain = steering_gain(ConstantFill(), image, mask)
    assert gain.shape == (2,)
    assert torch.equal(gain, torch.zeros(2))


def test_steering_gain_of_an_averaging_fill_is_at_most_one_eps():
    # the mean of +-eps noise moves by at most eps; the optimiser should get close to that bound
    image, mask = batch()
    gain = steering_gain(MeanFill(), image, mask)
    assert ((gain > 0.8) & (gain <= 1.0 + 1e-4)).all(), gain


def test_steering_gain_is_large_for_a_sensitive_inpainter():
    image, mask = batch()
    gain = steering_gain(SteerableInpainter(gain=40.0), image, mask)
    assert (gain > 5).all(), gain


def test_steering_gain_is_reproducible_with_a_generator():
    image, mask = batch()
    a = steering_gain(MeanFill(), image, mask, steps=3, generator=torch.Generator().manual_seed(1))
    b = steering_gain(MeanFill(), image, mask, steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_steering_gain_runs_on_a_real_ffc_inpainter(tiny_inpainter):
    image, mask = batch(size=32)
    gain = steering_gain(tiny_inpainter, image, mask, steps=2)
    assert gain.shape == (2,) and torch.isfinite(gain).all() and (gain > 0).all()


def test_protection_strength_reports_before_after_and_success():
    image, mask = batch()
    config = IterativeConfig(steps=10)
    steerable = protection_strength(SteerableInpainter(gain=40.0), image, mask, config,
                                    generator=torch.Generator().manual_seed(0))
    assert steerable.psnr_before.shape == steerable.psnr_after.shape == steerable.success.shape == (2,)
    assert (steerable.psnr_after > steerable.psnr_before + 1).all()

    constant = protection_strength(ConstantFill(), image, mask, config)
    # grey against a pure target colour: MSE (0.25 * 3) / 3, about 6 dB, and no noise changes it
    assert torch.allclose(constant.psnr_before, constant.psnr_after)
    assert torch.allclose(constant.psnr_after, torch.full((2,), 6.0206), atol=1e-3)
    assert torch.equal(constant.success, torch.zeros(2))


def test_success_is_thresholded_on_the_attack_psnr():
    image, mask = batch()
    low = protection_strength(ConstantFill(), image, mask, IterativeConfig(steps=1), threshold_db=5.0)
    assert torch.equal(low.success, torch.ones(2))
    assert low.summary()["success_rate"] == 1.0
