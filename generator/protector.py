"""Single-pass protection: load a trained noise U-Net and protect images with it.

    from generator import Protector
    protector = Protector.from_checkpoint("generator-lama-tiny")
    protected = protector.protect(image, mask)  # tensor, PIL image, numpy array or path; same kind back
"""

from __future__ import annotations

import copy
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from generator import checkpoint, convert
from generator.convert import ImageLike
from generator.devices import check_device
from generator.messages import warn_user
from generator import precision
from generator.precision import warn_if_emulated
from generator.target import target_colour
from generator.unet import NoiseUNet, UNetConfig

if TYPE_CHECKING:
    from generator.onnx_backend import OnnxGenerator

Tensor = torch.Tensor
KIND = "generator"
DEFAULT = "generator-lama-tiny"
BACKENDS = ("torch", "onnx")


def save_generator(net: NoiseUNet, path: str | os.PathLike, **notes: str) -> Path:
    """Write a noise U-Net's weights and architecture as a PaintGuard safetensors checkpoint; ``notes`` are
    strings kept in its header (e.g. ``inpainter="lama-tiny"``, what it was trained against)."""
    if not isinstance(net, NoiseUNet):  # a Protector or a LightningModule failed with an AttributeError
        hint = " (pass its .net)" if isinstance(getattr(net, "net", None), NoiseUNet) else ""
        raise TypeError(f"save_generator writes a NoiseUNet, got {type(net).__name__}{hint}")
    return checkpoint.save(net.state_dict(), path, KIND, net.config.to_dict(), **notes)


def load_generator(name_or_path: str | os.PathLike = DEFAULT) -> NoiseUNet:
    """Build a noise U-Net from a shipped name or a checkpoint path, key-for-key."""
    path = checkpoint.resolve(name_or_path, KIND)
    state, meta = checkpoint.load(path, KIND)
    try:
        net = NoiseUNet(UNetConfig(**meta["config"]))
    except TypeError as err:
        raise checkpoint.CheckpointError(f"'{path}' holds an unknown generator architecture: {err}") from None
    checkpoint.load_state_strict(net, state, str(path))
    return net.eval().requires_grad_(False)


METHODS = ("generator", "iterative", "hybrid", "refine")
DEFAULT_STEPS = {"iterative": 20, "hybrid": 5, "refine": 2}
OPTIMISED = ("iterative", "hybrid", "refine")  # the methods that call the inpainter
# The inpainter's input is image * (1 - mask): with every pixel masked it does not depend on the image at all.
FULL_MASK = "the mask covers the whole image: an inpainter sees none of its pixels, so no noise can steer its fill"


def check_region(mask: Tensor, name: str, purpose: str) -> None:
    """Refuse, in one line that calls it ``name``, a mask that marks nothing (nothing to ``purpose``) or everything."""
    if not mask.any():
        raise ValueError(f"{name} is empty: nothing to {purpose}")
    if mask.all():
        raise ValueError(f"{name}: {FULL_MASK}; leave some of the image unmasked")


def _check_dtype(dtype: Any) -> None:
    # a name ("bfloat16", as --dtype takes) would otherwise fail deep inside nn.Module.to
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype such as torch.bfloat16, got {dtype!r} "
                        "(generator.resolve_dtype turns a name into one)")


ONNX_FLOAT32 = "needs the torch backend: the ONNX export runs in float32"


