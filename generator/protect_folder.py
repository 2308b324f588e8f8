"""A folder for ``paintguard protect``, through Lightning's predict loop.

``--devices N --num-nodes M`` spread it over processes; each process writes its own share of the outputs.
Images are grouped by size into batches of up to ``--batch-size`` (the generator is fully convolutional but its
GroupNorm statistics span the whole image, so padding images of different sizes into one batch would change
their noise). One bad file is reported and the others go on.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from generator.folder_scan import OUTPUT_MARKER, folder_items, left_to_do, mark_output
from generator.io import IMAGE_SUFFIXES
from generator.messages import counted, one_line
from generator.protect_items import FORMATS, Item, load, peek, say, summary, warn_empty, warn_lossy, write
from generator.protector import Protector
from generator.save import check_creatable
from generator.signals import Stopped, leave_signals_to_the_main_process


def identity(batch):
    return batch


class Groups(Dataset):
    """Each element is one batch: up to ``batch_size`` items of the same image size, read and checked."""

    def __init__(self, groups: list[list[Item]], max_pixels: float, overwrite: bool) -> None:
        self.groups, self.max_pixels, self.overwrite = groups, max_pixels, overwrite

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> list[Item]:
        batch = self.groups[index]
        for item in batch:
            if item.error is None:
                try:
                    load(item, self.max_pixels, self.overwrite)
                except Exception as err:  # whatever one file does (MemoryError too), the folder goes on
                    item.error = one_line(str(err)) or f"'{item.image_path}': {type(err).__name__}"
        return batch


def group_by_size(items: list[Item], batch_size: int) -> list[list[Item]]:
    """Batches of same-size items, biggest first; identical on every process (it decides who does what)."""
    by_size: dict[tuple[int, int], list[Item]] = {}
    singles = []
    for item in items:
        try:
            header = peek(item.image_path) if item.error is None else None
        except ValueError as err:  # a decompression bomb: one more failed image, not the end of the scan
            item.error, header = str(err), None
        if header is None:
            singles.append([item])  # unreadable or already failed: reported on its own
        else:
            by_size.setdefault(header[0], []).append(item)
    batches = [((w * h * len(group[i:i + batch_size]), str(group[i].image_path)), group[i:i + batch_size])
               for (w, h), group in by_size.items() for i in range(0, len(group), batch_size)]
    batches.sort(key=lambda b: (-b[0][0], b[0][1]))
    return [batch for _, batch in batches] + singles


class FolderData(pl.LightningDataModule):
    """Shards the groups over the processes: process r of n takes groups r, r + n, r + 2n, ..."""

    def __init__(self, groups: list[list[Item]], max_pixels: float, overwrite: bool, workers: int) -> None:
        super().__init__()
        self.groups, self.max_pixels, self.overwrite, self.workers = groups, max_pixels, overwrite, workers

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        # Lightning refuses a process with nothing to do: fewer batches than processes get empty ones
        groups = self.groups + [[] for _ in range(world - len(self.groups))]
        shard = Groups(groups[rank::world], self.max_pixels, self.overwrite)
        # batch_size=None: each dataset element already is a batch
        return DataLoader(shard, batch_size=None, shuffle=False, num_workers=self.workers, collate_fn=identity,
                          worker_init_fn=leave_signals_to_the_main_process)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # the Protector moves what it needs; the items also hold paths and errors


class ProtectModule(pl.LightningModule):
    """Wraps a Protector for ``Trainer.predict``: a batch of items in, the same items with ``protected`` out."""

    def __init__(self, protector: Protector, method: str, steps: int | None) -> None:
        super().__init__()
        self.protector, self.method, self.steps = protector, method, steps
        self.net = protector.net  # registered, so that Lightning moves it to this process's device
        self.inpainter = protector.inpainter

    def on_predict_start(self) -> None:
        self.protector.to(self.device)

    def predict_step(self, batch: list[Item], batch_idx: int = 0) -> list[Item]:
        ready = [item for item in batch if item.error is None and not item.empty]
        by_shape: dict[tuple[int, ...], list[Item]] = {}
        for item in ready:  # headers may lie (e.g. a bad EXIF tag): regroup by the decoded size
            by_shape.setdefault(tuple(item.image.shape), []).append(item)
        for items in by_shape.values():
            try:
                protected = self.protector.protect_batch(torch.stack([i.image for i in items]),
                                                         torch.stack([i.mask for i in items]), self.method, self.steps)
            except (ValueError, RuntimeError) as err:  # e.g. out of memory: report these images, go on
                for item in items:
                    item.error = f"'{item.image_path}': {one_line(err)}"
                continue
            for item, out in zip(items, protected.cpu()):
                item.protected = out
        return batch


class Writer(BasePredictionWriter):
    """Writes each protected image as soon as its batch is done, counts, and reports failures."""

    def __init__(self, start: float) -> None:
        super().__init__(write_interval="batch")
        self.start = start
        self.counts = [0, 0, 0]  # written, unchanged, failed
        self.bar: tqdm | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and sys.stderr.isatty():  # in a log, a bar's carriage returns garble the lines
            total = sum(len(g) for g in trainer.datamodule.groups[0::trainer.world_size])
            label = "protect" if trainer.world_size == 1 else f"protect (process 0 of {trainer.world_size})"
            self.bar = tqdm(total=total, desc=label, unit="img", file=sys.stderr, dynamic_ncols=True)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        for item in prediction:
            if item.error is None:
                try:
                    write(item, pl_module.protector.eps)
                except (ValueError, OSError) as err:
                    item.error = f"cannot write '{item.output}': {one_line(err)}"
            if item.error is not None:
                self.counts[2] += 1
                say("error", item.error if str(item.image_path) in item.error else f"'{item.image_path}': {item.error}")
            else:
                self.counts[0] += 1
                if item.empty:
                    self.counts[1] += 1
                    warn_empty(item)
            item.image = item.mask = item.protected = None  # free memory now, not at the end of the loop
        if self.bar is not None:
            self.bar.update(len(prediction))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
        # every process learns everyone's counts: the exit code and the summary cover the whole folder
        gathered = trainer.strategy.all_gather(torch.tensor(self.counts, device=pl_module.device))
        self.per_process = gathered.reshape(-1, 3).cpu().tolist()
        self.counts = [sum(c[i] for c in self.per_process) for i in range(3)]
        self.seconds = time.perf_counter() - self.start


def accelerator(device: str) -> tuple[str, int | list[int] | None]:
    """Lightning's accelerator (and device index, if one is named) for a torch device string."""
    if device.startswith("cuda") or device == "gpu":
        index = device.partition(":")[2]
        return "gpu", [int(index)] if index else None
    return device, None


