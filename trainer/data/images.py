"""Image folders, random training crops with LaMa masks, fixed validation crops.

Training randomness is derived from ``(seed, epoch, index)`` rather than from
global or per-worker RNG state, so a sample is the same whatever the number of
DataLoader workers and across runs. The epoch reaches the workers through the
sampler: ``EpochSampler`` yields ``(epoch, index)`` keys, and Lightning calls its
``set_epoch`` at the start of every epoch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import skimage
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from generator.io import IMAGE_SUFFIXES, files_under, image_size, is_mask_name, read_image
from generator.signals import leave_signals_to_the_main_process
from trainer.data.masks import MaskGenerator, seeded_masks

__all__ = [
    "IMAGE_SUFFIXES",
    "list_images",
    "sample_images",
    "EpochSampler",
    "RandomCropDataset",
    "FixedCropDataset",
    "ImageMaskDataModule",
    "images_or_samples",
]

# Photographs bundled with scikit-image (no download needed). Left out:
# synthetic images (chessboards, color, logo, phantom, horse silhouette),
# text/page scans, the artificially motion-blurred clock, the mostly empty
# cell micrograph and the 102 px microaneurysms crop. The motorcycle stereo
# pair stays together in train so val never sees a near-duplicate.
SAMPLE_VAL = ("astronaut.png", "camera.png", "coffee.png", "gravel.png", "rocket.jpg")
SAMPLE_TRAIN = (
    "brick.png",
    "chelsea.png",
    "coins.png",
    "grass.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
)


def list_images(root: str | os.PathLike, mask_suffix: str = "_mask") -> list[Path]:
    """All images under ``root`` (recursive, sorted, without hidden files: ``generator.io.files_under``), skipping
    files named as masks (``generator.io.is_mask_name``)."""
    return [p for p in files_under(root)
            if p.suffix.lower() in IMAGE_SUFFIXES and not is_mask_name(p, mask_suffix) and p.is_file()]


def sample_images(split: str = "train") -> list[Path]:
    """The embedded sample photos from ``skimage.data``: split "train", "val" or "all"."""
    names = {"train": SAMPLE_TRAIN, "val": SAMPLE_VAL, "all": SAMPLE_TRAIN + SAMPLE_VAL}
    if split not in names:
        raise ValueError(f"unknown split {split!r}, expected one of {sorted(names)}")
    folder = Path(skimage.__file__).parent / "data"
    # Only files shipped in the wheel; scikit-image fetches others on demand, which we never do.
    return sorted(p for p in (folder / n for n in names[split]) if p.is_file())


def resize_short_side(image: torch.Tensor, short: int) -> torch.Tensor:
    """Resize a ``(C, H, W)`` image so its short side is ``short`` px (antialiased bilinear)."""
    h, w = image.shape[-2:]
    ratio = short / min(h, w)
    new = (max(short, round(h * ratio)), max(short, round(w * ratio)))
    if new == (h, w):
        return image
    out = F.interpolate(image[None], size=new, mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp_(0.0, 1.0)


# Leading tags keep the random streams for the different uses apart; they sit
# in front because numpy's SeedSequence treats trailing zeros as absent.
_AUGMENT, _IMAGE_ORDER, _SAMPLE_ORDER = 0, 1, 2


def _rng(tag: int, seed: int, epoch: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng((tag, seed, epoch, index))


@functools.lru_cache(maxsize=4)
def _epoch_order(tag: int, seed: int, epoch: int, n: int) -> np.ndarray:
    return _rng(tag, seed, epoch).permutation(n)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` keys, shuffled per epoch, for ``RandomCropDataset``.

    Like ``DistributedSampler``, call ``set_epoch`` before each epoch (Lightning
    does); the sampler lives in the main process, so workers see the epoch too.
    """

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0) -> None:
        self.length, self.shuffle, self.seed, self.epoch = length, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch  # fixed now: a later set_epoch must not change this pass
        order = range(self.length)
        if self.shuffle:
            order = _epoch_order(_SAMPLE_ORDER, self.seed, epoch, self.length)
        return ((epoch, int(i)) for i in order)


