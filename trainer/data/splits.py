"""Named photo splits for choosing recipes honestly: train, validation (choices) and test (final figures).

The photos are the 58 that ``make photos`` gathers into ``data/photos`` (Debian's OpenCV
sample data, MATE and Lomiri wallpapers, and scikit-image's training split), plus
scikit-image's five held-out photos, which ship with the package:

- ``val``: six Debian photos; recipes and stopping steps are chosen on them;
- ``test``: six other Debian photos and scikit-image's held-out five; no choice is made on them;
- ``train``: every other photo of the folder (46).

Near-duplicates stay on one side (the Leuven and motorcycle pairs are in train). The
photos of Debian's ``plasma-workspace-wallpapers`` are in no split: they are reserved for
independent checks of the project. A config names a split as ``split:NAME`` wherever it
takes an image folder (``data.train_dir``, ``data.val_dir``), and ``split:NAME:N`` for N of its photos, drawn in
a fixed order, so that a smaller subset lies inside every larger one: what a curve of the held-out share
against the number of training photos needs.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from trainer.data.images import list_images, sample_images

PHOTOS = Path(os.environ.get("PAINTGUARD_PHOTOS", "data/photos"))
PREFIX = "split:"
VAL = ("apple", "building", "orange", "Garden", "Storm", "sunset_by_Aitzol_Berasategi")
TEST = ("butterfly", "fruits", "messi5", "GreenMeadow", "Wood", "Bridge_by_Sander_Klootwijk")
SPLITS = ("train", "val", "test")


def split_paths(name: str, photos: str | os.PathLike | None = None) -> list[Path]:
    """The photos of split ``name`` ("train", "val" or "test") under ``photos`` (default ``data/photos``)."""
    if name not in SPLITS:
        raise ValueError(f"unknown photo split {name!r}; choose from {', '.join(SPLITS)}")
    folder = Path(photos) if photos is not None else PHOTOS
    paths = list_images(folder) if folder.is_dir() else []
    if len(paths) < len(VAL) + len(TEST) + 1:
        raise ValueError(f"photo split {name!r} needs the photos of 'make photos' in '{folder}' "
                         f"({len(paths)} found); run 'make photos' once")
    held_out = set(VAL) | set(TEST)
    missing = held_out - {p.stem for p in paths}
    if missing:
        raise ValueError(f"'{folder}' lacks the held-out photos {sorted(missing)}; rebuild it with 'make photos'")
    if name == "train":
        return [p for p in paths if p.stem not in held_out]
    chosen = [p for p in paths if p.stem in (VAL if name == "val" else TEST)]
    return chosen + (sample_images("val") if name == "test" else [])


def subset(paths: list[Path], count: int) -> list[Path]:
    """``count`` of ``paths``, the first of one seeded shuffle (nested: the 6 lie among the 12), in folder order."""
    if not 1 <= count <= len(paths):
        raise ValueError(f"a subset takes 1 to {len(paths)} photos, not {count}")
    return sorted(random.Random(0).sample(sorted(paths), len(paths))[:count])


def resolve_images(folder: str) -> list[Path] | None:
    """The photos of a ``split:NAME`` or ``split:NAME:N`` reference, or None when ``folder`` is a plain folder."""
    if not folder.startswith(PREFIX):
        return None
    name, _, count = folder[len(PREFIX):].partition(":")
    paths = split_paths(name)
    if not count:
        return paths
    if not count.isdigit():
        raise ValueError(f"'{folder}': the count after the split's name must be a whole number, e.g. split:{name}:6")
    return subset(paths, int(count))
