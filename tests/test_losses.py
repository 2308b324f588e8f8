import pytest
import torch
from kornia.morphology import dilation as kornia_dilation

from trainer.objective.losses import (
    LossWeights,
    dilate,
    masked_mse,
    prepare_task,
    protection_losses,
    psnr_from_mse,
    ring,
    target_colour,
)

GREEN, RED, BLUE = [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]


def solid(rgb, h=4, w=4):
    return torch.tensor(rgb, dtype=torch.float32).reshape(1, 3, 1, 1).expand(1, 3, h, w) / 255


@pytest.mark.parametrize("rgb,expected", [
    ((0, 255, 0), RED),  # green image: red and blue are equally far, red comes first
    ((255, 0, 0), GREEN),  # red image: green wins the tie with blue
    ((0, 0, 0), GREEN),  # black: all three equally far, green first
    ((128, 128, 128), GREEN),
    ((20, 200, 30), RED),
    ((30, 20, 200), GREEN),
    ((200, 220, 20), BLUE),
])
def test_target_colour_cases(rgb, expected):
    assert target_colour(solid(rgb)).tolist() == [expected]


def test_target_colour_truncates_the_8bit_mean():
    # mean (127, 127.5, 255): the exact mean is nearer green than red (red wins), the truncated (127, 127, 255)
    # is equally far from both, and the tie goes to green
    img = torch.zeros(1, 3, 1, 2)
    img[0, 0] = 127 / 255
    img[0, 1] = torch.tensor([127, 128]) / 255
    img[0, 2] = 1.0
    assert target_colour(img).tolist() == [GREEN]
    batch = torch.cat([solid((0, 255, 0)), solid((255, 0, 0)), solid((200, 220, 20))])
    assert target_colour(batch).tolist() == [RED, GREEN, BLUE]


def test_dilation_equals_kornia_morphology_and_the_reference_conv():
    torch.manual_seed(0)
    mask = (torch.rand(3, 1, 40, 50) > 0.97).float()
    ours = dilate(mask, 17)
    theirs = kornia_dilation(mask, torch.ones(17, 17), border_type="constant", border_value=0.0)
    reference = (torch.nn.functional.conv2d(mask, torch.ones(1, 1, 17, 17), padding=8) > 0).float()
    assert torch.equal(ours, theirs) and torch.equal(ours, reference)


def test_ring_is_dilation_minus_mask():
    mask = torch.zeros(1, 1, 30, 30)
    mask[..., 10:20, 10:20] = 1
    band = ring(mask, 5)
    assert band[..., 10:20, 10:20].sum() == 0
    assert band.sum() == 14 * 14 - 10 * 10
    assert torch.equal(dilate(mask, 5), ((band + mask) > 0).float())
    with pytest.raises(ValueError):
        dilate(mask, 4)


def test_masked_mse_is_mean_over_mask_pixels_and_channels_and_zero_when_empty():
    a, b = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    a[0, :, 0, 0] = 1.0
    a[0, 0, 3, 3] = 1.0  # outside the mask: ignored
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, 0, :2] = 1
    loss = masked_mse(a, b, mask)
    assert torch.allclose(loss, torch.tensor([3 / 6, 0.0]))
    assert not torch.isnan(loss).any()


def test_protection_losses_per_image_and_weighted(tiny_inpainter):
    image = torch.rand(2, 3, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, 8:16, 8:16] = 1  # image 1 has an empty mask: all its losses are 0
    task = prepare_task(tiny_inpainter, image, mask)
    losses = protection_losses(tiny_inpainter, image, task, LossWeights(1, 1, 2))
    assert all(v.shape == (2,) for v in losses.values())
    assert losses["hide"][0] == 0  # the clean image is its own reference
    assert torch.allclose(losses["total"], losses["attack"] + losses["incp"] + 2 * losses["hide"])
    assert losses["total"][1] == 0
    noisy = (image + 0.02 * torch.randn_like(image)).clamp(0, 1)
    assert protection_losses(tiny_inpainter, noisy, task)["hide"][0] > 0


def test_psnr_from_mse():
    assert torch.allclose(psnr_from_mse(torch.tensor([0.01, 1.0])), torch.tensor([20.0, 0.0]))