class RandomCropDataset(Dataset):
    """Random square crops of images with random LaMa masks, for training.

    Each sample resizes its image so the short side is ``size * U(scale)``,
    takes a random ``size`` x ``size`` crop and, with ``flip``, a random
    horizontal flip. An epoch has ``samples_per_epoch`` samples (default: one
    per image); sample ``i`` uses image ``order[i % n]`` of a per-epoch
    permutation, so small folders repeat evenly and large ones are subsampled
    differently every epoch. Keys are ints (epoch 0) or ``(epoch, index)``
    tuples from ``EpochSampler``. ``mask_generator`` defaults to big-lama's.
    Decoded images are cached per process (``cache=False`` for large folders).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        size: int = 256,
        scale: tuple[float, float] = (1.0, 1.5),
        flip: bool = True,
        samples_per_epoch: int | None = None,
        mask_generator: MaskGenerator | None = None,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        if not paths:
            raise ValueError("RandomCropDataset needs at least one image")
        if scale[0] < 1.0 or scale[1] < scale[0]:
            raise ValueError(f"scale must satisfy 1 <= low <= high, got {scale}")
        self.paths = [Path(p) for p in paths]
        self.size, self.scale, self.flip, self.seed = size, tuple(scale), flip, seed
        self.samples_per_epoch = samples_per_epoch
        self.mask_generator = mask_generator or MaskGenerator(size)
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return self.samples_per_epoch or len(self.paths)

    def _image(self, i: int) -> torch.Tensor:
        if self.cache is None:
            return read_image(self.paths[i])
        if i not in self.cache:
            self.cache[i] = read_image(self.paths[i])
        return self.cache[i]

    def source(self, key: int | tuple[int, int]) -> Path:
        """The photo that sample ``key`` is cropped from."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        return self.paths[int(_epoch_order(_IMAGE_ORDER, self.seed, epoch, len(self.paths))[index % len(self.paths)])]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        rng = _rng(_AUGMENT, self.seed, epoch, index)
        order = _epoch_order(_IMAGE_ORDER, self.seed, epoch, len(self.paths))
        image = self._image(int(order[index % len(self.paths)]))

        s = self.size
        image = resize_short_side(image, round(s * rng.uniform(*self.scale)))
        h, w = image.shape[-2:]
        top, left = rng.integers(h - s + 1), rng.integers(w - s + 1)
        image = image[:, top : top + s, left : left + s]
        if self.flip and rng.random() < 0.5:
            image = image.flip(-1)
        mask = torch.from_numpy(self.mask_generator(rng))
        # clone: the crop may be a view of the cached image
        return {"image": image.clone(memory_format=torch.contiguous_format), "mask": mask}


class FixedCropDataset(Dataset):
    """Deterministic validation samples: centre crops with fixed seeded masks.

    Each image is resized to short side ``size`` and centre-cropped; it appears
    ``masks_per_image`` times, sample ``k`` pairing image ``k // masks_per_image``
    with mask ``k`` of ``seeded_masks(len(self), size, seed)``.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        size: int = 256,
        masks_per_image: int = 1,
        seed: int = 0,
    ) -> None:
        if not paths:
            raise ValueError("FixedCropDataset needs at least one image")
        self.paths = [Path(p) for p in paths]
        self.size, self.masks_per_image = size, masks_per_image
        self.masks = seeded_masks(len(self.paths) * masks_per_image, size, seed)
        self.crops: dict[int, torch.Tensor] = {}  # crops are small: cache them all

    def __len__(self) -> int:
        return len(self.masks)

    def _crop(self, i: int) -> torch.Tensor:
        if i not in self.crops:
            image = resize_short_side(read_image(self.paths[i]), self.size)
            h, w = image.shape[-2:]
            top, left = (h - self.size) // 2, (w - self.size) // 2
            self.crops[i] = image[:, top : top + self.size, left : left + self.size].contiguous()
        return self.crops[i]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image = self._crop(index // self.masks_per_image)
        # clones keep callers from editing the cached crops and masks in place
        return {"image": image.clone(), "mask": self.masks[index].clone(), "index": index}

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every sample at once: images (N,3,S,S) and masks (N,1,S,S)."""
        items = [self[i] for i in range(len(self))]
        return torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items])


def images_or_samples(folder: str | None, split: str) -> list[Path]:
    """The images of ``folder`` (or of a named photo split, ``split:val``), or the embedded sample ``split``."""
    if folder is None:
        return sample_images(split)
    from trainer.data.splits import resolve_images  # splits builds on this module

    named = resolve_images(folder)
    if named is not None:
        return named
    if not Path(folder).is_dir():
        raise ValueError(f"image folder '{folder}' " + ("is a file, not a folder" if Path(folder).exists()
                                                        else "does not exist"))
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"no images found in '{folder}'")
    return paths


MIN_CROP = 16  # as protect's smallest image: below it the 17x17 ring and the networks' downsampling do not fit