def make_folders(folders: set[Path]) -> list[Path]:
    """Make ``folders`` with their parents; the ones this call made, deepest first. One that cannot be made (a file
    stands in its way) is left: its images fail one by one, with the reason, and the others go on."""
    made = set()
    for folder in folders:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
        made.update(p for p in missing if p.is_dir())
    return sorted(made, key=lambda p: len(p.parts), reverse=True)


def remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that are empty: nothing was written into them (the output
    folder's marker alone is nothing)."""
    for folder in folders:
        marker = folder / OUTPUT_MARKER
        if marker.is_file() and [p.name for p in folder.iterdir()] == [OUTPUT_MARKER]:
            marker.unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): keep it
            pass


@contextmanager
def quiet_lightning():
    """Hide Lightning's start-up banners and its warnings about its own internals; real warnings still show."""
    logs = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(batch indices|LeafSpec|all_gather is deprecated)")
            yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)


def protect_folder(args: argparse.Namespace, protector: Protector, steps: int | None, start: float) -> int:
    folder, out_dir = Path(args.input), Path(args.output)
    if out_dir.resolve() == folder.resolve():
        raise ValueError(f"output folder '{out_dir}' is the input folder; choose another")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output '{out_dir}' is a file; a folder's outputs go to a folder")
    check_creatable(out_dir, "-o")  # before any work: a file where one of its folders must go
    items = folder_items(folder, out_dir, FORMATS[args.format], args.mask_suffix)
    if not items:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under '{folder}'")
    if args.skip_existing:
        items = left_to_do(items)
        if not items:
            return 0
    groups = group_by_size(items, args.batch_size)
    data = FolderData(groups, args.max_pixels, args.overwrite, args.workers)
    accel, index = accelerator(args.device)
    writer = Writer(start)
    with quiet_lightning():
        try:  # before any folder is made: e.g. more --devices than the machine has
            trainer = pl.Trainer(accelerator=accel, devices=index or args.devices, num_nodes=args.num_nodes,
                                 strategy=args.strategy, logger=False, enable_checkpointing=False,
                                 enable_model_summary=False, enable_progress_bar=False,
                                 use_distributed_sampler=False,
                                 inference_mode=args.method == "generator",  # the optimiser needs autograd
                                 callbacks=[writer])
        except MisconfigurationException as err:
            raise ValueError(f"--device {args.device} --devices {args.devices} --num-nodes {args.num_nodes} "
                             f"--strategy {args.strategy}: {one_line(str(err))}") from None
        # folders for the images that may be written (load checks that an output's folder exists); one whose
        # images all failed the scan is not made, and one whose images all fail later is removed again
        made = make_folders({item.output.parent for item in items if item.error is None})
        try:
            if trainer.is_global_zero:  # one marker and one line per run, not per process
                if out_dir.is_dir():
                    mark_output(out_dir, folder)
                warn_lossy(FORMATS[args.format])
            trainer.predict(ProtectModule(protector, args.method, steps), datamodule=data, return_predictions=False)
        except (KeyboardInterrupt, Stopped) as stop:  # what was written is whole: say how to finish
            stop.add_note(f"{counted(writer.counts[0], 'image')} written; the same command with --skip-existing "
                          "protects the rest")
            raise
        finally:  # also when stopped: an interrupted run left its empty folders
            remove_empty(made)  # after predict every process has written all it will
    written, unchanged, failed = writer.counts
    if trainer.is_global_zero:
        line = summary(written, unchanged, failed, writer.seconds, trainer.world_size)
        if trainer.world_size > 1:
            line += " (written per process: " + ", ".join(str(c[0]) for c in writer.per_process) + ")"
        print(line, flush=True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # gloo's worker threads must be joined before the interpreter exits, or the process aborts
        torch.distributed.destroy_process_group()
    return 1 if failed else 0
