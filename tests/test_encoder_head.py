"""The encoder-gradient head: the target's layers 1..k run backwards, and the U-Net that predicts their field."""

from __future__ import annotations

import pytest
import torch

from generator.encoder_head import EncoderGradientHead, lama_encoder_widths
from generator.unet import NoiseUNet, UNetConfig
from tests.test_stem_head import _batch


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_head_fed_a_field_is_the_backward_pass_of_the_target_layers(tiny_inpainter, k):
    # g = T_1 D_1 ... T_k D_k G: with any G at layer k's output (both branches of an FFC layer), the head is the
    # exact vector-Jacobian product of the real layers on the attack's input, away from the reflect-padded border
    image, mask = _batch(96)
    x = image.clone().requires_grad_(True)
    with torch.enable_grad():
        out = tiny_inpainter.net.model[0](torch.cat([x * (1 - mask), mask], dim=1))
        for i in range(1, k + 1):
            out = tiny_inpainter.net.model[i](out)
        outs = [t for t in out if torch.is_tensor(t)]
        fields = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(outs)]
        (g,) = torch.autograd.grad(outs, x, grad_outputs=fields)
    head = EncoderGradientHead(lama_encoder_widths(8, k))
    head.copy_layers(tiny_inpainter.encoder_layers(k))
    raw = head(-torch.cat(fields, dim=1), image, mask)
    border = 4 * 2 ** (k - 1)  # the padding's fold back reaches one layer-k cell (and a kernel radius) in
    inner = (slice(None), slice(None), slice(border, -border), slice(border, -border))
    assert g[inner].abs().max() > 0
    torch.testing.assert_close(raw[inner], -g[inner], rtol=1e-4, atol=1e-5 * g.abs().max().item())


def test_deep_head_unet_is_bounded_and_keeps_its_layers_when_saved(tiny_inpainter, tmp_path):
    from generator.protector import load_generator, save_generator

    net = NoiseUNet(UNetConfig(widths=[8, 16, 16, 32], head="stem-gradient", stem_channels=8, head_layers=4))
    assert len(net.decoders) == 1  # the field is made at 1/8 resolution: no decoder above that level
    net.target_encoder.copy_layers(tiny_inpainter.encoder_layers(4))
    with torch.no_grad():
        net.head[0].weight.normal_(std=3.0)  # a large output, so that the bound is what limits it
    image, mask = _batch(60)  # not a multiple of the U-Net's size: padded and cropped back
    target = torch.rand(2, 3)
    noise = net(image, mask, target)
    assert noise.shape == image.shape and noise.abs().max() <= net.config.eps
    assert noise.abs().max() > 0.5 * net.config.eps
    assert noise[mask.expand_as(noise) > 0].abs().max() == 0  # the attack's input hides the hole's pixels
    loaded = load_generator(save_generator(net, tmp_path / "g.safetensors"))
    assert loaded.config.head_layers == 4
    torch.testing.assert_close(loaded.target_encoder.weight3, net.target_encoder.weight3)
    torch.testing.assert_close(loaded(image, mask, target), noise)


def test_head_refuses_layers_of_another_shape(tiny_inpainter):
    head = EncoderGradientHead(lama_encoder_widths(16, 3))
    with pytest.raises(ValueError, match="first layer has shape"):
        head.copy_layers(tiny_inpainter.encoder_layers(3))
    with pytest.raises(ValueError, match="needs a U-Net with more than"):
        NoiseUNet(UNetConfig(widths=[8, 16], head="stem-gradient", head_layers=3))


def test_training_module_copies_the_target_layers_into_the_head(inpainter_file, tiny_inpainter):
    from trainer.training.generator_module import GeneratorModule

    module = GeneratorModule(inpainter=inpainter_file, widths=[8, 16, 16, 32], groups=4, head="stem-gradient",
                             stem_channels=8, head_layers=3)
    module.setup("fit")
    layers = tiny_inpainter.encoder_layers(3)
    head = module.net.target_encoder
    torch.testing.assert_close(head.stem.weight, layers[0][0])
    torch.testing.assert_close(head.weight2, layers[2][0] * layers[2][1][:, None, None, None])
    torch.testing.assert_close(head.shift2, layers[2][2])