def check_images(paths: list[Path]) -> None:
    """Refuse a damaged image, or one under MIN_CROP px on a side, in a folder of one's own: training draws its
    crops at random, so such a file would otherwise stop a run whenever it first came up (Pillow decodes 58 photos,
    17 MB, in a third of a second)."""
    for path in paths:
        width, height = image_size(path)
        if min(width, height) < MIN_CROP:
            raise ValueError(f"image '{path}' is {width}x{height}: training images must be at least {MIN_CROP} px "
                             "on a side")


def check_data_options(**options: int | None) -> None:
    """Refuse bad sizes when the module is built: setup comes only after a fit has opened its run folder and W&B run
    (and Lightning's own words for a zero batch or a tiny crop do not name the option)."""
    for name, value in options.items():
        least = MIN_CROP if name in ("size", "val_size") else 1
        if value is not None and value < least:
            raise ValueError(f"data.{name} must be at least {least}, got {value}")


class ImageMaskDataModule(L.LightningDataModule):
    """Training crops with random LaMa masks and fixed validation crops.

    ``train_dir`` / ``val_dir`` default to the embedded ``skimage.data`` sample
    splits, so training runs with no dataset on disk. ``train_seed`` seeds the
    training crops alone: a run that goes on from another run's weights with the
    same ``seed`` would draw the very crops that run trained on, and changing
    ``seed`` would change the validation set too.

    Args:
        train_dir: a folder of photos (searched recursively; JPEG, PNG, WebP, TIFF), or split:NAME[:N] for a
            split of make photos' set (trainer/data/splits.py); null: the embedded scikit-image photos
        val_dir: the validation photos, as train_dir; null: the embedded ones
        size: the side of the square training crops, in pixels (smaller photos are scaled up)
        batch_size: training crops per step
        val_batch_size: validation crops per batch
        num_workers: DataLoader worker processes
        samples_per_epoch: training crops per epoch (each epoch ends with a validation)
        masks_per_val_image: fixed validation masks drawn per validation photo
        seed: seeds the validation crops and masks, and the training crops unless train_seed is set
        val_size: the side of the validation crops (null: size)
        train_seed: seeds the training crops alone (null: seed)
    """

    def __init__(
        self,
        train_dir: str | None = None,
        val_dir: str | None = None,
        size: int = 256,
        batch_size: int = 8,
        val_batch_size: int = 4,
        num_workers: int = 0,
        samples_per_epoch: int = 512,
        masks_per_val_image: int = 2,
        seed: int = 0,
        val_size: int | None = None,
        train_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_data_options(size=size, val_size=val_size, batch_size=batch_size, val_batch_size=val_batch_size,
                           masks_per_val_image=masks_per_val_image, samples_per_epoch=samples_per_epoch)
        self.train_dir, self.val_dir = train_dir, val_dir
        self.size, self.seed = size, seed
        self.train_seed = seed if train_seed is None else train_seed
        # fully convolutional models can train on small crops and be judged on larger ones
        self.val_size = val_size or size
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers = num_workers
        self.samples_per_epoch, self.masks_per_val_image = samples_per_epoch, masks_per_val_image
        self.train_set: RandomCropDataset | None = None
        self.val_set: FixedCropDataset | None = None

    @classmethod
    def check_run(cls, subcommand: str, options: Mapping[str, Any]) -> None:
        """Refuse a missing image folder, or one without images, before a fit or validate opens its run folder and
        W&B run (``setup`` finds out only then). Photo splits (``split:NAME``) are left to ``setup``."""
        from trainer.data.splits import PREFIX  # splits builds on this module

        folders = [options.get("train_dir")] if subcommand == "fit" else []  # validate reads the val folder only
        for folder in [*folders, options.get("val_dir")]:
            if folder is not None and not folder.startswith(PREFIX):
                check_images(images_or_samples(folder, "train"))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = RandomCropDataset(
                images_or_samples(self.train_dir, "train"),
                size=self.size,
                samples_per_epoch=self.samples_per_epoch,
                seed=self.train_seed,
            )
        if self.val_set is None and stage in (None, "fit", "validate"):
            self.val_set = FixedCropDataset(
                images_or_samples(self.val_dir, "val"),
                size=self.val_size,
                masks_per_image=self.masks_per_val_image,
                seed=self.seed,
            )

    def _loader(self, dataset: Dataset, batch_size: int, **kwargs) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=leave_signals_to_the_main_process,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup('fit') first"
        sampler = EpochSampler(len(self.train_set), shuffle=True, seed=self.train_seed)
        return self._loader(self.train_set, self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup('validate') first"
        return self._loader(self.val_set, self.val_batch_size, shuffle=False)
