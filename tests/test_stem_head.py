"""The stem-gradient head: the target's first layer run backwards, and the U-Net that predicts its input."""

from __future__ import annotations

import pytest
import torch

from generator.stem_head import StemGradientHead
from generator.unet import NoiseUNet, UNetConfig
from trainer.objective.fgsm import input_gradient
from trainer.objective.losses import LossWeights, prepare_task, protection_losses


def _batch(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, size, size, generator=gen)
    mask = torch.zeros(2, 1, size, size)
    mask[0, :, 10:20, 12:22] = 1
    mask[1, :, 4:12, 16:30] = 1
    return image, mask


def test_head_fed_the_true_stem_gradient_gives_the_input_gradient(tiny_inpainter):
    # g = W^T (relu'(z) * bn_scale * G): with the exact G at the stem's output, the head is the exact backward
    # pass (of the attack term: the head gates one field as the attack's input, the incp term's stem differs)
    attack_only = LossWeights(attack=1.0, incp=0.0, hide=0.0)
    image, mask = _batch()
    task = prepare_task(tiny_inpainter, image, mask)
    outputs = []
    hook = tiny_inpainter.net.model[1].register_forward_hook(lambda module, args, out: outputs.append(out[0]))
    with torch.enable_grad():
        x = image.clone().requires_grad_(True)
        total = protection_losses(tiny_inpainter, x, task, attack_only)["total"].sum()
        (stem_grad,) = torch.autograd.grad(total, outputs[0])
    hook.remove()
    head = StemGradientHead(channels=8, kernel=7)
    head.copy_layers(tiny_inpainter.encoder_layers(1))
    b = image.shape[0]
    # the batched forward is (attack, incp, hide): only the attack's third carries a gradient
    assert stem_grad[b:].abs().max() == 0
    raw = head(-stem_grad[:b], image, mask)
    g = input_gradient(tiny_inpainter, task, attack_only)
    # the head leaves out the reflect padding's fold back onto the pixels 1-3 rows and columns in from the edge
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert g.abs().max() > 0
    torch.testing.assert_close(raw[inner], -g[inner], rtol=1e-4, atol=1e-6 * g.abs().max().item())


def test_stem_head_unet_is_bounded_and_keeps_its_stem_when_saved(tiny_inpainter, tmp_path):
    from generator.protector import load_generator, save_generator

    net = NoiseUNet(UNetConfig(widths=[8, 16], head="stem-gradient", stem_channels=8))
    net.target_stem.copy_layers(tiny_inpainter.encoder_layers(1))
    with torch.no_grad():
        net.head[0].weight.normal_(std=1.0)  # a large output, so that the bound is what limits it
    image, mask = _batch(30)  # not a multiple of the U-Net's size: padded and cropped back
    noise = net(image, mask, torch.rand(2, 3))
    assert noise.shape == image.shape and noise.abs().max() <= net.config.eps
    assert noise.abs().max() > 0.5 * net.config.eps
    path = save_generator(net, tmp_path / "g.safetensors")
    loaded = load_generator(path)
    assert loaded.config.head == "stem-gradient"
    torch.testing.assert_close(loaded.target_stem.weight, tiny_inpainter.encoder_layers(1)[0][0])
    torch.testing.assert_close(loaded(image, mask, torch.zeros(2, 3) + 0.5), net(image, mask, torch.zeros(2, 3) + 0.5))


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="head must be one of"):
        NoiseUNet(UNetConfig(head="mystery"))


def test_pixel_shuffled_conv_is_the_shuffle_of_the_convolution():
    from torch import nn

    from generator.unet import pixel_shuffled_conv

    torch.manual_seed(0)
    conv = nn.Conv2d(5, 3 * 4, 1)
    x = torch.randn(2, 5, 6, 7)
    torch.testing.assert_close(pixel_shuffled_conv(x, conv), nn.PixelShuffle(2)(conv(x)))


@pytest.mark.parametrize("size", [(48, 40), (50, 70), (96, 80)])
@pytest.mark.parametrize("head_layers,features,rank", [(1, False, 1.0), (4, False, 1.0), (4, True, 1.0), (4, True, 0.5)])
def test_banded_head_equals_one_pass(tiny_inpainter, monkeypatch, size, head_layers, features, rank):
    # large images run the head over bands of rows (their 32-channel tensors would take gigabytes at 4K):
    # every band size, aligned with the field's 2x2 cells or not, must give the one-pass noise and gradient;
    # the encoder head (generator/encoder_head.py) also meets LaMa's reflect padding at the top and bottom bands,
    # and so do the encoder activations a generator with encoder_features reads
    import generator.unet as unet

    widths = [8, 16] if head_layers == 1 else [8, 16, 16, 32]
    net = NoiseUNet(UNetConfig(widths=widths, head="stem-gradient", stem_channels=8, head_layers=head_layers,
                               encoder_features=features, head_rank=rank))
    net.target_head.copy_layers(tiny_inpainter.encoder_layers(head_layers))
    with torch.no_grad():
        net.head[0].weight.normal_(std=0.3)
        if features:
            net.feature_proj.weight.normal_(std=0.3)
    h, w = size
    gen = torch.Generator().manual_seed(1)
    image, mask, target = torch.rand(1, 3, h, w, generator=gen), torch.zeros(1, 1, h, w), torch.rand(1, 3, generator=gen)
    mask[..., 10:30, 8:20] = 1

    def noise_and_grad() -> tuple[torch.Tensor, torch.Tensor]:
        net.zero_grad()
        noise = net(image, mask, target)
        noise.square().sum().backward()
        return noise.detach(), net.head[0].weight.grad.clone()

    monkeypatch.setattr(unet, "BAND_PIXELS", 10**9)
    whole, whole_grad = noise_and_grad()
    padded_w = w + (-w % net.size_multiple)
    for rows in (16, 17, 23, 31):
        monkeypatch.setattr(unet, "BAND_PIXELS", rows * padded_w)
        assert net.band_rows(h + (-h % net.size_multiple), padded_w) == rows
        noise, grad = noise_and_grad()
        # a low-rank head's 1x1 factor runs on bands: float rounding in another order, far below one 8-bit level
        torch.testing.assert_close(noise, whole, rtol=0, atol=1e-7 if rank == 1 else 1e-6)
        torch.testing.assert_close(grad, whole_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("head,head_layers", [("direct", 1), ("stem-gradient", 1), ("stem-gradient", 4)])
def test_no_head_puts_noise_in_the_hole(tiny_inpainter, head, head_layers):
    # the inpainter sees image * (1 - mask): noise in the hole steers nothing and only shows on the protected
    # region. The gradient heads leave it untouched by construction, the direct one by its mask
    widths = [8, 16] if head_layers == 1 else [8, 16, 16, 32]
    net = NoiseUNet(UNetConfig(widths=widths, head=head, stem_channels=8, head_layers=head_layers))
    if net.target_head is not None:
        net.target_head.copy_layers(tiny_inpainter.encoder_layers(head_layers))
    with torch.no_grad():
        net.head[0].weight.normal_(std=1.0)
    image, mask = _batch(30)  # padded to the U-Net's multiple: the hole must be cut from the unpadded mask
    noise = net(image, mask, torch.rand(2, 3))
    hole = mask.expand_as(noise) > 0
    assert noise[hole].abs().max() == 0
    assert noise[~hole].abs().mean() > 0.1 * net.config.eps
