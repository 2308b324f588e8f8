"""The 20-step optimiser as a teacher, paid for once.

``build_teacher_cache`` runs the optimiser over a fixed, seeded set of (crop,
mask) pairs and stores the crops (8-bit), masks and teacher noises in one
safetensors file. ``WithTeacher`` mixes those cached pairs into the fresh random
training batches, so generator training can add a distillation term at little
cost. Built by ``paintguard teacher-cache`` (``trainer/commands/teacher_cache.py``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from generator.save import atomic_write
from trainer.data.images import ImageMaskDataModule, RandomCropDataset, images_or_samples
from trainer.data.masks import MaskGenerator
from trainer.inpainting.inpainter import Inpainter, load_inpainter
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.training.gradient_cache import GradientCache

Tensor = torch.Tensor


def build_teacher_cache(inpainter: str, out: str | Path, count: int = 128, size: int = 128, seed: int = 0,
                        train_dir: str | None = None, batch_size: int = 8, steps: int = 20,
                        device: str = "cpu") -> Path:
    """Run the optimiser on ``count`` seeded training crops and store crops, masks and noises."""
    paths = images_or_samples(train_dir, "train")
    dataset = RandomCropDataset(paths, size=size, samples_per_epoch=count, mask_generator=MaskGenerator(size),
                                seed=seed)
    model = load_inpainter(inpainter, device=device)
    config = IterativeConfig(steps=steps)
    images, masks, noises = [], [], []
    gen = torch.Generator(device=device).manual_seed(seed)
    start = time.perf_counter()
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        # the teacher works on 8-bit crops, as real images are, so the cache stores them exactly
        image = (torch.round(batch["image"] * 255) / 255).to(device)
        result = protect_iterative(model, image, batch["mask"].to(device), config, generator=gen)
        images.append((image * 255).round().to(torch.uint8).cpu())
        masks.append(batch["mask"].to(torch.uint8))
        noises.append(result.noise.half().cpu())
        print(f"teacher cache: {sum(len(i) for i in images)}/{count} pairs, {time.perf_counter() - start:.0f} s",
              flush=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"inpainter": str(inpainter), "inpainter_fingerprint": model.fingerprint(), "size": str(size),
            "steps": str(steps), "seed": str(seed), "count": str(count),
            "seconds": f"{time.perf_counter() - start:.1f}"}
    tensors = {"image": torch.cat(images), "mask": torch.cat(masks), "noise": torch.cat(noises)}
    return atomic_write(out, lambda tmp: save_file(tensors, str(tmp), metadata=meta))  # minutes of work: all or none


def is_teacher_cache(path: Path) -> bool:
    """Whether ``path`` is a safetensors file that ``build_teacher_cache`` wrote (its noise and its inpainter's
    fingerprint)."""
    try:
        with safe_open(str(path), "pt") as f:
            return "noise" in f.keys() and "inpainter_fingerprint" in (f.metadata() or {})
    except Exception:  # safetensors raises its own error types for a file of another kind
        return False


class TeacherCache(Dataset):
    """Cached (image, mask, teacher noise) triples."""

    def __init__(self, path: str | Path) -> None:
        self.check_exists(path)
        self.path = Path(path)
        data = load_file(str(path))
        self.image, self.mask, self.noise = data["image"], data["mask"], data["noise"]
        with safe_open(str(path), "pt") as f:
            self.metadata: dict[str, str] = f.metadata() or {}

    @staticmethod
    def check_exists(path: str | Path, size: int = 128) -> None:
        """Refuse a cache file that is not there, with the command that builds one of ``size`` px crops."""
        if not Path(path).is_file():
            raise ValueError(f"teacher cache '{path}' does not exist; build it first: "
                             f"paintguard teacher-cache --out {path} --count 64 --size {size}")

    def check_inpainter(self, inpainter: Inpainter) -> None:
        """Refuse a cache whose noises were optimised against other weights (e.g. an older lama-tiny)."""
        built, current = self.metadata.get("inpainter_fingerprint"), inpainter.fingerprint()
        if built != current:
            raise ValueError(f"teacher cache '{self.path}' was built against another inpainter "
                             f"(weights {built or 'unrecorded'}, training uses {current}); rebuild it: "
                             f"paintguard teacher-cache --out {self.path} --count {len(self)} "
                             f"--size {self.image.shape[-1]}")

    def __len__(self) -> int:
        return len(self.image)

    @property
    def size(self) -> int:
        return int(self.image.shape[-1])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        image = self.image[i].float() / 255
        return {"image": image, "mask": self.mask[i].float(), "teacher_noise": self.noise[i].float(),
                "has_teacher": torch.tensor(1.0), "grad": torch.zeros_like(image), "has_grad": torch.tensor(0.0)}


class WithTeacher(Dataset):
    """Fresh random samples, a seeded ``fraction`` of which are replaced by cached entries.

    The cache is a ``TeacherCache`` (teacher noises) or a ``GradientCache`` (input
    gradients, and teacher noises if built with them). Keys are indices or the ``(epoch,
    index)`` pairs of ``EpochSampler``. Fresh samples carry zeros for every key of a cache
    entry (teacher noise, gradient, field) with ``has_teacher = has_grad = has_field = 0``,
    so that every batch has the same keys; the supervised terms ignore them.
    """

    def __init__(self, fresh: Dataset, cache: Dataset, fraction: float = 0.5, seed: int = 0) -> None:
        if not 0 <= fraction <= 1:
            raise ValueError(f"teacher fraction must be in [0, 1], got {fraction}")
        self.fresh, self.cache, self.fraction, self.seed = fresh, cache, fraction, seed
        self._blank: dict[str, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.fresh)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng((self.seed, epoch, index))
        if rng.random() < self.fraction:
            return self.cache[int(rng.integers(len(self.cache)))]
        item = dict(self.fresh[key])
        if self._blank is None:  # every key a cache entry carries, zero (has_* = 0 included)
            self._blank = {k: torch.zeros_like(v) for k, v in self.cache[0].items() if k not in item}
        item.update(self._blank)
        return item


class ProtectionDataModule(ImageMaskDataModule):
    """``ImageMaskDataModule`` whose training set can mix in cached entries: teacher pairs or input gradients.

    The other arguments are ``ImageMaskDataModule``'s (LightningCLI reads them through ``**kwargs``).

    Args:
        teacher_cache: a file of paintguard teacher-cache: the optimiser's noises on cached crops, to distil
        teacher_fraction: the share of training samples taken from the cache (1: the cache only)
        gradient_cache: a folder of paintguard gradient-cache: the inpainter's input gradients, for the
            supervised stage
    """

    def __init__(self, teacher_cache: str | None = None, teacher_fraction: float = 0.5,
                 gradient_cache: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if teacher_cache and gradient_cache:
            raise ValueError("give data.teacher_cache or data.gradient_cache, not both")
        self.teacher_cache, self.gradient_cache, self.teacher_fraction = teacher_cache, gradient_cache, teacher_fraction
        self.cache: TeacherCache | GradientCache | None = None  # set by setup; the model checks its inpainter

    @classmethod
    def check_run(cls, subcommand: str, options: Mapping[str, Any]) -> None:
        """The image folders, and for a fit the cache it names: both before the run folder and W&B run open."""
        super().check_run(subcommand, options)
        size = options.get("size") or 128
        if subcommand == "fit" and options.get("teacher_cache"):
            TeacherCache.check_exists(options["teacher_cache"], size)
        if subcommand == "fit" and options.get("gradient_cache"):
            GradientCache.check_exists(options["gradient_cache"], size)

    def setup(self, stage: str | None = None) -> None:
        fresh = self.train_set is None
        super().setup(stage)
        if fresh and self.train_set is not None and (self.teacher_cache or self.gradient_cache):
            name = self.teacher_cache or self.gradient_cache
            cache = TeacherCache(name) if self.teacher_cache else GradientCache(name)
            if cache.size != self.size:
                raise ValueError(f"cache '{name}' holds {cache.size} px crops but training uses {self.size} px")
            self.train_set = WithTeacher(self.train_set, cache, self.teacher_fraction, self.seed)
            self.cache = cache
