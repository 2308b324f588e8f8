"""``paintguard inpaint DIR -o OUTDIR``: what an editor's inpainter makes of a folder of images.

Each image is edited as ``paintguard inpaint`` edits one, and written to the same path under OUTDIR as a PNG
(sub-folders mirrored). The masks are found by name as ``paintguard protect`` finds them: NAME_mask*.png beside
each image, or, given ``--original PHOTOS`` (the folder that was protected), beside each image's original, the
file of the same name (any image suffix) at the same place under PHOTOS. One line per image, then a summary over
the folder; one bad file is reported and the others go on. ``--csv`` writes the figures as a table too
(``trainer.commands.inpaint_csv``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path

import torch

from generator.folder_scan import (OUTPUT_MARKER, claim_outputs, folder_items, left_to_do, lies_below, mark_output,
                                  no_mask, skipped_folders)
from generator.io import IMAGE_SUFFIXES, files_under, is_mask_name, masks_beside, read_image, read_mask
from generator.messages import counted, one_line
from generator.protect_folder import make_folders, remove_empty
from generator.protect_items import say
from generator.save import check_creatable, check_output_path, check_skip_existing, write_image
from generator.signals import Stopped
from trainer.commands.inpaint import TAKEN_OVER_DB, Edit, check_original, edit, editors_mask, inpainter_name, which_mask
from trainer.commands.inpaint_csv import check_csv, row, write_rows
from trainer.inpainting.inpainter import load_inpainter


@dataclass
class Job:
    """One image of the folder to edit."""

    image_path: Path
    mask_paths: list[Path]
    output: Path
    original: Path | None = None
    error: str | None = None


def _images(folder: Path, out_dir: Path, mask_suffix: str) -> list[Path]:
    """The images under ``folder`` (masks, this run's output folder and earlier runs' left out)."""
    skipped = skipped_folders(folder, out_dir)
    return [p for p in files_under(folder) if p.suffix.lower() in IMAGE_SUFFIXES and not is_mask_name(p, mask_suffix)
            and not lies_below(p, skipped)]


def _original_of(image: Path, folder: Path, originals: Path, mask_suffix: str) -> Path:
    """The file that ``image`` (under ``folder``) was protected from: its name, any image suffix, under
    ``originals``, as ``paintguard protect`` mirrors a folder."""
    where = originals / image.relative_to(folder)
    found = sorted(p for p in where.parent.glob(glob_escape(where.stem) + ".*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.stem == where.stem and not is_mask_name(p, mask_suffix))
    if not found:
        raise ValueError(f"no original for '{image}' ('{where.with_suffix('.*')}' with an image suffix)")
    if len(found) > 1:
        raise ValueError(f"'{image}' has {len(found)} originals: {', '.join(repr(str(p)) for p in found)}")
    return found[0]


def folder_jobs(folder: Path, out_dir: Path, originals: Path | None, mask_suffix: str) -> list[Job]:
    """Every image under ``folder`` with its masks, its original (given ``originals``) and its output path."""
    if originals is None:
        return [Job(item.image_path, item.mask_paths, item.output, error=item.error)
                for item in folder_items(folder, out_dir, ".png", mask_suffix, command="inpaint")]
    jobs = []
    for image in _images(folder, out_dir, mask_suffix):
        job = Job(image, [], out_dir / image.relative_to(folder).with_suffix(".png"))
        try:
            job.original = _original_of(image, folder, originals, mask_suffix)
            job.mask_paths = masks_beside(job.original, mask_suffix)
            if not job.mask_paths:
                job.error = no_mask(job.original, mask_suffix)
        except ValueError as err:
            job.error = str(err)
        jobs.append(job)
    claim_outputs(jobs, "inpaint")
    return jobs


def run_job(job: Job, inpainter: torch.nn.Module, overwrite: bool, editor_mask: str | None = None) -> Edit:
    """Read, check, edit and write one image; raises ValueError/OSError with a one-line reason."""
    if job.error is not None:
        raise ValueError(job.error)
    check_output_path(job.output, [job.image_path, *job.mask_paths, *([job.original] if job.original else [])],
                      overwrite)
    image = read_image(job.image_path)
    original = None
    if job.original is not None:  # before the masks, which are drawn on it: a resized image is said to be one
        original = read_image(job.original)
        check_original(original, image, job.original)
    size = tuple(image.shape[-2:])
    mask = torch.stack([read_mask(p, size=size) for p in job.mask_paths]).amax(0)  # several masks: one region
    mask = editors_mask(mask, editor_mask, f"the mask of '{job.image_path}'")
    result = edit(inpainter, image, mask, original)
    write_image(result.edited, job.output)
    return result


def line(job: Job, result: Edit) -> str:
    """One image's figures: ``paintguard inpaint``'s for one image, shortened (the 8-bit levels between the image and
    its original: the protection's bound, as saved)."""
    said = f"'{job.image_path}': {result.psnr:.2f} dB against solid {result.colour}"
    if result.change is not None:
        said += (f"; on the original {result.original_psnr:.2f} dB: attack loss {result.original_attack:.4f} -> "
                 f"{result.attack:.4f} ({result.change:+.1f}%), {result.levels:.0f} levels apart")
    return f"{said}; wrote {job.output}"


def summary(name: str, results: list[Edit], failed: int, seconds: float, editor_mask: str | None = None) -> str:
    """The folder's figures: mean PSNRs, how many fills read as solid, the median change of the attack loss, and the
    most 8-bit levels an image is from its original."""
    said = f"paintguard inpaint: {counted(len(results), 'image')} edited, {failed} failed, {seconds:.1f} s"
    if not results:
        return said
    solid = sum(r.psnr >= TAKEN_OVER_DB for r in results)
    region = "" if editor_mask is None else f" of {which_mask(editor_mask)}"
    said += (f"; {name}'s fills{region} score {statistics.fmean(r.psnr for r in results):.2f} dB PSNR against their "
             f"target colours on average ({solid} of {len(results)} at {TAKEN_OVER_DB:g} dB or more)")
    changes = [r.change for r in results if r.change is not None]
    if changes:
        levels = max(r.levels for r in results if r.levels is not None)
        said += (f"; on the originals {statistics.fmean(r.original_psnr for r in results):.2f} dB: the attack loss "
                 f"{statistics.median(changes):+.1f}% (median; from {min(changes):+.1f}% to {max(changes):+.1f}%), "
                 f"the images at most {levels:.0f} 8-bit levels from their originals")
    return said


def check_folders(folder: Path, out_dir: Path, originals: Path | None) -> None:
    """Refuse, before any work, an output folder that is an input or a file, and an original that is no folder."""
    if originals is not None and not originals.is_dir():
        raise ValueError(f"--original '{originals}' is not a folder; for a folder of images give the folder they "
                         "were protected from")
    for given, what in ((folder, "the input folder"), (originals, "the --original folder")):
        if given is not None and out_dir.resolve() == given.resolve():
            raise ValueError(f"output folder '{out_dir}' is {what}; choose another")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output '{out_dir}' is a file; a folder's edits go to a folder")
    check_creatable(out_dir, "-o")


def inpaint_folder(args: argparse.Namespace) -> int:
    """``paintguard inpaint`` over a folder: 0 when every image was edited, 1 when any failed."""
    start = time.perf_counter()
    folder, out_dir = Path(args.image), Path(args.output)
    originals = Path(args.original) if args.original else None
    if args.mask:
        raise ValueError(f"--mask is for one image; a folder's masks are NAME{args.mask_suffix}*.png beside each "
                         "image, or beside each original (--original)")
    check_skip_existing(args.skip_existing, args.overwrite, folder=True)
    check_folders(folder, out_dir, originals)
    csv_path = Path(args.csv) if args.csv else None
    kept = check_csv(csv_path, out_dir, args.overwrite, args.skip_existing) if csv_path else {}
    jobs = folder_jobs(folder, out_dir, originals, args.mask_suffix)
    if not jobs:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under '{folder}'")
    if originals is None and (folder / OUTPUT_MARKER).is_file() and not any(job.mask_paths for job in jobs):
        raise ValueError(f"'{folder}' holds images written by paintguard, with no masks beside them: give the folder "
                         "they were protected from, --original PHOTOS")
    if args.skip_existing:
        jobs = left_to_do(jobs)
        if not jobs:
            if csv_path:
                write_rows(csv_path, kept, [])
            return 0
    inpainter = load_inpainter(args.inpainter, device=args.device)
    folders = {job.output.parent for job in jobs if job.error is None}
    made = make_folders(folders | {csv_path.parent} if csv_path else folders)
    results, failed, rows = [], 0, []
    try:
        if out_dir.is_dir():
            mark_output(out_dir, folder, "inpaint")
        for job in jobs:
            try:
                result = run_job(job, inpainter, args.overwrite, args.editor_mask)
            except (ValueError, OSError, RuntimeError) as err:  # e.g. out of memory: this image fails, the rest go on
                failed += 1
                why = one_line(err)
                say("error", why if str(job.image_path) in why else f"'{job.image_path}': {why}")
                rows.append(row(job, error=why))
                continue
            results.append(result)
            rows.append(row(job, result))
            print(line(job, result), flush=True)
    except (KeyboardInterrupt, Stopped) as stop:  # what was written is whole: say how to finish
        stop.add_note(f"{counted(len(results), 'image')} edited; the same command with --skip-existing edits the rest")
        raise
    finally:  # also when stopped: every file written is whole, the CSV with the images done
        if csv_path:
            write_rows(csv_path, kept, rows)
        remove_empty(made)
    seconds = time.perf_counter() - start
    said = summary(inpainter_name(args.inpainter), results, failed, seconds, args.editor_mask)
    print(said + (f"; the figures in {csv_path}" if csv_path else ""), flush=True)
    return 1 if failed else 0
