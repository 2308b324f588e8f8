"""Expectation over Transformations (EOT): random, differentiable edits between the protected image and the inpainter.

A protected photo is rarely inpainted as saved: it is re-encoded as JPEG, resized,
cropped, filtered or colour-corrected first. :class:`RandomTransforms` draws such a
chain per image so that training (and the 20-step optimiser) minimises the expected
loss over it. Every step is differentiable with respect to the image (kornia ops), so
the gradient tells the noise which of its components survive.

The chain, in this fixed order (an editor crops and rescales, adjusts colours, and
the result is saved last):

1. shift: an integer translation of up to ``shift_max`` px (a small crop, edges
   replicated). The editor draws the mask on the image it has, so the mask moves
   with the content: :meth:`RandomTransforms.apply_mask` applies the same shift
   (new pixels are outside the mask). It also moves the noise off the 8x8 JPEG
   block grid and the U-Net's downsampling grid it was made on.
2. resize: down to a random scale (antialiased bilinear) and back up; the
   coordinates are kept, so the mask is unchanged.
3. jitter: brightness (additive) and contrast (around the mean grey level).
4. blur: Gaussian, random sigma.
5. noise: additive Gaussian, random sigma.
6. JPEG: random quality. ``jpeg_forward="kornia"`` uses kornia's differentiable
   codec both ways; ``"pillow"`` evaluates the real libjpeg round trip
   (``trainer.objective.transforms.jpeg``) and takes the gradient of kornia's codec
   (forward exact, backward informative). A straight-through identity gradient
   is not offered: it predicts what JPEG does to a perturbation badly. Measured
   on 4 held-out sample photos (8-bit, centre crops of 128 and 256 px) with a
   uniform +-0.025 noise d, quality 50/75/95: the cosine between what real JPEG
   keeps of d, J(x+d) - J(x), and kornia's prediction of it is 0.79-0.86, and
   0.11-0.37 for the identity's (d itself); kornia's output is 41-48 dB from
   libjpeg's, against 30-41 dB between libjpeg's and its input. Both are cheap
   next to the inpainter: for 4 images of 128 px, 26 ms for kornia's forward and
   backward, 2 ms for Pillow's forward (one CPU thread). Hence the default
   "kornia": one differentiable function, on any device.

Each step is applied to an image with its own probability, and its strength is
drawn uniformly from its range, independently per image. With every probability 0
(the default) the chain is the identity and draws no random numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from trainer.objective.transforms import jpeg as pillow_jpeg

Tensor = torch.Tensor

STEPS = ("shift", "resize", "jitter", "blur", "noise", "jpeg")
JPEG_FORWARDS = ("kornia", "pillow")


@dataclass
class EOTConfig:
    """Probabilities (per image) and strength ranges of each step; all probabilities 0 = off."""

    jpeg_p: float = 0.0
    jpeg_quality: tuple[float, float] = (50.0, 95.0)
    jpeg_forward: str = "kornia"  # "kornia": differentiable codec; "pillow": real JPEG forward, kornia's gradient
    resize_p: float = 0.0
    resize_scale: tuple[float, float] = (0.5, 1.0)  # side length factor of the intermediate image
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)  # px
    noise_p: float = 0.0
    noise_sigma: tuple[float, float] = (0.0, 0.02)  # on [0, 1] pixels
    shift_p: float = 0.0
    shift_max: int = 4  # px, each axis, integer shifts in [-shift_max, shift_max]
    jitter_p: float = 0.0
    brightness: float = 0.05  # additive delta in [-brightness, brightness]
    contrast: float = 0.1  # factor in [1 - contrast, 1 + contrast], around the mean grey level

    def __post_init__(self) -> None:
        for name in STEPS:
            p = getattr(self, f"{name}_p")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"eot {name}_p must be in [0, 1], got {p}")
        for name, low, high in [("jpeg_quality", 1, 100), ("resize_scale", 1e-3, 1), ("blur_sigma", 1e-3, math.inf),
                                ("noise_sigma", 0, math.inf)]:
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not low <= value[0] <= value[1] <= high:
                raise ValueError(f"eot {name} must be a range [lo, hi] with {low} <= lo <= hi <= {high}, got {value}")
            setattr(self, name, value)
        if self.jpeg_forward not in JPEG_FORWARDS:
            raise ValueError(f"eot jpeg_forward must be one of {JPEG_FORWARDS}, got {self.jpeg_forward!r}")
        if int(self.shift_max) != self.shift_max or self.shift_max < 0:
            raise ValueError(f"eot shift_max must be a non-negative integer, got {self.shift_max}")
        self.shift_max = int(self.shift_max)
        if not (0 <= self.brightness <= 1 and 0 <= self.contrast < 1):
            raise ValueError(f"eot brightness must be in [0, 1] and contrast in [0, 1), "
                             f"got {self.brightness}, {self.contrast}")

    @classmethod
    def coerce(cls, value: EOTConfig | dict[str, Any] | None) -> EOTConfig | None:
        """An EOTConfig from itself, a dict of its fields (as YAML gives) or None."""
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"eot must be a mapping of EOTConfig fields, got {type(value).__name__}")
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown eot option(s) {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        return cls(**value)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f"{name}_p") > 0 for name in STEPS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EOTParams:
    """One draw of the chain for a batch: which steps touch which image, and with what strength."""

    applied: dict[str, Tensor] = field(default_factory=dict)  # step -> (B,) bool
    jpeg_quality: Tensor | None = None  # (B,)
    resize_scale: Tensor | None = None  # (B,)
    brightness: Tensor | None = None  # (B,)
    contrast: Tensor | None = None  # (B,)
    blur_sigma: Tensor | None = None  # (B,)
    noise: Tensor | None = None  # (B,3,H,W): the noise itself, so that two images can get the same one
    shift: Tensor | None = None  # (B,2) integer (x, y)
    batch: int = 0

    @property
    def active(self) -> Tensor:
        """(B,) bool: whether any step changes image i."""
        out = torch.zeros(self.batch, dtype=torch.bool)
        for flags in self.applied.values():
            out = out | flags.cpu()
        return out


def _on(image: Tensor, flags: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``fn(image[idx], idx)`` written back into the images whose flag is set; the others pass untouched."""
    idx = flags.nonzero()[:, 0].to(image.device)
    if idx.numel() == 0:
        return image
    if idx.numel() == image.shape[0]:
        return fn(image, idx)
    return image.index_copy(0, idx, fn(image[idx], idx))


