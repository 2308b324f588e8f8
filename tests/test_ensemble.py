"""The ensemble objective (trainer/objective/ensemble.py), the optimiser against several inpainters, `optimize a,b`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from trainer.commands.cli import main
from trainer.inpainting.inpainter import save_inpainter
from trainer.objective.ensemble import draw_member, ensemble_losses, prepare_ensemble_task
from trainer.objective.eot import RandomTransforms
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.losses import LossWeights, prepare_task, protection_losses, transform_task

from .conftest import reactive_inpainter, write_image_and_mask
from .conftest import masked_batch as batch

KEYS = ("attack", "incp", "hide", "total")


@pytest.fixture
def pair(tiny_inpainter) -> list[nn.Module]:
    return [tiny_inpainter, reactive_inpainter(1)]


def test_ensemble_losses_are_the_mean_of_each_models_own_losses(pair):
    image, mask = batch()
    protected = (image + 0.02 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    weights = LossWeights(1.0, 0.5, 3.0)
    task = prepare_ensemble_task(pair, image, mask)
    own = [protection_losses(f, protected, prepare_task(f, image, mask), weights) for f in pair]
    mean = ensemble_losses(pair, protected, task, weights)
    for key in KEYS:
        assert torch.allclose(mean[key], (own[0][key] + own[1][key]) / 2, rtol=1e-6, atol=1e-8)
        assert not torch.allclose(own[0][key], own[1][key])  # the two models do differ: the mean is not trivial
    # the hide reference is each model's own edit of the clean ring, not the first model's
    for f, member in zip(pair, task.tasks):
        assert torch.equal(member.clean_ring_fill, f(image, member.ring))
    assert not torch.allclose(task.tasks[0].clean_ring_fill, task.tasks[1].clean_ring_fill)
    # a chosen subset is the mean over it; one model alone is protection_losses itself, bit for bit
    only = ensemble_losses(pair, protected, task, weights, members=[1])
    assert all(torch.allclose(only[k], own[1][k], rtol=1e-6) for k in KEYS)
    single = ensemble_losses(pair[0], protected, prepare_task(pair[0], image, mask), weights)
    assert all(torch.equal(single[k], own[0][k]) for k in KEYS)


def test_a_selected_part_of_the_batch_is_the_task_of_those_images(pair):
    image, mask = batch(3)
    task = prepare_ensemble_task(pair, image, mask)
    part = task.select([2, 0])
    again = prepare_ensemble_task(pair, image[[2, 0]], mask[[2, 0]])
    for mine, fresh in zip(part.tasks, again.tasks):
        assert all(torch.allclose(getattr(mine, k), getattr(fresh, k), atol=1e-6)
                   for k in ("image", "mask", "dilated", "ring", "target", "clean_ring_fill"))


def test_streamed_backward_gives_the_gradient_of_the_mean(pair):
    image, mask = batch()
    task = prepare_ensemble_task(pair, image, mask)
    noise = torch.full_like(image, 0.01, requires_grad=True)
    ensemble_losses(pair, (image + noise).clamp(0, 1), task)["total"].sum().backward()
    joint = noise.grad.clone()
    noise.grad = None
    streamed = ensemble_losses(pair, (image + noise).clamp(0, 1), task, backward=True)
    assert not streamed["total"].requires_grad
    assert torch.allclose(noise.grad, joint, rtol=1e-5, atol=1e-9) and joint.abs().sum() > 0


def test_eot_draws_are_shared_by_the_members(pair):
    image, mask = batch()
    task = prepare_ensemble_task(pair, image, mask)
    chain = RandomTransforms({"blur_p": 1.0, "noise_p": 1.0, "shift_p": 1.0})
    mean = ensemble_losses(pair, image, task, transform=chain, generator=torch.Generator().manual_seed(4))
    # the same edited images, replayed for each model by hand: one draw, then each model's own losses
    params = chain.sample(image, torch.Generator().manual_seed(4))
    own = []
    for f, member in zip(pair, task.tasks):
        seen = transform_task(f, member, chain, params)
        own.append(protection_losses(f, chain.apply(image, params), seen))
    assert all(torch.allclose(mean[k], (own[0][k] + own[1][k]) / 2, rtol=1e-5) for k in KEYS)


def test_optimiser_against_one_model_in_a_list_is_the_optimiser_against_it(tiny_inpainter):
    image, mask = batch()
    cfg = IterativeConfig(steps=3)
    alone = protect_iterative(tiny_inpainter, image, mask, cfg, generator=torch.Generator().manual_seed(2))
    listed = protect_iterative([tiny_inpainter], image, mask, cfg, generator=torch.Generator().manual_seed(2))
    assert torch.equal(alone.protected, listed.protected)


def test_optimiser_steps_on_the_mean_of_the_ensembles_losses(pair):
    image, mask = batch()
    cfg = IterativeConfig(steps=1)
    result = protect_iterative(pair, image, mask, cfg, init_noise=torch.full_like(image, 0.005))
    # one Adam step on the ensemble's mean loss, by hand
    task = prepare_ensemble_task(pair, image, mask)
    noise = torch.full_like(image, 0.005).requires_grad_(True)
    adam = torch.optim.Adam([noise], lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)
    start = ensemble_losses(pair, (image + noise).clamp(0, 1), task)
    start["total"].sum().backward()
    adam.step()
    with torch.no_grad():
        expected = (image + noise.clamp(-cfg.eps, cfg.eps)).clamp(0, 1)
    assert torch.allclose(result.protected, expected, atol=1e-6)
    assert torch.allclose(result.history["total"][0], start["total"].detach(), rtol=1e-6)
    final = ensemble_losses(pair, result.protected, task)
    assert torch.allclose(result.history["total"][-1], final["total"], rtol=1e-6)
    # and the ensemble's step differs from a step against either model alone
    for f in pair:
        alone = protect_iterative(f, image, mask, cfg, init_noise=torch.full_like(image, 0.005))
        assert not torch.allclose(alone.protected, result.protected)


def test_random_mode_steps_on_one_drawn_member_and_ends_on_the_mean(pair):
    image, mask = batch(1)
    cfg = IterativeConfig(steps=4, ensemble="random")
    runs = [protect_iterative(pair, image, mask, cfg, generator=torch.Generator().manual_seed(9)) for _ in range(2)]
    assert torch.equal(runs[0].protected, runs[1].protected)  # seeded: the same members are drawn
    # the draws after the initial noise: replayed, each step's history entry is that member's loss
    g = torch.Generator().manual_seed(9)
    init = torch.rand(image.shape, generator=g) * cfg.init_scale
    draws = [draw_member(2, g) for _ in range(cfg.steps)]
    assert set(draws) == {0, 1}  # with this seed both members are drawn
    task = prepare_ensemble_task(pair, image, mask)
    # the first step is taken on the first drawn member's own loss, not on the mean
    first = ensemble_losses(pair, (image + init).clamp(0, 1), task, members=[draws[0]])
    mean = ensemble_losses(pair, (image + init).clamp(0, 1), task)
    assert torch.allclose(runs[0].history["total"][0], first["total"], rtol=1e-6)
    assert not torch.allclose(first["total"], mean["total"])
    final = ensemble_losses(pair, runs[0].protected, task)
    assert torch.allclose(runs[0].history["total"][-1], final["total"], rtol=1e-6)
    with pytest.raises(ValueError, match="ensemble must be one of mean, random"):
        IterativeConfig(ensemble="vote")


# --- paintguard optimize --inpainter a,b --------------------------------------------------------

@pytest.fixture
def files(tmp_path, pair):
    image, mask, pixels = write_image_and_mask(tmp_path)
    paths = [save_inpainter(f, tmp_path / f"inp{i}.safetensors") for i, f in enumerate(pair)]
    return image, mask, paths, pixels


def test_optimize_accepts_a_comma_list_of_inpainters(tmp_path, files, capsys):
    image, mask, paths, pixels = files
    out = tmp_path / "out.png"
    assert main(["optimize", str(image), str(mask), "-o", str(out), "--inpainter", ",".join(map(str, paths)),
                 "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    for path in paths:
        assert f"attack PSNR against {path}:" in printed
    assert "of the mean loss over 2 inpainters" in printed
    back = np.asarray(Image.open(out)).astype(np.int16)
    assert 0 < np.abs(back - pixels).max() <= 6
    # the ensemble's noise is not the one made against its first member alone
    single = tmp_path / "single.png"
    assert main(["optimize", str(image), str(mask), "-o", str(single), "--inpainter", str(paths[0]),
                 "--steps", "2"]) == 0
    assert not np.array_equal(np.asarray(Image.open(single)), np.asarray(Image.open(out)))


@pytest.mark.parametrize("value, pattern", [("{a},", "has an empty entry"),
                                            ("{a},nope", "no inpainter checkpoint 'nope'")])
def test_optimize_with_a_bad_list_is_one_line(tmp_path, files, capsys, value, pattern):
    image, mask, paths, _ = files
    code = main(["optimize", str(image), str(mask), "-o", str(tmp_path / "o.png"), "--inpainter",
                 value.format(a=paths[0]), "--steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and pattern in err
    assert not (tmp_path / "o.png").exists()
