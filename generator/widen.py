"""Function-preserving widening of a trained noise U-Net (Net2WiderNet, Chen et al. 2016).

A trained generator can go on training with ``r`` times the channels per level and start from exactly the
function it had: each channel is copied ``r`` times, and whatever reads a copied channel gets its weight split
among the copies. The copies of a channel sit in the group of the original, so every GroupNorm group holds each
of its old channels ``r`` times and normalises by the same mean and variance. The split is random (shares that
sum to one, the same for every reader of a channel), so the copies get different gradients and part ways as
training goes on; an even split would keep them equal for ever.
"""

from __future__ import annotations

import torch
from torch import nn

from generator.checkpoint import CheckpointError, copy_weights
from generator.protector import load_generator
from generator.unet import NoiseUNet, UNetConfig

Tensor = torch.Tensor


def _copies(width: int, factor: int, groups: int) -> Tensor:
    """For each of the ``factor * width`` new channels, the old channel it copies, keeping GroupNorm's groups."""
    g = min(groups, width)
    per_group = width // g
    new = torch.arange(factor * width)
    return (new // (factor * per_group)) * per_group + new % per_group


class _Space:
    """One channel space of the network: its old channel per new channel, and the shares readers multiply by."""

    def __init__(self, copies: Tensor, shares: Tensor) -> None:
        self.copies, self.shares = copies, shares

    @classmethod
    def fixed(cls, width: int) -> _Space:  # an input or output that is not widened
        return cls(torch.arange(width), torch.ones(width))

    @classmethod
    def widened(cls, width: int, factor: int, groups: int, gen: torch.Generator) -> _Space:
        copies = _copies(width, factor, groups)
        raw = 0.5 + torch.rand(factor * width, generator=gen)  # shares in [0.5, 1.5] before normalising
        total = torch.zeros(width).index_add_(0, copies, raw)
        return cls(copies, raw / total[copies])

    def cat(self, other: _Space) -> _Space:  # channels concatenated after this space's
        return _Space(torch.cat([self.copies, other.copies + len(self.copies.unique())]),
                      torch.cat([self.shares, other.shares]))


def widen(net: NoiseUNet, widths: list[int], seed: int = 0) -> NoiseUNet:
    """A copy of ``net`` with ``widths`` (each an integer multiple ``r >= 1`` of the old, the same ``r``) that
    computes the same noise up to float rounding."""
    cfg = net.config
    old = list(cfg.widths)
    factors = {n // o if n % o == 0 else 0 for n, o in zip(widths, old)}  # 0: not a multiple
    if len(widths) != len(old) or len(factors) != 1 or 0 in factors:
        raise ValueError(f"cannot widen widths {old} to {list(widths)}: each must grow by the same integer factor")
    if cfg.global_context != "none":
        raise ValueError("widening a generator with global_context is not supported; widen first, then add it")
    factor = factors.pop()
    gen = torch.Generator().manual_seed(seed)
    levels = [_Space.widened(w, factor, cfg.groups, gen) for w in old]
    wide = NoiseUNet(UNetConfig(**{**cfg.to_dict(), "widths": list(widths)}))
    old_state = net.state_dict()

    def conv(key: str, out: _Space | None, inp: _Space | None) -> dict[str, Tensor]:
        w = old_state[f"{key}.weight"]
        out = out or _Space.fixed(w.shape[0])
        inp = inp or _Space.fixed(w.shape[1])
        state = {f"{key}.weight": w[out.copies][:, inp.copies] * inp.shares.reshape(1, -1, 1, 1)}
        if f"{key}.bias" in old_state:
            state[f"{key}.bias"] = old_state[f"{key}.bias"][out.copies]
        return state

    def norm(key: str, space: _Space) -> dict[str, Tensor]:
        return {f"{key}.{p}": old_state[f"{key}.{p}"][space.copies] for p in ("weight", "bias")}

    def block(key: str, out: _Space, inp: _Space, module: nn.Module) -> dict[str, Tensor]:
        state = {**conv(f"{key}.body.0", out, inp), **norm(f"{key}.body.1", out),
                 **conv(f"{key}.body.3", out, out), **norm(f"{key}.body.4", out)}
        if isinstance(module.skip, nn.Conv2d):
            state.update(conv(f"{key}.skip", out, inp))
        return state

    state = dict(old_state)  # the frozen target layers and anything not widened stay as they are
    state.update(conv("stem.1", levels[0], None))
    for i, encoder in enumerate(net.encoders):
        if i:
            state.update(conv(f"down.{i}", levels[i], levels[i - 1]))
        for j, module in enumerate(encoder):
            state.update(block(f"encoders.{i}.{j}", levels[i], levels[i], module))
    for j, module in enumerate(net.decoders):
        i = len(old) - 1 - j  # up[j] brings level i to level i - 1
        state.update(conv(f"up.{j}", levels[i - 1], levels[i]))
        state.update(block(f"decoders.{j}", levels[i - 1], levels[i - 1].cat(levels[i - 1]), module))
    state.update(conv("head.0", None, levels[net.field_level]))
    if net.feature_proj is not None:
        state.update(conv("feature_proj", levels[net.field_level], None))
    wide.load_state_dict(state, strict=True)
    return wide


def start_from(net: NoiseUNet, source: str) -> None:
    """Copy a saved generator's weights into ``net`` key for key with every shape checked; a source with as many
    levels but narrower is widened first (above), and a block of ``GROWN_BLOCKS`` it lacks starts as the identity."""
    source_net = load_generator(source)
    old, new = list(source_net.config.widths), list(net.config.widths)
    if old != new and len(old) == len(new):  # another depth is another architecture: copy_weights says so
        try:
            source_net = widen(source_net, new)
        except ValueError as err:
            raise CheckpointError(f"init_from '{source}': {err}") from None
    copy_weights(net, net.config, source_net, source_net.config, source)