def test_encoder_features_start_as_the_generator_without_them_and_learn(tiny_inpainter, tmp_path):
    from generator.checkpoint import CheckpointError, copy_weights
    from generator.protector import load_generator, save_generator

    config = UNetConfig(widths=[8, 16, 16, 32], head="stem-gradient", stem_channels=8, head_layers=4)
    plain = NoiseUNet(config)
    plain.target_encoder.copy_layers(tiny_inpainter.encoder_layers(4))
    with torch.no_grad():
        plain.head[0].weight.normal_(std=0.3)
    grown_config = UNetConfig(**{**config.to_dict(), "encoder_features": True})
    grown = NoiseUNet(grown_config)
    copy_weights(grown, grown_config, plain, config, "plain")  # the projection keeps its zero start
    image, mask = _batch(64)
    target = torch.rand(2, 3)
    torch.testing.assert_close(grown(image, mask, target), plain(image, mask, target), rtol=0, atol=0)
    grown(image, mask, target).square().sum().backward()
    assert grown.feature_proj.weight.grad.abs().max() > 0  # a zero start is not a dead end
    # what the projection reads: lama-tiny's layer-4 output on the attack's input, both branches
    out = tiny_inpainter.net.model[0](torch.cat([image * (1 - mask), mask], dim=1))
    for i in range(1, 5):
        out = tiny_inpainter.net.model[i](out)
    torch.testing.assert_close(grown.target_encoder.encode(image, mask).last, torch.cat(out, dim=1),
                               rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        grown.feature_proj.weight.normal_()
    loaded = load_generator(save_generator(grown, tmp_path / "g.safetensors"))
    assert loaded.config.encoder_features
    torch.testing.assert_close(loaded(image, mask, target), grown(image, mask, target))
    with pytest.raises(CheckpointError, match=r"encoder_features True \(this model: False\)"):
        copy_weights(plain, config, grown, grown_config, "grown")  # a block is never dropped silently
    with pytest.raises(ValueError, match="encoder_features needs head: stem-gradient with head_layers > 1"):
        NoiseUNet(UNetConfig(widths=[8, 16], head="stem-gradient", encoder_features=True))


def test_low_rank_head_runs_the_truncated_layers(tiny_inpainter):
    # head_rank < 1 keeps each of layers 2..k as its best rank-r approximation, run as a 3x3 convolution to r
    # channels and a 1x1 one back: the same function as the exact head carrying those truncated weights
    widths = lama_encoder_widths(8, 4)
    layers = tiny_inpainter.encoder_layers(4)
    low = EncoderGradientHead(widths, rank=0.5)
    low.copy_layers(layers)
    assert low.ranks == [8, 8, 16, 32] and low.weight3.shape == (32, 32, 3, 3) and low.mix3.shape == (64, 32, 1, 1)
    truncated = []
    for weight, scale, shift in layers:
        folded = weight * scale[:, None, None, None]
        if len(truncated):
            u, s, vh = torch.linalg.svd(folded.flatten(1), full_matrices=False)
            r = folded.shape[0] // 2
            folded = ((u[:, :r] * s[:r]) @ vh[:r]).reshape(folded.shape)
        truncated.append((folded, torch.ones_like(scale), shift))
    truncated[0] = layers[0]
    exact = EncoderGradientHead(widths)
    exact.copy_layers(truncated)
    image, mask = _batch(64)
    field = torch.randn(2, 64, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(low.encode(image, mask).last, exact.encode(image, mask).last, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(low(field, image, mask), exact(field, image, mask), rtol=1e-4, atol=1e-5)
    full = EncoderGradientHead(widths)
    full.copy_layers(layers)
    assert (low(field, image, mask) - full(field, image, mask)).abs().max() > 1e-3  # it is an approximation
    with pytest.raises(ValueError, match=r"in \(0, 1\], got 0"):
        EncoderGradientHead(widths, rank=0)


def test_generator_starts_from_one_with_another_head_rank(tiny_inpainter, tmp_path):
    # the rank changes only the frozen copy of the target's layers, which comes from the target: a generator
    # trained with the exact head starts a low-rank one (and back) with every U-Net weight copied
    from generator.checkpoint import copy_weights
    from generator.protector import load_generator, save_generator

    config = UNetConfig(widths=[8, 16, 16, 32], head="stem-gradient", stem_channels=8, head_layers=4,
                        encoder_features=True)
    exact = NoiseUNet(config)
    exact.target_encoder.copy_layers(tiny_inpainter.encoder_layers(4))
    with torch.no_grad():
        exact.head[0].weight.normal_(std=0.3)
    low_config = UNetConfig(**{**config.to_dict(), "head_rank": 0.25})
    low = NoiseUNet(low_config)
    low.target_encoder.copy_layers(tiny_inpainter.encoder_layers(4))
    copy_weights(low, low_config, exact, config, "exact")
    torch.testing.assert_close(low.head[0].weight, exact.head[0].weight)
    assert low.target_encoder.weight3.shape == (16, 32, 3, 3)
    image, mask = _batch(64)
    target = torch.rand(2, 3)
    loaded = load_generator(save_generator(low, tmp_path / "low.safetensors"))
    assert loaded.config.head_rank == 0.25
    torch.testing.assert_close(loaded(image, mask, target), low(image, mask, target))
    back = NoiseUNet(config)
    back.target_encoder.copy_layers(tiny_inpainter.encoder_layers(4))
    copy_weights(back, config, low, low_config, "low")
    torch.testing.assert_close(back(image, mask, target), exact(image, mask, target))


@pytest.mark.parametrize("rank", [1.0, 0.5])
def test_head_is_differentiable_in_its_field(tiny_inpainter, rank):
    # training backpropagates through the head into the U-Net, and the head gates in place on its own tensors:
    # autograd's gradient must be the numerical one (the head is linear in the field, away from exact zeros)
    head = EncoderGradientHead(lama_encoder_widths(8, 3), rank=rank)
    head.copy_layers(tiny_inpainter.encoder_layers(3))
    head = head.double()
    image, mask = (t.double() for t in _batch(16))
    field = torch.randn(2, 32, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                        requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: head(f, image, mask), (field,), eps=1e-6, atol=1e-5)
