"""Expectation over Transformations: the random chain, its hooks in the losses, the optimiser and training."""

from pathlib import Path

import pytest
import torch
import yaml

from trainer.commands.train import main as train_main
from trainer.objective.eot import STEPS, EOTConfig, FixedTransform, RandomTransforms
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.losses import dilate, masked_mse, prepare_task, protection_losses, transform_task
from trainer.objective.transforms import gaussian_blur, jpeg
from trainer.training.generator_module import GeneratorModule
from trainer.training.wandb_logger import read_offline_run

from .conftest import offline_run

ROOT = Path(__file__).resolve().parents[1]
ONLY = {  # each step forced on, with a strength that always changes an image
    "shift": dict(shift_p=1.0, shift_max=3),
    "resize": dict(resize_p=1.0, resize_scale=(0.4, 0.7)),
    "jitter": dict(jitter_p=1.0, brightness=0.05, contrast=0.1),
    "blur": dict(blur_p=1.0, blur_sigma=(0.5, 1.5)),
    "noise": dict(noise_p=1.0, noise_sigma=(0.01, 0.02)),
    "jpeg": dict(jpeg_p=1.0, jpeg_quality=(50, 95)),
    "jpeg-pillow": dict(jpeg_p=1.0, jpeg_quality=(50, 95), jpeg_forward="pillow"),
}
ALL = {k: v for name, options in ONLY.items() if name != "jpeg-pillow" for k, v in options.items()}