def kornia_jpeg(image: Tensor, quality: Tensor) -> Tensor:
    """kornia's differentiable JPEG round trip with a per-image quality."""
    return kornia.enhance.jpeg_codec_differentiable(image, quality.to(image)).clamp(0, 1)


def pillow_forward_jpeg(image: Tensor, quality: Tensor) -> Tensor:
    """The real (libjpeg, via Pillow) round trip forward, kornia's codec's gradient backward."""
    surrogate = kornia_jpeg(image, quality)
    real = torch.cat([pillow_jpeg(image[i:i + 1], int(round(float(q)))) for i, q in enumerate(quality.tolist())])
    return surrogate + (real - surrogate).detach()


class RandomTransforms(nn.Module):
    """The random EOT chain. ``forward(image, mask, generator)`` draws and applies it to an image and its mask.

    For the same edit on several images (a protected image and its clean original,
    as the hide term needs), draw once with :meth:`sample` and use :meth:`apply` and
    :meth:`apply_mask`. Random numbers come from ``generator`` when given (any device),
    from torch's global generator otherwise. No parameters, no buffers.
    """

    def __init__(self, config: EOTConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = EOTConfig.coerce(config) or EOTConfig()

    def extra_repr(self) -> str:
        c = self.config
        return ", ".join(f"{name}_p={getattr(c, name + '_p')}" for name in STEPS if getattr(c, name + "_p") > 0) \
            or "identity"

    # --- drawing -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, image: Tensor, generator: torch.Generator | None = None) -> EOTParams:
        """Draw the chain for a batch shaped like ``image`` (B,3,H,W)."""
        c = self.config
        b = image.shape[0]
        device = generator.device if generator is not None else image.device

        def uniform(low: float, high: float, n: int = b) -> Tensor:
            return (low + (high - low) * torch.rand(n, generator=generator, device=device)).to(image.device)

        def flags(p: float) -> Tensor:
            return (torch.rand(b, generator=generator, device=device) < p).cpu()

        params = EOTParams(batch=b)
        # a disabled step draws nothing, so the identity chain leaves the random stream alone
        if c.shift_p > 0:
            params.applied["shift"] = flags(c.shift_p)
            params.shift = torch.randint(-c.shift_max, c.shift_max + 1, (b, 2), generator=generator,
                                         device=device).to(image.device)
        if c.resize_p > 0:
            params.applied["resize"] = flags(c.resize_p)
            params.resize_scale = uniform(*c.resize_scale)
        if c.jitter_p > 0:
            params.applied["jitter"] = flags(c.jitter_p)
            params.brightness = uniform(-c.brightness, c.brightness)
            params.contrast = uniform(1 - c.contrast, 1 + c.contrast)
        if c.blur_p > 0:
            params.applied["blur"] = flags(c.blur_p)
            params.blur_sigma = uniform(*c.blur_sigma)
        if c.noise_p > 0:
            params.applied["noise"] = flags(c.noise_p)
            sigma = uniform(*c.noise_sigma).to(image.dtype)
            noise = torch.randn(image.shape, generator=generator, device=device, dtype=image.dtype)
            params.noise = noise.to(image.device) * sigma.view(-1, 1, 1, 1)
        if c.jpeg_p > 0:
            params.applied["jpeg"] = flags(c.jpeg_p)
            params.jpeg_quality = uniform(*c.jpeg_quality)
        return params

    # --- applying ------------------------------------------------------------------------------
    def apply(self, image: Tensor, params: EOTParams) -> Tensor:
        """The drawn chain on images (B,3,H,W) in [0,1]; differentiable, shape and range kept."""
        if params.batch != image.shape[0]:
            raise ValueError(f"the transforms were drawn for {params.batch} images, got {image.shape[0]}")
        on = params.applied
        if "shift" in on:
            image = _on(image, on["shift"], lambda x, i: kornia.geometry.transform.translate(
                x, params.shift[i].to(x), mode="bilinear", padding_mode="border", align_corners=True))
        if "resize" in on:
            image = _on(image, on["resize"], lambda x, i: self._resize(x, params.resize_scale[i]))
        if "jitter" in on:
            image = _on(image, on["jitter"], lambda x, i: kornia.enhance.adjust_contrast_with_mean_subtraction(
                kornia.enhance.adjust_brightness(x, params.brightness[i].to(x)), params.contrast[i].to(x)))
        if "blur" in on:
            image = _on(image, on["blur"], lambda x, i: self._blur(x, params.blur_sigma[i]))
        if "noise" in on:
            image = _on(image, on["noise"], lambda x, i: (x + params.noise[i]).clamp(0, 1))
        if "jpeg" in on:
            codec = kornia_jpeg if self.config.jpeg_forward == "kornia" else pillow_forward_jpeg
            image = _on(image, on["jpeg"], lambda x, i: codec(x, params.jpeg_quality[i]))
        return image

    def apply_mask(self, mask: Tensor, params: EOTParams) -> Tensor:
        """The drawn chain's geometry on masks (B,1,H,W): the shift moves them, nothing else does."""
        if "shift" not in params.applied:
            return mask
        shifted = _on(mask, params.applied["shift"], lambda x, i: kornia.geometry.transform.translate(
            x, params.shift[i].to(x), mode="nearest", padding_mode="zeros", align_corners=True))
        return (shifted > 0.5).to(mask.dtype)

    def forward(self, image: Tensor, mask: Tensor, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor]:
        params = self.sample(image, generator)
        return self.apply(image, params), self.apply_mask(mask, params)

    @staticmethod
    def _resize(images: Tensor, scales: Tensor) -> Tensor:
        h, w = images.shape[-2:]
        out = []
        for x, s in zip(images.split(1), scales.tolist()):  # one size per image
            small = F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                                  antialias=True, align_corners=False)
            out.append(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False))
        return torch.cat(out).clamp(0, 1)

    @staticmethod
    def _blur(images: Tensor, sigma: Tensor) -> Tensor:
        size = 2 * math.ceil(3 * float(sigma.max())) + 1  # +-3 sigma of the widest, as trainer.objective.transforms
        sigmas = sigma.to(images).view(-1, 1).expand(-1, 2)
        return kornia.filters.gaussian_blur2d(images, (size, size), sigmas).clamp(0, 1)


@dataclass
class _Always:
    batch: int

    @property
    def active(self) -> Tensor:
        return torch.ones(self.batch, dtype=torch.bool)


class FixedTransform:
    """A deterministic, pixel-wise image transformation (e.g. ``trainer.objective.transforms.jpeg`` at quality 75) in the
    interface :func:`trainer.objective.losses.protection_losses` takes: masks are kept, every image counts as changed."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn

    def sample(self, image: Tensor, generator: torch.Generator | None = None) -> _Always:
        return _Always(image.shape[0])

    def apply(self, image: Tensor, params: _Always) -> Tensor:
        return self.fn(image)

    def apply_mask(self, mask: Tensor, params: _Always) -> Tensor:
        return mask


__all__ = ["EOTConfig", "EOTParams", "RandomTransforms", "FixedTransform", "kornia_jpeg", "pillow_forward_jpeg",
           "STEPS"]
