"""What a folder run of ``paintguard protect`` reads and writes: image/mask pairs, their output paths, and the
folders it must not read (its own output folder and earlier runs')."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from generator.io import IMAGE_SUFFIXES, files_under, find_image_mask_pairs, unpaired_masks
from generator.messages import counted
from generator.protect_items import Item, say

# left in every output folder, so that a later run over a folder that holds it does not take its protected
# images (which have no masks) for inputs; a run given such a folder itself as its input still reads it
OUTPUT_MARKER = ".paintguard-output"


def mark_output(out_dir: Path, folder: Path, command: str = "protect") -> None:
    """Leave ``OUTPUT_MARKER`` in ``out_dir``, saying which command wrote its images from which folder."""
    (out_dir / OUTPUT_MARKER).write_text(f"images written by paintguard {command} from '{folder}'; folder runs "
                                         "over a folder above this one skip it\n")


def lies_below(path: Path, folders: set[Path]) -> bool:
    """Whether ``path`` lies in one of ``folders`` (resolved), however the run spells it."""
    parent = path.parent.resolve()
    return any(folder == parent or folder in parent.parents for folder in folders)


def skipped_folders(folder: Path, out_dir: Path) -> set[Path]:
    """The folders below ``folder`` a run must not read, resolved: this run's ``out_dir`` and earlier runs'
    output folders. Each is named once on stderr, except this run's own when it holds only earlier outputs."""
    root, out = folder.resolve(), out_dir.resolve()
    skipped = set()
    for marker in (p for p in files_under(folder, hidden=True) if p.name == OUTPUT_MARKER):
        earlier = marker.parent.resolve()
        if earlier != root and earlier not in skipped:
            skipped.add(earlier)
            if earlier != out and rank_zero_only.rank == 0:
                say("note", f"skipping '{marker.parent}': the output folder of an earlier run")
    if root in out.parents:
        if out not in skipped and rank_zero_only.rank == 0 and any(
                p.suffix.lower() in IMAGE_SUFFIXES for p in files_under(out_dir)):
            say("note", f"skipping '{out_dir}': it is this run's output folder, not an input")
        skipped.add(out)
    return skipped


def no_mask(image: Path, mask_suffix: str) -> str:
    """Why an image whose masks are looked for beside it has none."""
    return f"no mask for '{image}' (no '{image.stem}{mask_suffix}*.png' beside it)"


def folder_items(folder: Path, out_dir: Path, suffix: str, mask_suffix: str, command: str = "protect") -> list[Item]:
    """Image/mask pairs under ``folder`` with their output paths (the sub-folders are mirrored), for ``paintguard
    command``."""
    items = []
    skipped = skipped_folders(folder, out_dir)
    pairs = [(image, masks) for image, masks in find_image_mask_pairs(folder, mask_suffix)
             if not lies_below(image, skipped)]
    # every process scans the folder; one of them says what the scan found
    for mask in unpaired_masks(folder, pairs, mask_suffix) if rank_zero_only.rank == 0 else []:
        if lies_below(mask, skipped):
            continue
        if mask.suffix.lower() != ".png":  # lossy formats change a mask's pixels: only PNG masks are read
            say("warning", f"mask '{mask}' is not a PNG file (masks are NAME{mask_suffix}*.png); skipped")
        else:
            say("warning", f"mask '{mask}' has no image beside it (NAME{', NAME'.join(IMAGE_SUFFIXES)} for "
                           f"NAME{mask_suffix}*.png); skipped")
    for image, masks in pairs:
        item = Item(image, masks, out_dir / image.relative_to(folder).with_suffix(suffix))
        if not masks:
            item.error = no_mask(image, mask_suffix)
        items.append(item)
    claim_outputs(items, command)
    return items


def claim_outputs(items: list, command: str) -> None:
    """Fail each of ``items`` (with ``image_path``, ``output`` and ``error``) whose output an earlier one writes."""
    seen = {}
    for item in items:
        if item.output in seen:
            item.error = (f"'{item.image_path}' skipped: '{seen[item.output]}' is written to '{item.output}' (rename "
                          f"one of them, or {command} them into two folders)")
        seen.setdefault(item.output, item.image_path)


def left_to_do(items: list) -> list:
    """``--skip-existing``: the ``items`` whose output does not exist yet (outputs are written whole, so one that
    exists is done); how many were skipped is said once."""
    done, todo = [], []
    for item in items:
        (done if item.error is None and item.output.is_file() else todo).append(item)
    if done and rank_zero_only.rank == 0:
        say("note", f"{counted(len(done), 'image')} skipped: {'its' if len(done) == 1 else 'their'} output exists "
                    "(--skip-existing)")
    return todo
