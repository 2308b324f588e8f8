"""Reshaping the end-to-end gradient at an encoder-gradient generator's field (``model.field_gradient``)."""

from __future__ import annotations

import pytest
import torch

from trainer.training import generator_module
from trainer.training.field_gradient import reshaped
from trainer.training.generator_module import GeneratorModule

from .conftest import masked_batch


def _gradient() -> torch.Tensor:
    g = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    g[1] *= 10  # one image with a far larger gradient
    g[2] = 0    # and one with none
    return g


def test_loss_keeps_the_gradient_and_sample_and_sign_give_every_image_the_same_size():
    g = _gradient()
    assert torch.equal(reshaped(g, "loss"), g)
    for mode in ("sample", "sign"):
        r = reshaped(g, mode)
        sizes = r.abs().mean(dim=(1, 2, 3))
        torch.testing.assert_close(sizes[:2], torch.full((2,), g.abs().mean().item()))
        assert torch.equal(r[2], torch.zeros_like(r[2]))  # nothing to steer: nothing comes back
        assert torch.equal(r.sign(), g.sign())
    torch.testing.assert_close(reshaped(g, "sample")[:2] / g[:2],
                               g.abs().mean() / g[:2].abs().mean(dim=(1, 2, 3), keepdim=True).expand(2, 4, 2, 2))
    assert reshaped(g, "sign")[0].abs().unique().numel() == 1


def test_a_bad_mode_or_a_generator_without_a_field_is_refused(inpainter_file):
    with pytest.raises(ValueError, match="field_gradient must be one of loss, sample, sign"):
        GeneratorModule(inpainter=inpainter_file, head="stem-gradient", head_layers=2, field_gradient="adam")
    with pytest.raises(ValueError, match="needs a generator with a field"):
        GeneratorModule(inpainter=inpainter_file, field_gradient="sign")


def _step(module: GeneratorModule, seen: dict) -> dict[str, torch.Tensor]:
    """One training step's loss and the U-Net's parameter gradients."""
    image, mask = masked_batch(2, 32)
    module.log = lambda *args, **kwargs: None
    module.net.zero_grad(set_to_none=True)
    loss = module.training_step({"image": image, "mask": mask}, 0)
    loss.backward()
    seen["loss"] = loss.detach()
    return {n: p.grad.clone() for n, p in module.net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["sample", "sign"])
def test_the_unet_learns_from_the_reshaped_gradient_at_its_field(inpainter_file, monkeypatch, mode):
    def module(field_gradient: str) -> GeneratorModule:
        torch.manual_seed(0)
        m = GeneratorModule(inpainter=inpainter_file, widths=[8, 16, 16, 16], head="stem-gradient", stem_channels=8,
                            head_layers=2, panel_every_n_steps=0, field_gradient=field_gradient)
        m.setup("fit")
        return m

    plain, seen_plain = module("loss"), {}
    plain_grads = _step(plain, seen_plain)
    shaped, seen = module(mode), {}
    real = generator_module.reshape_field_gradient

    def recording(field, how):  # registered first: it sees the gradient as the loss makes it
        seen["field_grad"] = None
        field.register_hook(lambda grad: seen.__setitem__("field_grad", grad))
        return real(field, how)

    monkeypatch.setattr(generator_module, "reshape_field_gradient", recording)
    grads = _step(shaped, seen)
    assert seen["loss"] == seen_plain["loss"]  # the loss is the same; only its gradient changes
    assert not all(torch.allclose(grads[n], plain_grads[n]) for n in grads)
    # what reached the U-Net is the vector-Jacobian product of its field with the reshaped gradient
    image, mask = masked_batch(2, 32)
    task = generator_module.prepare_ensemble_task(shaped.inpainters, image, mask, dilation=17)
    field, _ = shaped.net.field_and_raw(task.image, task.mask, task.target)
    names = list(grads)
    params = dict(shaped.net.named_parameters())
    expected = torch.autograd.grad(field, [params[n] for n in names], reshaped(seen["field_grad"], mode))
    for name, want in zip(names, expected):
        torch.testing.assert_close(grads[name], want, rtol=1e-4, atol=1e-7)
