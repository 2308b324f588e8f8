"""LaMa's FFC-ResNet generator (Suvorov et al., 2021), re-implemented.

Module names, registration order and parameter shapes match the official
``saicinpainting`` code, so the state dict of the big-lama checkpoint loads
key-for-key. Only the options big-lama uses are implemented (no LFU, no gating,
no spatial transforms); asking for others fails loudly instead of silently
building a different network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from generator.real_fft import irfft2, rfft2

Tensor = torch.Tensor
# FFC layers pass (local, global) pairs; a missing branch is the integer 0, as upstream.
Branch = Tensor | int


class FourierUnit(nn.Module):
    """1x1 convolution in the frequency domain: a global receptive field in one layer."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # real and imaginary parts are interleaved per channel, hence the factor 2
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        ffted = torch.stack(rfft2(x), dim=2).reshape(b, -1, h, w // 2 + 1)
        ffted = self.relu(self.bn(self.conv_layer(ffted.to(x.dtype))))
        ffted = ffted.reshape(b, -1, 2, h, w // 2 + 1)
        return irfft2(ffted[:, :, 0], ffted[:, :, 1], (h, w)).to(x.dtype)


class SpectralTransform(nn.Module):
    """The global-to-global path of an FFC: squeeze, Fourier unit, residual, expand."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.downsample = nn.AvgPool2d(kernel_size=2, stride=2) if stride == 2 else nn.Identity()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, out_channels // 2, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels // 2),
            nn.ReLU(inplace=True),
        )
        self.fu = FourierUnit(out_channels // 2, out_channels // 2)
        self.conv2 = nn.Conv2d(out_channels // 2, out_channels, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.downsample(x))
        return self.conv2(x + self.fu(x))


def _branch(x: Branch, module: nn.Module) -> Branch:
    # an absent input branch (0) contributes nothing, exactly as nn.Identity(0) upstream
    return module(x) if isinstance(x, Tensor) and not isinstance(module, nn.Identity) else 0


class FFC(nn.Module):
    """Fast Fourier Convolution: local and global channel groups with four cross paths."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float,
        ratio_gout: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        in_cg = int(in_channels * ratio_gin)
        in_cl = in_channels - in_cg
        out_cg = int(out_channels * ratio_gout)
        out_cl = out_channels - out_cg
        self.ratio_gout = ratio_gout

        def conv(cin: int, cout: int) -> nn.Module:
            if cin == 0 or cout == 0:
                return nn.Identity()
            return nn.Conv2d(cin, cout, kernel_size, stride, padding, dilation, bias=False, padding_mode=padding_type)

        self.convl2l = conv(in_cl, out_cl)
        self.convl2g = conv(in_cl, out_cg)
        self.convg2l = conv(in_cg, out_cl)
        self.convg2g = nn.Identity() if in_cg == 0 or out_cg == 0 else SpectralTransform(in_cg, out_cg, stride)

    def forward(self, x: tuple[Branch, Branch] | Tensor) -> tuple[Branch, Branch]:
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        out_l: Branch = 0
        out_g: Branch = 0
        if self.ratio_gout != 1:
            out_l = _branch(x_l, self.convl2l) + _branch(x_g, self.convg2l)
        if self.ratio_gout != 0:
            out_g = _branch(x_l, self.convl2g) + _branch(x_g, self.convg2g)
        return out_l, out_g


class FFC_BN_ACT(nn.Module):  # noqa: N801 - upstream name, kept for readability against the paper code
    """FFC followed by BatchNorm and ReLU on each branch that exists."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float, ratio_gout: float,
                 stride: int = 1, padding: int = 0, dilation: int = 1, padding_type: str = "reflect") -> None:
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, kernel_size, ratio_gin, ratio_gout, stride, padding, dilation,
                       padding_type)
        global_channels = int(out_channels * ratio_gout)
        self.bn_l = nn.BatchNorm2d(out_channels - global_channels) if ratio_gout != 1 else nn.Identity()
        self.bn_g = nn.BatchNorm2d(global_channels) if ratio_gout != 0 else nn.Identity()
        self.act_l = nn.ReLU(inplace=True) if ratio_gout != 1 else nn.Identity()
        self.act_g = nn.ReLU(inplace=True) if ratio_gout != 0 else nn.Identity()

    def forward(self, x: tuple[Branch, Branch] | Tensor) -> tuple[Branch, Branch]:
        x_l, x_g = self.ffc(x)
        if isinstance(x_l, Tensor):
            x_l = self.act_l(self.bn_l(x_l))
        if isinstance(x_g, Tensor):
            x_g = self.act_g(self.bn_g(x_g))
        return x_l, x_g


class FFCResnetBlock(nn.Module):
    """Two FFC_BN_ACT layers with a residual connection on both branches."""

    def __init__(self, dim: int, ratio_gin: float, ratio_gout: float, padding_type: str = "reflect") -> None:
        super().__init__()
        self.conv1 = FFC_BN_ACT(dim, dim, 3, ratio_gin, ratio_gout, padding=1, padding_type=padding_type)
        self.conv2 = FFC_BN_ACT(dim, dim, 3, ratio_gin, ratio_gout, padding=1, padding_type=padding_type)

    def forward(self, x: tuple[Branch, Branch]) -> tuple[Branch, Branch]:
        x_l, x_g = x
        y_l, y_g = self.conv2(self.conv1((x_l, x_g)))
        return x_l + y_l, x_g + y_g


class ConcatTupleLayer(nn.Module):
    def forward(self, x: tuple[Branch, Branch]) -> Tensor:
        x_l, x_g = x
        if not isinstance(x_g, Tensor):
            return x_l
        if not isinstance(x_l, Tensor):
            return x_g
        return torch.cat([x_l, x_g], dim=1)


@dataclass
class FFCResNetConfig:
    """Architecture of an FFC-ResNet generator; the defaults are big-lama's."""

    input_nc: int = 4
    output_nc: int = 3
    ngf: int = 64
    n_downsampling: int = 3
    n_blocks: int = 18
    max_features: int = 1024
    init_ratio_gout: float = 0.0
    downsample_ratio_gin: float = 0.0
    downsample_ratio_gout: float = 0.0
    resnet_ratio_gin: float = 0.75
    resnet_ratio_gout: float = 0.75
    add_out_act: str = "sigmoid"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_lama_generator_block(cls, block: dict[str, Any]) -> "FFCResNetConfig":
        """Build from the resolved ``generator:`` block of a LaMa config.yaml."""
        if block.get("kind") != "ffc_resnet":
            raise ValueError(f"unsupported LaMa generator kind {block.get('kind')!r}; only 'ffc_resnet' is implemented")
        init = block.get("init_conv_kwargs", {}) or {}
        down = block.get("downsample_conv_kwargs", {}) or {}
        res = block.get("resnet_conv_kwargs", {}) or {}
        for name, kwargs in (("init_conv_kwargs", init), ("downsample_conv_kwargs", down), ("resnet_conv_kwargs", res)):
            if kwargs.get("enable_lfu", False):
                raise ValueError(f"LaMa option {name}.enable_lfu=true is not implemented")
        unsupported = {"spatial_transform_layers", "out_ffc", "add_out_act"} & set(block)
        for key in unsupported - {"add_out_act"}:
            if block[key]:
                raise ValueError(f"LaMa generator option {key!r} is not implemented")
        out_act = block.get("add_out_act", True)
        return cls(
            input_nc=int(block.get("input_nc", 4)),
            output_nc=int(block.get("output_nc", 3)),
            ngf=int(block.get("ngf", 64)),
            n_downsampling=int(block.get("n_downsampling", 3)),
            n_blocks=int(block.get("n_blocks", 9)),
            max_features=int(block.get("max_features", 1024)),
            init_ratio_gout=float(init.get("ratio_gout", 0)),
            downsample_ratio_gin=float(down.get("ratio_gin", 0)),
            downsample_ratio_gout=float(down.get("ratio_gout", 0)),
            resnet_ratio_gin=float(res.get("ratio_gin", 0)),
            resnet_ratio_gout=float(res.get("ratio_gout", 0)),
            add_out_act="tanh" if out_act is True else (out_act or "none"),
        )


_OUT_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "none": None}


class FFCResNetGenerator(nn.Module):
    """LaMa's generator: 7x7 stem, strided downsampling, FFC residual blocks, transposed-conv upsampling.

    ``self.model`` is one ``nn.Sequential`` whose indices are the official ones
    (``model.1.ffc.convl2l.weight`` ... ``model.34.weight`` for big-lama).
    """

    def __init__(self, config: FFCResNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or FFCResNetConfig()
        if cfg.add_out_act not in _OUT_ACTIVATIONS:
            raise ValueError(f"add_out_act must be one of {sorted(_OUT_ACTIVATIONS)}, got {cfg.add_out_act!r}")
        self.config = cfg
        ngf, mf = cfg.ngf, cfg.max_features
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            FFC_BN_ACT(cfg.input_nc, ngf, 7, 0.0, cfg.init_ratio_gout),
        ]
        for i in range(cfg.n_downsampling):
            mult = 2**i
            # the last downsampling layer opens the global branch the residual blocks use
            gout = cfg.resnet_ratio_gin if i == cfg.n_downsampling - 1 else cfg.downsample_ratio_gout
            layers.append(FFC_BN_ACT(min(mf, ngf * mult), min(mf, ngf * mult * 2), 3, cfg.downsample_ratio_gin, gout,
                                     stride=2, padding=1))
        dim = min(mf, ngf * 2**cfg.n_downsampling)
        layers += [FFCResnetBlock(dim, cfg.resnet_ratio_gin, cfg.resnet_ratio_gout) for _ in range(cfg.n_blocks)]
        layers.append(ConcatTupleLayer())
        for i in range(cfg.n_downsampling):
            mult = 2 ** (cfg.n_downsampling - i)
            cin, cout = min(mf, ngf * mult), min(mf, ngf * mult // 2)
            layers += [
                nn.ConvTranspose2d(cin, cout, kernel_size=3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, cfg.output_nc, kernel_size=7)]
        out_act = _OUT_ACTIVATIONS[cfg.add_out_act]
        if out_act is not None:
            layers.append(out_act())
        self.model = nn.Sequential(*layers)

    @property
    def size_multiple(self) -> int:
        """Input sizes must be a multiple of this for the output to match the input size."""
        return 2**self.config.n_downsampling

    def forward(self, x: Tensor) -> Tensor:
        """Raw network: ``x`` is ``cat([image * (1 - mask), mask])``, the output is the full predicted image."""
        return self.model(x)