def _method_and_steps(method: str, steps: Any) -> tuple[str, int | None]:
    """``method`` checked and ``steps`` resolved (None: the method's default; the generator takes none), each refused
    in one sentence."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral)):
        raise TypeError(f"steps must be a whole number, got {steps!r}")
    check_steps(method, steps)
    return method, DEFAULT_STEPS.get(method) if steps is None else int(steps)


def check_steps(method: str, steps: int | None, name: str = "steps") -> None:
    """Refuse a number of ``steps`` (None: the method's default) that ``method`` does not take, in one sentence that
    calls it ``name`` (the command line's ``--steps``)."""
    if steps is not None and (method == "generator" or steps < 0):
        raise ValueError(f"{name} must be >= 0 and only applies to 'iterative', 'hybrid' and 'refine', got {steps} "
                         f"with {method!r}")
    if method == "iterative" and steps == 0:  # it would return the optimiser's random start, no protection
        raise ValueError(f"the 'iterative' method needs {name} >= 1")


def _inpainter(source: str | os.PathLike | nn.Module | None) -> nn.Module | None:
    """A module as given, or loaded from a name, file or LaMa directory."""
    if isinstance(source, (str, os.PathLike)):
        from trainer.inpainting.inpainter import load_inpainter  # lazy: generator stays importable without trainer

        return load_inpainter(source)
    if source is not None and not isinstance(source, nn.Module):  # it failed at the first optimiser step
        raise TypeError(f"inpainter must be a module, a shipped name, a file or a LaMa folder, got "
                        f"{type(source).__name__}")
    return source


class Protector:
    """Protects the masked region of images: one generator pass, the 20-step optimiser, or both.

    ``device`` and ``dtype`` apply to the generator, whose noise is added to the image in the image's own
    precision: ``dtype=torch.bfloat16`` runs it in about half the time on CPUs with bfloat16 instructions
    (AVX512-BF16, AMX) at the same share of the optimiser's gain (README, "bfloat16"), and warns when first used on
    others, which emulate it many times slower (``generator.resolve_dtype("auto")`` picks for you). The optimiser (methods
    "iterative", "hybrid" and "refine") runs on ``device`` and needs ``inpainter``, the frozen model it attacks
    (a module such as ``trainer.load_inpainter("lama-tiny")``, or a name, file or LaMa folder it loads); with a
    bfloat16 or float16 ``dtype`` the convolutions of its steps run in that type (``torch.autocast``), its noise
    and the bound in float32.
    ``net`` None gives a Protector for the "iterative" method only (``Protector.iterative``).
    """

    def __init__(self, net: NoiseUNet | OnnxGenerator | None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, inpainter: str | os.PathLike | nn.Module | None = None) -> None:
        if isinstance(net, (str, os.PathLike)):  # else "'str' object has no attribute 'to'"
            raise TypeError(f"Protector takes a loaded generator; for a name or a file use "
                            f"Protector.from_checkpoint({os.fspath(net)!r})")
        _check_dtype(dtype)
        device = check_device(device)  # torch's own errors for "gpu" or a CPU-only build's "cuda" say less
        self.net = None if net is None else net.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = device, dtype
        self.inpainter = _inpainter(inpainter)
        self._checked: set[tuple[torch.device, torch.dtype]] = set()  # where the emulation warning was considered

    @classmethod
    def from_checkpoint(cls, name_or_path: str | os.PathLike = DEFAULT, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32,
                        inpainter: str | os.PathLike | nn.Module | None = None, backend: str = "torch",
                        onnx_model: str | os.PathLike | None = None) -> "Protector":
        """Load a shipped generator by name (e.g. ``"generator-lama-tiny"``) or from a file.

        ``inpainter`` (a name such as ``"lama-tiny"``, a file, a LaMa directory or a module)
        enables the "iterative", "hybrid" and "refine" methods. ``backend="onnx"`` runs the generator
        through onnxruntime on the CPU (the ``onnx`` extra: ``pip install -e ".[onnx]"`` in the clone): from
        ``onnx_model``, an export checked against the checkpoint's fingerprint, from an ``.onnx`` checkpoint,
        or else exported in memory (``generator.onnx_backend.load_onnx_generator``).
        """
        _check_dtype(dtype)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if backend == "onnx":
            if dtype != torch.float32:
                raise ValueError(f"dtype {dtype} {ONNX_FLOAT32}")
            from generator.onnx_backend import load_onnx_generator  # lazy: onnxruntime is an optional extra

            net = load_onnx_generator(name_or_path, onnx_model)
        elif onnx_model is not None:
            raise ValueError("onnx_model only applies to backend='onnx'")
        else:
            net = load_generator(name_or_path)
        return cls(net, device, dtype, inpainter)

    @classmethod
    def iterative(cls, inpainter: str | os.PathLike | nn.Module = "lama-tiny",
                  device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> "Protector":
        """The paper's optimiser alone, no generator loaded: ``protect(image, mask)`` runs it."""
        return cls(None, device, dtype, inpainter=inpainter)

    @property
    def eps(self) -> float:
        """The L_inf bound: the generator's, or the paper's 0.025 for the optimiser alone."""
        return (self.net.config if self.net is not None else UNetConfig()).eps

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Protector":
        """Move the generator (and the inpainter) to another device or dtype, in place."""
        if dtype is not None:
            _check_dtype(dtype)
            if dtype != torch.float32 and self.net is not None and not isinstance(self.net, nn.Module):
                raise ValueError(f"dtype {dtype} {ONNX_FLOAT32}")
        self.device = check_device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        if self.net is not None:
            self.net.to(device=self.device, dtype=self.dtype)
        if self.inpainter is not None:
            self.inpainter.to(self.device)
        return self

    def noise(self, image: Tensor, mask: Tensor, target: Tensor | None = None) -> Tensor:
        """The generator's noise for image (B,3,H,W) in [0,1] and mask (B,1,H,W), on ``device`` in the image's
        precision, ``|noise| <= eps`` (in bfloat16, eps itself rounds to 0.02502); ``target`` is the fill colour,
        (3,) or (B,3) in [0,1], by default the paper's (``target_colour``). An ordinary tensor, not differentiable;
        zero for an image whose mask is empty, which ``protect`` returns unchanged."""
        convert.check_batch(image, mask)
        image, mask = image.detach(), mask.detach()
        if target is not None:
            target = convert.check_target(target, len(image))
        noise = self._noise(image, mask, target).clone()  # an inference tensor refuses in-place edits and autograd
        used = (mask != 0).flatten(1).any(1).to(noise.device)
        return noise * used[:, None, None, None].to(noise.dtype)  # an empty mask protects nothing: no noise

    def _method_and_steps(self, method: str | None, steps: Any) -> tuple[str, int | None]:
        """``method`` (default: the generator's pass, or the optimiser for a Protector without one) and ``steps``,
        checked and resolved as ``_method_and_steps`` does."""
        default = "generator" if self.net is not None else "iterative"
        return _method_and_steps(default if method is None else method, steps)  # "" is a mistake, not the default

    def _require_generator(self) -> None:
        if self.net is None:
            raise ValueError("this Protector has no generator (Protector.iterative): the 'generator', 'hybrid' "
                             "and 'refine' methods need one, Protector.from_checkpoint(...)")

    def _noise(self, image: Tensor, mask: Tensor, target: Tensor | None = None) -> Tensor:
        self._require_generator()
        self._warn_if_emulated()  # outside inference_mode's wrapper, so that the warning finds the caller's line
        with torch.inference_mode():
            image = image.to(self.device)
            # the target from the image as given: in bfloat16 the mean colour would lose its 8-bit levels
            target = target_colour(image) if target is None else target.to(self.device)
            noise = self.net(image.to(self.dtype), (mask.to(self.device) != 0).to(self.dtype), target.to(self.dtype))
            # back in the image's precision, clamped: in bfloat16 eps itself rounds up (0.025 -> 0.02502)
            return noise.to(image.dtype).clamp(-self.eps, self.eps)

    def protect(self, image: ImageLike, mask: ImageLike, method: str | None = None, steps: int | None = None) -> Any:
        """Protect the masked region of ``image``; returns the same kind of image it was given.

        image: a float tensor (B,3,H,W) or (3,H,W) in [0,1], a PIL image (upright per EXIF, as paths), a numpy array
        ((H,W,3) uint8 or float in [0,1], (H,W) grey) or a file path (read upright per EXIF).
        mask: the same kinds, of the same size; any non-zero pixel is protected.
        method: "generator" (one forward pass; the default, or "iterative" for ``Protector.iterative``),
        "iterative" (the paper's 20-step optimiser),
        "hybrid" (the optimiser started from the generator's noise, ``steps`` default 5) or
        "refine" (``steps`` optimiser steps on an encoder-gradient generator's own field, default 2;
        unlike "hybrid" it keeps the benign edit as well as the optimiser does,
        ``trainer/objective/field_steps.py``).

        Returns a tensor of the input's shape, dtype and device; a PIL image for PIL
        images *and for paths* (8-bit RGB; nothing is written); a numpy (H,W,3) array
        of the input's dtype. 8-bit results are rounded within the bound, so
        ``|protected - image| <= eps`` holds for every kind. An image whose mask is
        empty comes back unchanged, with a warning; a mask covering the whole image also
        warns: the inpainter sees none of the image, so no noise can steer it
        (``paintguard protect`` refuses such masks).
        """
        method, steps = self._method_and_steps(method, steps)
        x, kind = convert.to_tensor(image)
        m = convert.mask_to_tensor(mask, x)
        protected = self.protect_batch(x, m, method, steps)
        return convert.from_tensor(protected, kind, original=x, eps=self.eps)

    def protect_batch(self, image: Tensor, mask: Tensor, method: str | None = None, steps: int | None = None) -> Tensor:
        """The tensor core of ``protect``: image (B,3,H,W) in [0,1], mask (B,1,H,W), non-zero where protected ->
        the protected batch on ``device``, in float32 (float64 for float64 images), ``|protected - image| <= eps``.
        ``method`` and ``steps`` as for ``protect``; the result is not differentiable."""
        method, steps = self._method_and_steps(method, steps)
        if method != "iterative":
            self._require_generator()
        convert.check_batch(image, mask)
        image, mask = image.detach(), mask.detach()
        hole = mask.to(self.device) != 0
        if hole.flatten(1).all(1).any():
            # a warning, not an error: training and evaluation code pass synthetic masks; the CLI refuses
            warn_user(f"{FULL_MASK}; the noise is returned but cannot protect anything")
        # the image stays in its own precision (at least float32) whatever the generator's: a bfloat16 sum would
        # move pixels by up to 2e-3 on top of the noise
        work = torch.promote_types(image.dtype, torch.float32) if image.is_floating_point() else torch.float32
        image, mask = image.to(self.device, work), hole.to(work)
        used = hole.flatten(1).any(1)
        if not used.all():
            warn_user(f"{int((~used).sum())} image(s) with an empty mask returned unchanged")
            if not used.any():
                return image.clamp(0, 1)
        if method == "generator":
            noise = self._noise(image, mask)
        elif method == "refine":
            noise = self._refine(image, mask, steps)
        else:
            noise = self._optimise(image, mask, steps, self._noise(image, mask) if method == "hybrid" else None)
        if not torch.isfinite(noise).all():  # never a NaN image returned as if protected
            raise RuntimeError(f"the '{method}' method's noise is not finite (NaN or inf) in {self.dtype}; "
                               "float32, the default dtype, is the precision every method is checked in")
        # the sum rounds by at most half an ulp of a value in [0, 1]: a noise this far inside the bound keeps
        # |protected - image| <= eps exactly (it carried pixels to 0.025000006 in float32)
        inside = self.eps - torch.finfo(work).eps
        noise = noise.to(work).clamp(-inside, inside) * used.to(work)[:, None, None, None]
        # outside inference_mode: an inference tensor refuses in-place edits and autograd in the caller's code
        return (image + noise).clamp(0, 1)

    def _refine(self, image: Tensor, mask: Tensor, steps: int) -> Tensor:
        """The generator's noise after ``steps`` optimiser steps on its field (``trainer.objective.field_steps``)."""
        from trainer.objective.field_steps import NO_FIELD, field_steps, has_field  # lazy: trainer imports generator

        if not has_field(self.net):
            raise ValueError(f"{NO_FIELD}; use 'hybrid' with this one")
        self._require_inpainter()
        self._warn_if_emulated()
        # the field and its steps in float32; a half dtype reaches only the convolutions, through autocast
        net = self.net if self.dtype == torch.float32 else copy.deepcopy(self.net).float()
        with torch.inference_mode(False), torch.enable_grad(), self.autocast():
            return field_steps(net, self.inpainter.to(self.device), image.float().clone(), mask.float().clone(), steps)

    def _warn_if_emulated(self) -> None:
        # on first use, not when built: the CLI builds on the CPU and moves to --device, where it runs
        if (self.device, self.dtype) not in self._checked:
            self._checked.add((self.device, self.dtype))
            warn_if_emulated(self.dtype, self.device)

    def autocast(self) -> torch.autocast:
        """Where the optimiser's steps run: ``generator.precision.autocast`` in this Protector's device and dtype."""
        return precision.autocast(self.device, self.dtype)

    def _require_inpainter(self) -> None:
        if self.inpainter is None:
            raise ValueError("the 'iterative', 'hybrid' and 'refine' methods need an inpainter: "
                             "Protector.from_checkpoint(..., inpainter='lama-tiny') or "
                             "protector.inpainter = load_inpainter(...)")

    def _optimise(self, image: Tensor, mask: Tensor, steps: int, init_noise: Tensor | None) -> Tensor:
        """The noise of the 20-step optimiser (``trainer.objective.iterative``), from ``init_noise`` when given."""
        self._require_inpainter()
        self._warn_if_emulated()
        from trainer.objective.iterative import IterativeConfig, protect_iterative  # lazy: trainer imports generator

        config = IterativeConfig(steps=steps, eps=self.eps)
        generator = torch.Generator(self.device).manual_seed(0)  # the same input gives the same noise
        # the optimiser needs autograd even when called under inference_mode (e.g. Lightning's predict);
        # clones turn inference tensors into ordinary ones that backward may save
        with torch.inference_mode(False), torch.enable_grad(), self.autocast():
            init = None if init_noise is None else init_noise.float().clone()
            result = protect_iterative(self.inpainter.to(self.device), image.float().clone(), mask.float().clone(),
                                       config, init_noise=init, generator=generator)
        return result.noise
