"""The amortised protector: a small U-Net that emits a bounded protective noise in one pass.

Input: the image (3), the mask (1) and the target colour as three constant
channels (3). Output: ``eps * tanh(raw)``, so ``|noise| <= eps`` holds by
construction for every input. The first layer folds 2x2 pixel blocks into
channels (pixel unshuffle) so that no convolution runs at full resolution:
that is what makes a 512x512 image cheap on a CPU. With ``head: stem-gradient`` the
last stage is instead a frozen copy of the target inpainter's first layer, run backwards
(generator/stem_head.py): two full-resolution convolutions that give the noise the
per-pixel structure of the inpainter's own input gradient. Either way the noise is zero in the
hole, which the inpainter never sees: the heads give that by construction, ``head: direct`` by its mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from generator.encoder_head import EncoderGradientHead, Encoding, lama_encoder_widths
from generator.real_fft import irfft2, rfft2
from generator.stem_head import StemGradientHead
from generator.transpose import exporting

Tensor = torch.Tensor


@dataclass
class UNetConfig:
    """Width and depth of the noise U-Net; ``eps`` is the L_inf bound of its output."""

    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # 0.05 s for 512x512 on 2 CPU cores
    blocks_per_level: int = 1
    groups: int = 8
    eps: float = 0.025
    # "fourier": a spectral block at the bottleneck (as in LaMa's FFC), so every output sees the whole image
    global_context: str = "none"
    # "stem-gradient": the U-Net predicts the gradient at the target inpainter's first layer and a frozen copy
    # of that layer maps it to the image (generator/stem_head.py); "direct": the U-Net emits the noise itself
    head: str = "direct"
    stem_channels: int = 32  # the target's first layer: its width and kernel
    stem_kernel: int = 7
    # how many of the target's layers the stem-gradient head carries: 1, the stem (generator/stem_head.py); k > 1,
    # the encoder down to layer k (generator/encoder_head.py), the U-Net then predicting the field at 1/2^(k-1)
    head_layers: int = 1
    # below 1, an encoder-gradient head keeps that share of the rank of each of the target's layers 2..k (their
    # truncated SVD, generator/encoder_head.py): fewer FLOPs, gates and transposes only approximately the target's
    head_rank: float = 1.0
    # an encoder-gradient head's generator also reads the target's own layer-k activations (computed exactly by
    # the head's frozen layers): the gradient it predicts at layer k is a function of them
    encoder_features: bool = False
    # with encoder_features, also read the target's bottleneck after its first k residual blocks (frozen copies of
    # them): what the target will paint, which its gradient at layer k is a function of. Costs a part of the
    # target's own forward pass; 0: off
    bottleneck_blocks: int = 0
    bottleneck_ratio: float = 0.75  # the share of the bottleneck's channels in its global (Fourier) branch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConvBlock(nn.Module):
    """3x3 conv, GroupNorm, SiLU, twice, with a residual path (GroupNorm suits the small training batches)."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(min(groups, cout), cout), nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(min(groups, cout), cout),
        )
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.skip(x))


class SpectralBlock(nn.Module):
    """A residual global block: 1x1 convolutions on the image-wide 2D Fourier transform (LaMa's spectral transform).

    Its cost grows as N log N in the pixel count, so it scales to 4K images where attention would not.
    """

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.spectral = nn.Sequential(nn.Conv2d(2 * channels, 2 * channels, 1, bias=False),
                                      nn.GroupNorm(min(groups, 2 * channels), 2 * channels), nn.SiLU())
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)  # starts as the identity: adding it does not disturb a trained U-Net
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        f = self.spectral(torch.cat(rfft2(x), dim=1).to(x.dtype))
        y = irfft2(*f.chunk(2, dim=1), (h, w)).to(x.dtype)
        return x + self.out(y)


def pixel_shuffled_conv(x: Tensor, conv: nn.Conv2d, r: int = 2) -> Tensor:
    """``PixelShuffle(r)(conv(x))`` for a 1x1 ``conv``, as one stride-r transposed convolution.

    The same numbers, but no shuffle of the full-resolution result (on a CPU the shuffle took as long as the
    convolution); the bias, which differs per sub-pixel position, rides on a constant input channel.
    """
    out = conv.out_channels // (r * r)
    weight = conv.weight.reshape(out, r, r, conv.in_channels).permute(3, 0, 1, 2)
    bias = conv.bias.reshape(1, out, r, r)
    ones = torch.ones_like(x[:, :1])
    return F.conv_transpose2d(torch.cat([x, ones], dim=1), torch.cat([weight, bias]), stride=r)


CONTEXTS = ("none", "fourier")
# the stem-gradient head runs over bands of about this many pixels: a 512x512 image in one pass, a 4K one in
# bands whose 32-channel tensors stay small (the halo it recomputes is 6 rows a band: 10% at 3840 px wide)
BAND_PIXELS = 512 * 512
HEADS = ("direct", "stem-gradient")


