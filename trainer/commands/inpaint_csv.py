"""``paintguard inpaint DIR -o OUTDIR --csv FILE``: the folder's figures, one row per image, for a spreadsheet.

The rows say what the lines say, unrounded, and the images that failed with their reason. A rerun with
``--skip-existing`` keeps the rows of the file it finds for the images it leaves, and replaces those of the images
it edits again, so that a stopped run, finished, has one complete file.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from generator.save import atomic_write, check_creatable

if TYPE_CHECKING:
    from trainer.commands.inpaint import Edit
    from trainer.commands.inpaint_folder import Job

COLUMNS = ("image", "original", "masks", "output", "status", "error", "target_colour", "fill_psnr_db", "attack_loss",
           "original_fill_psnr_db", "original_attack_loss", "attack_loss_change_percent", "levels_from_original")


def row(job: Job, result: Edit | None = None, error: str = "") -> dict[str, str]:
    """One image's row: its figures, or the reason it failed (``result`` None)."""
    # levels to 4 digits: 8-bit images differ by whole levels, which float32 puts a hair off
    figures = () if result is None else (result.colour, result.psnr, result.attack, result.original_psnr,
                                         result.original_attack, result.change,
                                         None if result.levels is None else float(f"{result.levels:.4g}"))
    values = [str(job.image_path), "" if job.original is None else str(job.original),
              ";".join(map(str, job.mask_paths)), "" if result is None else str(job.output),
              "failed" if result is None else "edited", error,
              *(v if isinstance(v, str) else "" if v is None else f"{v:.6g}" for v in figures)]
    return dict(zip(COLUMNS, values + [""] * (len(COLUMNS) - len(values))))


def check_csv(path: Path, out_dir: Path, overwrite: bool, skip_existing: bool) -> dict[str, dict[str, str]]:
    """Refuse, before any work, a CSV path that cannot be written (its folder must exist, or be the output folder
    ``out_dir``, which the run makes); return the rows a ``--skip-existing`` rerun keeps (those of the file there,
    by image), else none."""
    if path.suffix.lower() != ".csv":
        raise ValueError(f"--csv '{path}': give a file name ending in .csv")
    if path.is_dir():
        raise ValueError(f"--csv '{path}' is a folder; give a file name ending in .csv")
    check_creatable(path, "--csv")
    if not path.parent.exists() and path.parent.resolve() != out_dir.resolve():
        raise ValueError(f"--csv '{path}': folder '{path.parent}' does not exist")
    # found now, not after every image is edited: the file is written beside itself and renamed into its folder
    if path.parent.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise ValueError(f"--csv '{path}': its folder '{path.parent}' is not writable")
    if not path.exists() or overwrite:
        return {}
    if not skip_existing:
        raise ValueError(f"--csv '{path}' exists; pass --overwrite to replace it (or --skip-existing to add to it)")
    return read_rows(path)


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    """The rows of an earlier run's CSV, by image; refused when it is not such a file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: as a spreadsheet saves "CSV UTF-8" too
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise ValueError(f"--csv '{path}' exists and is not a CSV of paintguard inpaint; give another name")
            rows = {}
            for r in reader:
                if None in r or None in r.values():  # more or fewer fields than the header: the write would fail
                    raise ValueError(f"--csv '{path}' line {reader.line_num} has {len(COLUMNS)} fields in its "
                                     "header but not in this row; mend it or give another name")
                rows[r["image"]] = r
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"--csv '{path}' cannot be read ({err}); give another name or --overwrite") from None


def write_rows(path: Path, kept: dict[str, dict[str, str]], rows: Iterable[dict[str, str]]) -> Path:
    """Write ``kept`` with ``rows`` replacing those of the same image, as one whole file."""
    merged = dict(kept)
    merged.update((r["image"], r) for r in rows)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(merged.values())

    return atomic_write(path, write)
