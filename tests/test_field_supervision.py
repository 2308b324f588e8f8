"""Field supervision: the gradient inside the target at layer k, cached and taught to an encoder-gradient generator."""

from __future__ import annotations

import pytest
import torch

from trainer.commands.train import main as train_main
from trainer.objective.fgsm import head_field, input_gradient, layer_gradient
from trainer.objective.losses import prepare_task
from trainer.training import generator_module
from trainer.training.gradient_cache import GradientCache, build_gradient_cache
from trainer.training.supervised_terms import field_cosine

from .conftest import masked_batch


@pytest.mark.parametrize("k", [1, 4])
def test_layer_gradient_is_the_backward_pass_at_layer_k(tiny_inpainter, k):
    image, mask = masked_batch(2, 64)
    task = prepare_task(tiny_inpainter, image, mask)
    x, outs, grad, layer_grad = layer_gradient(tiny_inpainter, task, k)
    torch.testing.assert_close(grad, input_gradient(tiny_inpainter, task))
    assert layer_grad.shape == (3 * 2, 8 * 2 ** (k - 1), 64 // 2 ** (k - 1), 64 // 2 ** (k - 1))
    # the image gradient is the layer gradient sent back through layers 1..k: the hook caught the right tensors
    (back,) = torch.autograd.grad(outs, x, grad_outputs=list(layer_grad.split([t.shape[1] for t in outs], dim=1)))
    torch.testing.assert_close(back, grad, rtol=1e-4, atol=1e-6 * grad.abs().max().item())
    field = head_field(layer_grad, task)
    assert field.shape == (2, *layer_grad.shape[1:])
    torch.testing.assert_close(field[0, :, -1, -1], layer_grad[0, :, -1, -1] + layer_grad[2, :, -1, -1])  # far from E(m)
    ring_cell = (slice(None), 12 // 2 ** (k - 1), 14 // 2 ** (k - 1))  # inside image 0's hole: incp left out
    torch.testing.assert_close(field[0][ring_cell], layer_grad[0][ring_cell])


def test_gradient_cache_stores_the_normalised_field_and_keeps_recipes_apart(tmp_path, inpainter_file,
                                                                              tiny_inpainter):
    build_gradient_cache(tmp_path / "f", inpainter_file, None, count=4, size=32, shard_size=4, batch_size=2,
                         field_layers=2, log=lambda _: None)
    cache = GradientCache(tmp_path / "f")
    assert cache.recipe["field_layers"] == 2 and cache.data["field"].shape == (4, 16, 16, 16)
    item = cache[3]
    assert item["has_field"] == 1 and item["field"].abs().mean().item() == pytest.approx(1, abs=1e-2)
    image, mask = item["image"][None], item["mask"][None]
    _, _, grad, layer_grad = layer_gradient(tiny_inpainter, prepare_task(tiny_inpainter, image, mask), 2)
    field = head_field(layer_grad, prepare_task(tiny_inpainter, image, mask))[0]
    torch.testing.assert_close(item["field"], field / field.abs().mean(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(item["grad"], grad[0] / grad.abs().mean(), rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="was built with other field_layers"):
        build_gradient_cache(tmp_path / "f", inpainter_file, None, count=8, size=32, shard_size=4,
                             log=lambda _: None)
    build_gradient_cache(tmp_path / "g", inpainter_file, None, count=4, size=32, shard_size=4, log=lambda _: None)
    plain = GradientCache(tmp_path / "g")
    assert "field_layers" not in plain.recipe and "field" not in plain[0]  # caches from before fields load as they were


def test_field_cosine_rewards_the_negated_gradient_over_the_entries_that_carry_one():
    reference = torch.randn(3, 16, 4, 4)
    has = torch.tensor([1.0, 1.0, 0.0])
    cosine = field_cosine
    assert cosine(-reference, reference, has).item() == pytest.approx(1)  # the head takes -G
    assert cosine(reference, reference, has).item() == pytest.approx(-1)
    mixed = torch.cat([-reference[:2], reference[2:]])
    assert cosine(mixed, reference, has).item() == pytest.approx(1)  # the third entry is not counted
    assert cosine(reference, reference, torch.zeros(3)).item() == 0


@pytest.mark.parametrize("stage", ["supervised", "end-to-end"])
def test_field_supervised_training_fits_an_encoder_gradient_generator(tmp_path, ci_config, inpainter_file, stage,
                                                                      monkeypatch):
    build_gradient_cache(tmp_path / "fc", inpainter_file, None, count=8, size=32, shard_size=8, field_layers=2,
                         log=lambda _: None)
    seen = []
    real = field_cosine

    def counted(field, reference, has):
        seen.append(has.clone())
        value = real(field, reference, has)
        assert value.requires_grad  # the term reaches the U-Net
        return value

    monkeypatch.setattr(generator_module, "field_cosine", counted)
    supervised = stage == "supervised"
    assert train_main(["fit", "--config", str(ci_config), "--model.head", "stem-gradient", "--model.stem_channels",
                       "8", "--model.head_layers", "2", "--model.field_weight", "1",
                       "--model.e2e_weight", "0" if supervised else "1", "--model.gradient_weight", "1",
                       "--data.gradient_cache", str(tmp_path / "fc"),
                       "--data.teacher_fraction", "1.0" if supervised else "0.5",
                       "--trainer.limit_val_batches", "0"]) == 0
    assert len(seen) == 4  # every training step
    counts = torch.cat(seen)
    assert counts.sum() > 0 and (supervised == bool(counts.all()))  # fresh samples carry no field
