"""The checkpoints a fresh clone ships: loadable by name and by path, offline, and doing their job."""

from pathlib import Path

import pytest
import torch

from generator import Protector
from generator.target import target_colour
from trainer.data.images import FixedCropDataset, sample_images
from trainer.inpainting.inpainter import load_inpainter
from trainer.training.inpainter_losses import hole_l1, mean_colour_fill

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
# lama-tiny-ft: lama-tiny fine-tuned on an editor's photos (configs/inpainter/lama-tiny-ft.yaml), for transfer
INPAINTERS = ["lama-tiny", "lama-tiny-ft", "lama-tiny-seed1"]
# the leave-one-out ensemble generators (configs/compare/transfer.yaml) ship too: runs/ does not survive a new checkout
GENERATORS = ["generator-lama-tiny", "generator-lama-tiny-encoder", "generator-lama-tiny-stem",
              "generator-lama-tiny-fast", "generator-lama-tiny-robust", "generator-ensemble-no-lama-tiny",
              "generator-ensemble-no-ft", "generator-ensemble-no-seed1"]


@pytest.fixture(scope="module")
def held_out() -> dict[str, torch.Tensor]:
    """The five held-out photos at 256 px with the evaluation's seeded masks (as evaluate-inpainter uses)."""
    image, mask = FixedCropDataset(sample_images("val"), size=256, masks_per_image=1, seed=0).batch()
    return {"image": image, "mask": mask}


@pytest.fixture(autouse=True)
def shipped_only(monkeypatch):
    monkeypatch.delenv("PAINTGUARD_CHECKPOINTS", raising=False)  # names resolve to checkpoints/ itself
    torch.set_num_threads(1)


@pytest.mark.parametrize("name", INPAINTERS)
def test_inpainters_load_by_name_and_path_are_small_and_deterministic(name, held_out):
    path = CHECKPOINTS / f"{name}.safetensors"
    assert path.stat().st_size < 20e6
    by_name, by_path = load_inpainter(name), load_inpainter(path)
    image, mask = held_out["image"][:2], held_out["mask"][:2]
    with torch.no_grad():
        out = by_name(image, mask)
        assert torch.equal(out, by_path(image, mask)) and torch.equal(out, by_name(image, mask))
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out * (1 - mask), image * (1 - mask))  # known pixels are kept


@pytest.mark.parametrize("name", INPAINTERS)
def test_inpainters_beat_the_mean_colour_fill_on_held_out_photos(name, held_out):
    image, mask = held_out["image"], held_out["mask"]
    with torch.no_grad():
        ours = hole_l1(load_inpainter(name)(image, mask), image, mask).mean()
    floor = hole_l1(mean_colour_fill(image, mask), image, mask).mean()
    assert ours < 0.95 * floor, (float(ours), float(floor))


@pytest.mark.parametrize("name", GENERATORS)
def test_shipped_generators_emit_a_bounded_noise_that_depends_on_the_target(name, held_out):
    protector = Protector.from_checkpoint(name)
    image, mask = held_out["image"][:2], held_out["mask"][:2]
    assert Protector.from_checkpoint(CHECKPOINTS / f"{name}.safetensors").net.state_dict().keys() == \
        protector.net.state_dict().keys()
    noise = protector.noise(image, mask)
    assert noise.abs().max() <= 0.025 and noise.abs().mean() > 0.002  # a trained generator, not a near-zero start
    other = protector.noise(image, mask, target=1 - target_colour(image))
    assert (noise - other).abs().mean() > 1e-4


def folded(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """A convolution weight with its BatchNorm scale folded in (the same layer, one tensor)."""
    return weight * scale[:, None, None, None]


@pytest.mark.parametrize("name, layers, features", [("generator-lama-tiny", 4, True),
                                                     ("generator-lama-tiny-encoder", 4, False),
                                                     ("generator-lama-tiny-stem", 1, False)])
def test_gradient_head_generators_carry_lama_tinys_encoder_layers(name, layers, features):
    net = Protector.from_checkpoint(name).net
    target = load_inpainter("lama-tiny").encoder_layers(layers)
    assert net.config.head == "stem-gradient" and net.config.head_layers == layers
    # the default reads lama-tiny's layer-4 output, and has learnt to: its projection moved from its zero start
    assert net.config.encoder_features == features
    if features:
        assert net.feature_proj.weight.abs().mean() > 1e-3
    stem = net.target_head if layers == 1 else net.target_head.stem
    weight, scale, shift = target[0]  # compared folded: the default's export stores the stem's BatchNorm so
    torch.testing.assert_close(folded(stem.weight, stem.scale), folded(weight, scale))
    torch.testing.assert_close(stem.shift, shift)
    for i, (weight, scale, shift) in enumerate(target[1:], start=1):
        torch.testing.assert_close(getattr(net.target_head, f"weight{i}"), folded(weight, scale))
        torch.testing.assert_close(getattr(net.target_head, f"shift{i}"), shift)
