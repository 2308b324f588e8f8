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
takes an image folder (``data.train_dir``, ``data.val_dir``).
"""

from __future__ import annotations

import os
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


def resolve_images(folder: str) -> list[Path] | None:
    """The photos of a ``split:NAME`` reference, or None when ``folder`` is a plain folder."""
    if not folder.startswith(PREFIX):
        return None
    return split_paths(folder[len(PREFIX):])