class NoiseUNet(nn.Module):
    """``forward(image, mask, target) -> noise`` with image (B,3,H,W) in [0,1], mask (B,1,H,W), target (B,3)."""

    in_channels = 7

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or UNetConfig()
        self.config = cfg
        w = cfg.widths
        # an IndexError, or (eps < 0) noise far outside any bound, otherwise
        if not w or not all(isinstance(c, int) and c > 0 for c in w):
            raise ValueError(f"widths must be a non-empty list of positive channel counts, got {w!r}")
        if not 0 < cfg.eps < 1:
            raise ValueError(f"eps is the noise's bound, in (0, 1), got {cfg.eps}")
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(self.in_channels * 4, w[0], 3, padding=1))
        self.down = nn.ModuleList()
        self.encoders = nn.ModuleList()
        for i, width in enumerate(w):
            self.down.append(nn.Identity() if i == 0 else nn.Conv2d(w[i - 1], width, 3, stride=2, padding=1))
            self.encoders.append(nn.Sequential(*[ConvBlock(width, width, cfg.groups)
                                                 for _ in range(cfg.blocks_per_level)]))
        if cfg.global_context not in CONTEXTS:
            raise ValueError(f"global_context must be one of {', '.join(CONTEXTS)}, got {cfg.global_context!r}")
        self.context = SpectralBlock(w[-1], cfg.groups) if cfg.global_context == "fourier" else nn.Identity()
        if cfg.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {cfg.head!r}")
        deep = cfg.head == "stem-gradient" and cfg.head_layers > 1
        # the U-Net level whose resolution is that of the field a deep head takes (level i: 1/2^(i+1))
        self.field_level = cfg.head_layers - 2 if deep else 0
        if not 0 <= self.field_level < len(w) - 1:
            raise ValueError(f"head_layers {cfg.head_layers} needs a U-Net with more than {self.field_level + 1} "
                             f"levels, got {len(w)}")
        self.up = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in range(len(w) - 1, self.field_level, -1):
            self.up.append(nn.Conv2d(w[i], w[i - 1], 1))
            self.decoders.append(ConvBlock(2 * w[i - 1], w[i - 1], cfg.groups))
        self.target_stem = self.target_encoder = self.feature_proj = None
        if cfg.head == "direct":
            self.head = nn.Sequential(nn.Conv2d(w[0], 3 * 4, 3, padding=1), nn.PixelShuffle(2))
        elif deep:  # the field at layer k's resolution, from the U-Net level there
            widths = lama_encoder_widths(cfg.stem_channels, cfg.head_layers)
            self.head = nn.Sequential(nn.Conv2d(w[self.field_level], widths[-1], 1))
            self.target_encoder = EncoderGradientHead(widths, cfg.stem_kernel, rank=cfg.head_rank)
            if cfg.encoder_features:  # added to the U-Net's level at layer k's resolution; zero: starts as without
                self.feature_proj = nn.Conv2d(widths[-1], w[self.field_level], 1)
                nn.init.zeros_(self.feature_proj.weight)
                nn.init.zeros_(self.feature_proj.bias)
        else:  # the field is smooth (G): a 1x1 convolution and a pixel shuffle make it at full resolution
            self.head = nn.Sequential(nn.Conv2d(w[0], cfg.stem_channels * 4, 1), nn.PixelShuffle(2))
            self.target_stem = StemGradientHead(cfg.stem_channels, cfg.stem_kernel)
        if cfg.encoder_features and self.feature_proj is None:
            raise ValueError("encoder_features needs head: stem-gradient with head_layers > 1")
        self.target_blocks = self.bottleneck_proj = None
        if cfg.bottleneck_blocks:
            if not cfg.encoder_features:
                raise ValueError("bottleneck_blocks needs encoder_features")
            from trainer.inpainting.ffc import FFCResnetBlock  # lazy, as load_inpainter: only this option needs it

            dim = widths[-1]
            self.target_blocks = nn.Sequential(*[FFCResnetBlock(dim, cfg.bottleneck_ratio, cfg.bottleneck_ratio)
                                                 for _ in range(cfg.bottleneck_blocks)]).requires_grad_(False)
            self.bottleneck_proj = nn.Conv2d(dim, w[self.field_level], 1)
            nn.init.zeros_(self.bottleneck_proj.weight)
            nn.init.zeros_(self.bottleneck_proj.bias)
        # start near zero noise: the untrained protector leaves images (almost) untouched
        nn.init.normal_(self.head[0].weight, std=1e-3)
        nn.init.zeros_(self.head[0].bias)

    def train(self, mode: bool = True) -> NoiseUNet:
        super().train(mode)
        if self.target_blocks is not None:  # frozen: their BatchNorm keeps the target's statistics
            self.target_blocks.eval()
        return self

    def bottleneck(self, last: Tensor) -> Tensor:
        """The target's first ``bottleneck_blocks`` residual blocks on its layer-k output ``last`` (local channels,
        then global), in the same layout."""
        split = last.shape[1] - int(last.shape[1] * self.config.bottleneck_ratio)
        local, glob = self.target_blocks((last[:, :split], last[:, split:]))
        return torch.cat([local, glob], dim=1)

    @property
    def target_head(self) -> StemGradientHead | EncoderGradientHead | None:
        """The frozen copy of the target's layers that the head runs backwards (None for ``head: direct``)."""
        return self.target_encoder if self.target_encoder is not None else self.target_stem

    @property
    def size_multiple(self) -> int:
        return 2 ** len(self.config.widths)

    def _features(self, image: Tensor, mask: Tensor, target: Tensor, encoding: Encoding | None = None) -> Tensor:
        """The U-Net's last decoder output, the head's input (``encoding``: the target's layers on the image, read
        with ``encoder_features``)."""
        colour = target.reshape(-1, 3, 1, 1).to(image).expand(-1, -1, *image.shape[-2:])
        x = self.stem(torch.cat([image * 2 - 1, (mask > 0).to(image.dtype), colour * 2 - 1], dim=1))
        skips = []
        for i, (down, enc) in enumerate(zip(self.down, self.encoders)):
            x = enc(down(x))
            if i == self.field_level and self.feature_proj is not None:
                x = x + self.feature_proj(encoding.last)
                if self.bottleneck_proj is not None:
                    x = x + self.bottleneck_proj(self.bottleneck(encoding.last))
            skips.append(x)
        skips = skips[self.field_level:-1]
        x = self.context(x)
        for up, dec in zip(self.up, self.decoders):
            skip = skips.pop()
            x = F.interpolate(up(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], dim=1))
        return x

    def raw(self, image: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        """Pre-tanh output for inputs whose size is a multiple of ``size_multiple``."""
        if self.target_encoder is not None:
            return self.field_and_raw(image, mask, target)[1]
        x = self._features(image, mask, target)
        if self.target_stem is None:
            return self.head(x)
        rows = self.band_rows(*image.shape[-2:])
        x = x.contiguous(memory_format=torch.channels_last)  # so that the field is made in the head's layout
        if rows is None:
            return self.target_stem(pixel_shuffled_conv(x, self.head[0]), image, mask)

        def field_rows(start: int, stop: int) -> Tensor:  # the field is made at twice x's resolution
            low = start // 2
            field = pixel_shuffled_conv(x[..., low:(stop + 1) // 2, :], self.head[0])
            return field[..., start - 2 * low:stop - 2 * low, :]

        return self.target_stem.banded(field_rows, image, mask, rows)

    def field_and_raw(self, image: Tensor, mask: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """An encoder-gradient generator's field (what it predicts of ``-G_k``, the negated gradient at the target's
        layer k) and the pre-tanh output it gives, for inputs whose size is a multiple of ``size_multiple``."""
        if self.target_encoder is None:
            raise ValueError("only a generator with head: stem-gradient and head_layers > 1 predicts a field")
        rows = self.band_rows(*image.shape[-2:])
        # the target's layers run once: the U-Net reads their output, the head gates by their ReLU patterns
        encoding = self.target_encoder.encode(image, mask, rows)
        field = self.field(image, mask, target, encoding)
        if rows is None:
            return field, self.target_encoder(field, image, mask, encoding)
        return field, self.target_encoder.banded(field, image, mask, rows, encoding)

    def field(self, image: Tensor, mask: Tensor, target: Tensor, encoding: Encoding) -> Tensor:
        """The field alone, from the target's layers already run on this input (``target_encoder.encode``)."""
        return self.head(self._features(image, mask, target, encoding))

    def band_rows(self, h: int, w: int) -> int | None:
        """Rows per band of the stem- or encoder-gradient head at h x w: None (one pass) up to ``BAND_PIXELS``,
        or when exporting.

        An export traces one graph for every size, so it keeps the single pass.
        """
        if exporting() or h * w <= BAND_PIXELS:
            return None
        return max(16, BAND_PIXELS // w)

    def noise_and_raw(self, image: Tensor, mask: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """The noise and its pre-tanh value, for any input size (training's supervised terms act on the latter)."""
        h, w = image.shape[-2:]
        m = self.size_multiple
        ph, pw = -h % m, -w % m
        padded = mask
        if ph or pw:
            # replicate, not reflect: reflection needs the pad to be smaller than the image
            image = F.pad(image, (0, pw, 0, ph), mode="replicate")
            padded = F.pad(mask, (0, pw, 0, ph), mode="replicate")
        raw = self.raw(image, padded, target)[..., :h, :w]
        return self.bounded(raw, mask), raw

    def bounded(self, raw: Tensor, mask: Tensor) -> Tensor:
        """The noise from the pre-tanh output: within eps by construction, and zero where ``mask`` is set."""
        noise = self.config.eps * torch.tanh(raw)
        if self.config.head == "direct":
            # the inpainter's input is image * (1 - mask): noise in the hole steers none of its fills and only
            # shows, on the very region being protected. The gradient heads give zero there by construction
            noise = noise * (mask <= 0).to(noise.dtype)
        return noise

    def forward(self, image: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        return self.noise_and_raw(image, mask, target)[0]
