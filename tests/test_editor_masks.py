"""Masks an editor might draw instead of the protected one: their geometry, and scoring under them."""

import pytest
import torch

from generator.masks import dilate, erode, shift
from trainer.evaluation.editor_masks import EDITOR_MASKS, get_editor_mask
from trainer.evaluation.scoring import MethodRun, score_runs
from trainer.objective.losses import prepare_task


def square(size: int = 32, top: int = 8, left: int = 8, side: int = 10) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., top:top + side, left:left + side] = 1
    return mask


def test_erosion_shrinks_inside_the_image_and_not_from_its_border():
    eroded = erode(square(), 9)
    assert eroded.sum() == 2 * 2 and eroded[..., 12:14, 12:14].all()  # 4 px off each side of a 10 px square
    corner = erode(square(top=0, left=0), 9)  # the square touches the top and left borders: only 4 px go
    assert corner.sum() == 6 * 6 and corner[..., :6, :6].all()
    assert torch.equal(erode(dilate(square(), 9), 9), square())  # closing a convex shape gives it back
    with pytest.raises(ValueError, match="positive odd number"):
        erode(square(), 4)


def test_shift_moves_the_mask_and_loses_what_leaves_the_image():
    moved = shift(square(), 8)
    assert moved.sum() == 100 and moved[..., 16:26, 16:26].all()
    assert shift(square(top=20, left=20), 8).sum() == 4 * 4  # rows and columns 28..31 are left


@pytest.mark.parametrize("name", list(EDITOR_MASKS))
def test_editor_masks_keep_shape_and_stay_binary(name):
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 10:40, 20:50] = 1
    mask[1, :, 30:34, :] = 1  # a 4 px stroke: erosion by 9 leaves nothing of it
    edited = get_editor_mask(name)(mask)
    assert edited.shape == mask.shape and set(edited.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(edited, mask)


def test_unknown_editor_mask_names_the_choices():
    with pytest.raises(ValueError, match="unknown editor mask 'box'; choose from mask-erode-9, mask-dilate-9"):
        get_editor_mask("box")


def test_scoring_under_an_editor_mask_edits_that_mask(tiny_inpainter):
    torch.manual_seed(0)
    images = [torch.rand(3, 32, 32) for _ in range(2)]
    masks = [square()[0], square(top=12, left=4)[0]]
    noisy = [(x + 0.025 * torch.randn_like(x).sign()).clamp(0, 1) for x in images]
    runs = [MethodRun.untimed("none", images), MethodRun.untimed("noisy", noisy)]
    saved = score_runs(tiny_inpainter, images, masks, runs, batch_size=2)
    same = score_runs(tiny_inpainter, images, masks, runs, batch_size=2, editor_mask=lambda m: m)
    moved = score_runs(tiny_inpainter, images, masks, runs, batch_size=2, editor_mask=get_editor_mask("mask-shift-8"))
    for name in ("none", "noisy"):
        assert all(torch.equal(saved[name][k], same[name][k]) for k in saved[name])
        assert not torch.allclose(saved[name]["attack_psnr"], moved[name]["attack_psnr"])
    assert torch.equal(moved["none"]["attack_gain"], torch.zeros(2))  # the gain is from the clean image's edit
    # what the moved edit is scored on: the fill of the moved mask, against the same target colour
    x, m = torch.stack(images), torch.stack(masks)
    task, edited = prepare_task(tiny_inpainter, x, m), prepare_task(tiny_inpainter, x, shift(m, 8))
    assert torch.equal(task.target, edited.target)
    fill = tiny_inpainter(x, edited.mask)
    mse = ((fill - edited.target) ** 2 * edited.mask).sum((1, 2, 3)) / (3 * edited.mask.sum((1, 2, 3)))
    assert torch.allclose(moved["none"]["attack_psnr"], -10 * torch.log10(mse), atol=1e-4)