def photo_batch(n=4, h=36, w=44, seed=0):
    """Smooth 8-bit images with some texture (JPEG and blur change them) and one box mask each."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, h // 6, w // 6, generator=g)
    image = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    image = (0.7 * image + 0.3 * torch.rand(n, 3, h, w, generator=g)).clamp(0, 1)
    mask = torch.zeros(n, 1, h, w)
    for i in range(n):
        mask[i, :, 8 + i:20 + i, 10:26 + i] = 1
    return torch.round(image * 255) / 255, mask


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- the chain -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ONLY))
def test_each_step_changes_every_image_and_keeps_shape_and_range(name):
    image, mask = photo_batch()
    t = RandomTransforms(ONLY[name])
    params = t.sample(image, gen())
    out, out_mask = t.apply(image, params), t.apply_mask(mask, params)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert 0 <= out.min() and out.max() <= 1
    changed = (out - image).abs().amax(dim=(1, 2, 3)) > 1e-4
    if name == "shift":  # a drawn shift of (0, 0) is the identity
        assert torch.equal(changed, params.shift.abs().sum(1) > 0) and changed.sum() >= 3
        assert not torch.equal(out_mask, mask)
    else:
        assert changed.all(), changed
        assert torch.equal(out_mask, mask)  # only the shift moves masks
    assert set(torch.unique(out_mask).tolist()) <= {0.0, 1.0}


def test_all_off_is_the_identity_and_draws_nothing():
    image, mask = photo_batch()
    g = gen(5)
    state = g.get_state()
    for config in (None, EOTConfig(), {"jpeg_quality": [60, 70]}):
        out, out_mask = RandomTransforms(config)(image, mask, g)
        assert torch.equal(out, image) and torch.equal(out_mask, mask)
    assert torch.equal(g.get_state(), state)
    assert not EOTConfig().enabled and EOTConfig(blur_p=0.1).enabled


def test_probability_is_per_image_and_the_rest_pass_untouched():
    image, mask = photo_batch(n=32)
    t = RandomTransforms(dict(blur_p=0.5))
    params = t.sample(image, gen())
    out = t.apply(image, params)
    on = params.applied["blur"]
    assert 0 < on.sum() < 32 and torch.equal(params.active, on)
    assert torch.equal(out[~on], image[~on])
    assert ((out[on] - image[on]).abs().amax(dim=(1, 2, 3)) > 1e-4).all()


def test_seeded_draws_are_reproducible_and_seeds_differ():
    image, mask = photo_batch()
    t = RandomTransforms(ALL)
    a, b, c = (t(image, mask, gen(s)) for s in (1, 1, 2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", list(ONLY))
def test_gradients_flow_through_each_step(name):
    image, mask = photo_batch()
    x = image.clone().requires_grad_(True)
    out, _ = RandomTransforms(ONLY[name])(x, mask, gen())
    weights = torch.rand(out.shape, generator=gen(9))
    (out * weights).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad.abs().sum(dim=(1, 2, 3)) > 0).all()


def test_pillow_forward_is_the_real_jpeg_with_the_codec_gradient():
    image, mask = photo_batch(n=2)
    t = RandomTransforms(dict(jpeg_p=1.0, jpeg_quality=(75, 75), jpeg_forward="pillow"))
    x = image.clone().requires_grad_(True)
    out, _ = t(x, mask, gen())
    assert torch.allclose(out.detach(), jpeg(image, 75), atol=1e-6)  # up to the float sum of the two paths
    out.sum().backward()
    kornia_grad = image.clone().requires_grad_(True)
    RandomTransforms(dict(jpeg_p=1.0, jpeg_quality=(75, 75)))(kornia_grad, mask, gen())[0].sum().backward()
    assert torch.allclose(x.grad, kornia_grad.grad)


def test_shift_moves_image_and_mask_together():
    h, w = 40, 48
    mask = torch.zeros(6, 1, h, w)
    mask[..., 14:26, 16:30] = 1
    image = (0.1 + 0.8 * mask).expand(-1, 3, -1, -1).contiguous()  # the masked content is bright
    t = RandomTransforms(dict(shift_p=1.0, shift_max=4))
    params = t.sample(image, gen(3))
    out, out_mask = t.apply(image, params), t.apply_mask(mask, params)
    assert torch.equal((out[:, :1] > 0.5).float(), out_mask)  # the mask still covers the same content
    for i, (dx, dy) in enumerate(params.shift.tolist()):
        assert torch.equal(out_mask[i], torch.roll(mask[i], shifts=(dy, dx), dims=(1, 2)))  # no wrap: box inside
    assert (params.shift.abs().sum(1) > 0).any()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown eot option"):
        EOTConfig.coerce({"jpeg_probability": 0.5})
    with pytest.raises(ValueError, match="jpeg_p"):
        EOTConfig(jpeg_p=1.5)
    with pytest.raises(ValueError, match="jpeg_quality"):
        EOTConfig(jpeg_quality=(90, 50))
    with pytest.raises(ValueError, match="jpeg_forward"):
        EOTConfig(jpeg_forward="straight")
    with pytest.raises(ValueError, match="eot_samples"):
        IterativeConfig(eot_samples=0)


# --- the losses -------------------------------------------------------------------------------

def test_losses_without_transform_are_the_direct_computation(tiny_inpainter):
    image, mask = photo_batch(n=2)
    protected = (image + 0.02 * torch.randn(image.shape, generator=gen())).clamp(0, 1)
    task = prepare_task(tiny_inpainter, image, mask)
    losses = protection_losses(tiny_inpainter, protected, task)
    dilated = dilate(mask, 17)
    band = dilated * (1 - mask)
    target = task.target.expand_as(image)
    with torch.no_grad():
        attack = masked_mse(tiny_inpainter(protected, mask), target, mask)
        incp = masked_mse(tiny_inpainter(protected, dilated), target, dilated)
        hide = masked_mse(tiny_inpainter(protected, band), tiny_inpainter(image, band), band)
    for name, direct in [("attack", attack), ("incp", incp), ("hide", hide), ("total", attack + incp + 2 * hide)]:
        assert torch.allclose(losses[name], direct, rtol=1e-4, atol=1e-7), name
    off = protection_losses(tiny_inpainter, protected, task, transform=RandomTransforms(), generator=gen())
    assert all(torch.equal(off[k], losses[k]) for k in losses)


def test_fixed_transform_losses_use_the_transformed_clean_reference(tiny_inpainter):
    image, mask = photo_batch(n=2)
    protected = (image + 0.02 * torch.randn(image.shape, generator=gen())).clamp(0, 1)
    task = prepare_task(tiny_inpainter, image, mask)
    blur = FixedTransform(lambda x: gaussian_blur(x, 1.0))
    losses = protection_losses(tiny_inpainter, protected, task, transform=blur)
    with torch.no_grad():
        attack = masked_mse(tiny_inpainter(gaussian_blur(protected, 1.0), task.mask), task.target.expand_as(image),
                            task.mask)
        reference = tiny_inpainter(gaussian_blur(image, 1.0), task.ring)
        hide = masked_mse(tiny_inpainter(gaussian_blur(protected, 1.0), task.ring), reference, task.ring)
    assert torch.allclose(losses["attack"], attack, rtol=1e-4, atol=1e-7)
    assert torch.allclose(losses["hide"], hide, rtol=1e-4, atol=1e-7)
    # not the untransformed reference: the blur's own effect on the ring is not charged to the noise
    assert not torch.allclose(reference, task.clean_ring_fill, atol=1e-3)


def test_under_random_transforms_the_clean_image_is_its_own_reference(tiny_inpainter):
    """The same draw (shift, noise sample, JPEG quality, ...) goes to the clean and the protected image."""
    image, mask = photo_batch()
    task = prepare_task(tiny_inpainter, image, mask)
    t = RandomTransforms(ALL)
    clean = protection_losses(tiny_inpainter, image, task, transform=t, generator=gen(4))
    assert torch.equal(clean["hide"], torch.zeros(4))
    params = t.sample(image, gen(4))
    moved = transform_task(tiny_inpainter, task, t, params)
    assert torch.equal(moved.ring, moved.dilated * (1 - moved.mask))
    assert torch.equal(moved.mask, t.apply_mask(task.mask, params)) and not torch.equal(moved.mask, task.mask)

    x = (image + 0.02 * torch.randn(image.shape, generator=gen())).clamp(0, 1).requires_grad_(True)
    losses = protection_losses(tiny_inpainter, x, task, transform=t, generator=gen(4))
    assert (losses["hide"] > 0).all()
    losses["total"].sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad.abs().sum(dim=(1, 2, 3)) > 0).all()


# --- the optimiser ----------------------------------------------------------------------------

def test_optimiser_with_eot_keeps_the_bound_and_lowers_the_expected_loss(steerable_inpainter):
    image, mask = photo_batch(n=2, h=32, w=32)
    config = IterativeConfig(steps=6, eot=dict(ALL), eot_samples=3)
    assert isinstance(config.eot, EOTConfig)
    runs = [protect_iterative(steerable_inpainter, image, mask, config, generator=gen(1)) for _ in range(2)]
    result = runs[0]
    assert torch.equal(result.protected, runs[1].protected)  # seeded: transforms included
    assert result.noise.abs().max() <= 0.025 + 1e-7
    assert 0 <= result.protected.min() and result.protected.max() <= 1
    assert result.history["total"].shape == (7, 2)
    assert (result.history["total"][-1] < result.history["total"][0]).all()
    plain = protect_iterative(steerable_inpainter, image, mask, IterativeConfig(steps=6), generator=gen(1))
    assert not torch.allclose(plain.protected, result.protected)
    off = protect_iterative(steerable_inpainter, image, mask, IterativeConfig(steps=6, eot=EOTConfig()),
                            generator=gen(1))
    assert torch.equal(off.protected, plain.protected)


# --- generator training -------------------------------------------------------------------------

def test_generator_fit_with_eot_transforms_training_only(tmp_path, ci_config, monkeypatch):  # noqa: F811
    config = yaml.safe_load(ci_config.read_text())
    config["model"]["eot"] = {**ALL, "jpeg_p": 0.5, "blur_p": 0.5}
    config["model"]["val_jpeg_quality"] = 75
    ci_config.write_text(yaml.safe_dump(config))
    draws = []
    original = RandomTransforms.sample

    def counting(self, image, generator=None):
        draws.append(torch.is_grad_enabled())
        return original(self, image, generator)

    monkeypatch.setattr(RandomTransforms, "sample", counting)
    assert train_main(["fit", "--config", str(ci_config)]) == 0
    assert draws == [True] * 4  # one draw per training step (4), none in validation or by the teacher
    keys = set().union(*read_offline_run(offline_run(tmp_path)).history)
    for key in ("train/total", "val/attack_psnr", "val/jpeg75_attack_psnr", "val/jpeg75_success",
                "val/jpeg75_hide_psnr", "val/teacher_jpeg75_attack_psnr"):
        assert key in keys, key
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4 and checkpoint["hyper_parameters"]["eot"]["jpeg_p"] == 0.5


def test_robust_overlay_builds_a_module_with_eot():
    """Its own run folder is checked with every overlay's (test_generator_training.py)."""
    config = yaml.safe_load((ROOT / "configs" / "generator" / "lama-tiny-robust.yaml").read_text())
    assert config["run_name"] == "generator-lama-tiny-robust"
    module = GeneratorModule(**config["model"])
    assert isinstance(module.eot, RandomTransforms)
    assert all(getattr(module.eot.config, f"{s}_p") > 0 for s in STEPS)
    assert module.val_jpeg is not None and GeneratorModule().eot is None
