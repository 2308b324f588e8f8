"""Growing a trained generator: Net2Net widening, a global block and the target's bottleneck blocks, each added so
that the grown network starts as the trained one."""

from __future__ import annotations

import pytest
import torch

from generator.protector import load_generator, save_generator
from generator.unet import NoiseUNet, UNetConfig
from generator.widen import start_from, widen
from tests.test_stem_head import _batch


def _trained(config: UNetConfig, tiny_inpainter=None) -> NoiseUNet:
    """A network whose every trainable weight is far from its initial value, as after training."""
    net = NoiseUNet(config)
    if net.target_encoder is not None:
        net.target_encoder.copy_layers(tiny_inpainter.encoder_layers(config.head_layers))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not name.startswith(("target_encoder.", "target_stem.")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + (1 if name.endswith("1.weight") else 0))
    return net.eval()


@pytest.mark.parametrize("config", [
    UNetConfig(widths=[8, 16, 16, 32]),
    UNetConfig(widths=[8, 16, 32], blocks_per_level=2, groups=4),
    UNetConfig(widths=[8, 16, 16, 32], head="stem-gradient", stem_channels=8, head_layers=4, encoder_features=True),
])
def test_widened_generator_computes_the_same_noise_and_its_copies_part_ways(tiny_inpainter, config):
    net = _trained(config, tiny_inpainter)
    wide = widen(net, [3 * w for w in config.widths]).eval()
    assert sum(p.numel() for p in wide.parameters()) > 2 * sum(p.numel() for p in net.parameters())
    image, mask = _batch(64)
    target = torch.rand(2, 3)
    with torch.no_grad():
        before, after = net.raw(image, mask, target), wide.raw(image, mask, target)
    assert before.abs().max() > 1e-2  # a real function, not zero against zero
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4 * before.abs().max().item())
    # the three copies of a channel get different gradients (an even split would keep them equal for ever)
    wide.train()
    wide.raw(image, mask, target).square().mean().backward()
    grad = wide.encoders[0][0].body[0].weight.grad  # level 0: old width 8 in 8 groups, so copies are 0, 1, 2
    assert (grad[0] - grad[1]).abs().max() > 1e-3 * grad[0].abs().max()


def test_training_starts_a_wider_generator_with_a_global_block_from_a_saved_one(tiny_inpainter, tmp_path):
    config = UNetConfig(widths=[8, 16, 16, 32], head="stem-gradient", stem_channels=8, head_layers=4,
                        encoder_features=True)
    source = save_generator(_trained(config, tiny_inpainter), tmp_path / "small.safetensors")
    grown = NoiseUNet(UNetConfig(**{**config.to_dict(), "widths": [16, 32, 32, 64], "global_context": "fourier"}))
    start_from(grown, str(source))
    image, mask = _batch(64)
    target = torch.rand(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(image, mask, target), load_generator(source)(image, mask, target),
                                   rtol=1e-3, atol=5e-5)  # 0.2% of eps: float rounding
    with pytest.raises(ValueError, match=r"cannot widen widths \[8, 16, 16, 32\] to \[16, 32, 48, 64\]"):
        start_from(NoiseUNet(UNetConfig(**{**config.to_dict(), "widths": [16, 32, 48, 64]})), str(source))
    with pytest.raises(ValueError, match="widening a generator with global_context"):
        widen(grown, [32, 64, 64, 128])


def test_bottleneck_blocks_are_the_targets_own_frozen_and_start_as_the_generator_without_them(
        inpainter_file, tiny_inpainter, tmp_path):
    from trainer.training.generator_module import GeneratorModule

    config = UNetConfig(widths=[8, 16, 16, 32], head="stem-gradient", stem_channels=8, head_layers=4,
                        encoder_features=True)
    source = save_generator(_trained(config, tiny_inpainter), tmp_path / "plain.safetensors")
    module = GeneratorModule(inpainter=inpainter_file, widths=[8, 16, 16, 32], groups=8, head="stem-gradient",
                             stem_channels=8, head_layers=4, encoder_features=True, bottleneck_blocks=1,
                             init_from=str(source))
    module.setup("fit")
    net = module.net.train()
    assert not net.target_blocks[0].conv1.bn_l.training  # the target's statistics, also while training
    assert not any(p.requires_grad for p in net.target_blocks.parameters())
    image, mask = _batch(64)
    target = torch.rand(2, 3)
    torch.testing.assert_close(net(image, mask, target), load_generator(source)(image, mask, target),
                               rtol=0, atol=0)
    # what it reads: the target's bottleneck after its first block, on the attack's input
    out = tiny_inpainter.net.model[0](torch.cat([image * (1 - mask), mask], dim=1))
    for i in range(1, 6):
        out = tiny_inpainter.net.model[i](out)
    reference = torch.cat(out, 1).detach()
    with torch.no_grad():  # the encoder's BatchNorm is folded into its weights: equal up to float rounding
        torch.testing.assert_close(net.bottleneck(net.target_encoder.encode(image, mask).last), reference,
                                   rtol=1e-3, atol=1e-4 * reference.abs().max().item())
    net(image, mask, target).square().sum().backward()
    assert net.bottleneck_proj.weight.grad.abs().max() > 0  # a zero start is not a dead end
    with torch.no_grad():
        net.bottleneck_proj.weight.normal_()
    loaded = load_generator(save_generator(net, tmp_path / "grown.safetensors"))
    assert loaded.config.bottleneck_blocks == 1
    torch.testing.assert_close(loaded(image, mask, target), net.eval()(image, mask, target))
    with pytest.raises(ValueError, match="this inpainter has 1 bottleneck blocks, not 2"):
        tiny_inpainter.bottleneck_blocks(2)
    with pytest.raises(ValueError, match="bottleneck_blocks needs encoder_features"):
        NoiseUNet(UNetConfig(**{**config.to_dict(), "encoder_features": False, "bottleneck_blocks": 1}))
