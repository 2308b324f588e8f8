import torch

from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.losses import prepare_task, protection_losses

from .conftest import masked_batch as batch


def test_optimiser_lowers_the_loss_and_keeps_the_bound(steerable_inpainter):
    image, mask = batch()
    task = prepare_task(steerable_inpainter, image, mask)
    before = protection_losses(steerable_inpainter, image, task)["total"]
    result = protect_iterative(steerable_inpainter, image, mask, task=task)
    after = result.history["total"][-1]
    assert (after < 0.5 * before).all()
    assert result.noise.abs().max() <= 0.025  # no float32 slack: it reached 0.025000006
    assert torch.allclose(result.protected, (image + result.noise).clamp(0, 1))
    assert 0 <= result.protected.min() and result.protected.max() <= 1
    assert result.history["total"].shape == (21, 2)


def test_optimiser_on_a_small_ffc_inpainter(tiny_inpainter):
    image, mask = batch()
    task = prepare_task(tiny_inpainter, image, mask)
    before = protection_losses(tiny_inpainter, image, task)["total"].sum()
    result = protect_iterative(tiny_inpainter, image, mask, task=task)
    assert result.history["total"][-1].sum() < before
    assert result.noise.abs().max() <= 0.025  # no float32 slack: it reached 0.025000006


def test_last_update_is_kept(steerable_inpainter):
    image, mask = batch(1)
    result = protect_iterative(steerable_inpainter, image, mask, IterativeConfig(steps=3))
    # the final entry is the loss of the returned image, after the third update
    final = protection_losses(steerable_inpainter, result.protected, prepare_task(steerable_inpainter, image, mask))
    assert torch.allclose(result.history["total"][-1], final["total"])
    assert not torch.allclose(result.history["total"][-1], result.history["total"][-2])


def test_batch_items_are_independent_and_targets_per_image(steerable_inpainter):
    image, mask = batch(2)
    target = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    both = protect_iterative(steerable_inpainter, image, mask, target=target, init_noise=torch.zeros_like(image))
    alone = protect_iterative(steerable_inpainter, image[1:], mask[1:], target=target[1:],
                              init_noise=torch.zeros_like(image[1:]))
    assert torch.allclose(both.protected[1:], alone.protected, atol=1e-6)


def test_warm_start_and_zero_steps(steerable_inpainter):
    image, mask = batch(1)
    start = torch.full_like(image, 0.1)  # clipped to eps before use
    result = protect_iterative(steerable_inpainter, image, mask, IterativeConfig(steps=0), init_noise=start)
    assert torch.allclose(result.protected, (image + 0.025).clamp(0, 1))
    assert result.history["total"].shape == (1, 1)


def test_seeded_noise_is_reproducible(tiny_inpainter):
    image, mask = batch(1)
    runs = [protect_iterative(tiny_inpainter, image, mask, IterativeConfig(steps=2),
                              generator=torch.Generator().manual_seed(3)).protected for _ in range(2)]
    assert torch.equal(*runs)


def test_an_empty_mask_returns_its_image_unchanged(steerable_inpainter):
    """It returned its random start (up to init_scale), as Protector does not."""
    image, mask = batch(2)
    mask[0] = 0
    for start in (None, torch.full_like(image, 0.02)):
        result = protect_iterative(steerable_inpainter, image, mask, IterativeConfig(steps=3), init_noise=start)
        assert torch.equal(result.protected[0], image[0]) and not result.noise[0].any()
        alone = protect_iterative(steerable_inpainter, image[1:], mask[1:], IterativeConfig(steps=3),
                                  init_noise=None if start is None else start[1:],
                                  generator=torch.Generator().manual_seed(0))
        assert result.noise[1].abs().max() > 0.01
        if start is not None:  # the other image is optimised as it is alone
            assert torch.allclose(result.protected[1:], alone.protected, atol=1e-6)
