"""``paintguard protect``: protect image files with the one-pass generator (or the optimiser).

    paintguard protect IMAGE --mask MASK -o OUT.png
    paintguard protect DIR -o OUTDIR     # NAME.jpg + NAME_mask.png pairs (LaMa's convention)

A folder runs through Lightning's predict loop, so ``--devices N --num-nodes M``
spread it over processes; each process writes its own share of the outputs.
Images are grouped by size into batches of up to ``--batch-size`` (the generator
is fully convolutional but its GroupNorm statistics span the whole image, so
padding images of different sizes into one batch would change their noise).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from generator.cli_parser import ArgumentParser
from generator.io import find_image_mask_pairs, read_image, read_mask
from generator.messages import one_line
from generator.precision import CHOICES, resolve_dtype
from generator.protector import BACKENDS, DEFAULT, DEFAULT_STEPS, FULL_MASK, METHODS, OPTIMISED, Protector
from generator.save import LOSSLESS, check_output_path, quantize_within_bound, write_atomic

MIN_SIDE = 16  # below this the 17x17 ring around the mask and the U-Net's 16x downsampling do not fit
FORMATS = {"png": ".png", "webp": ".webp", "jpg": ".jpg", "tif": ".tif"}
# WebP is written losslessly, so it keeps the bound like PNG; JPEG re-quantises every pixel.
SAVE_OPTIONS = {".webp": {"lossless": True, "exact": True}, ".jpg": {"quality": 95}, ".jpeg": {"quality": 95}}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard protect", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="an image, or a folder of NAME.ext + NAME_mask.png pairs")
    parser.add_argument("--mask", help="mask of the same size (single image); non-zero pixels are protected")
    parser.add_argument("-o", "--output", required=True, help="output file (single image) or folder")
    parser.add_argument("--checkpoint", default=DEFAULT, help="generator: shipped name or .safetensors file")
    parser.add_argument("--method", choices=METHODS, default="generator")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="run the generator with torch or onnxruntime (CPU; pip install paintguard[onnx])")
    parser.add_argument("--onnx-model", help="--backend onnx: an exported .onnx file of --checkpoint (checked "
                                             "against its fingerprint); default: export in memory")
    parser.add_argument("--dtype", choices=CHOICES, default="float32", help="the networks' convolutions (torch "
                        "backend): bfloat16 is faster on CPUs with bfloat16 instructions; auto uses it there")
    parser.add_argument("--steps", type=int, help=f"optimiser steps (default {DEFAULT_STEPS})")
    parser.add_argument("--inpainter", default="lama-tiny",
                        help="for iterative/hybrid/refine: name, file or LaMa folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (folder mode: one per process)")
    parser.add_argument("--devices", type=int, default=1, help="folder mode: processes (devices) per node")
    parser.add_argument("--num-nodes", type=int, default=1, help="folder mode: machines")
    parser.add_argument("--strategy", default="auto", help="folder mode: Lightning strategy (auto = ddp if several)")
    parser.add_argument("--batch-size", type=int, default=1, help="folder mode: images of one size per batch")
    parser.add_argument("--workers", type=int, default=0, help="folder mode: image-reading worker processes")
    parser.add_argument("--mask-suffix", default="_mask", help="folder mode: masks are NAME{suffix}*.png")
    parser.add_argument("--format", choices=FORMATS, default="png", help="folder mode: output format")
    parser.add_argument("--max-pixels", type=float, default=40e6, help="refuse larger images (memory)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser


# --- one image: read, check, write -------------------------------------------------------------

@dataclass
class Item:
    """One image to protect, as it goes through reading, protection and writing."""

    image_path: Path
    mask_paths: list[Path]
    output: Path
    image: torch.Tensor | None = None  # (3,H,W) in [0,1]
    mask: torch.Tensor | None = None  # (1,H,W) in {0,1}
    icc: bytes | None = None
    protected: torch.Tensor | None = None
    error: str | None = None
    empty: bool = False


def peek(path: Path) -> tuple[tuple[int, int], bytes | None] | None:
    """(upright (W, H), RGB ICC profile) from the header alone; None if unreadable (read_image says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                # EXIF orientations 5-8 turn the image by 90 degrees
                turned = img.getexif().get(0x0112) in (5, 6, 7, 8)
                icc = img.info.get("icc_profile")
    except Image.DecompressionBombError:
        raise ValueError(f"image '{path}' exceeds Pillow's decompression-bomb limit") from None
    except Exception:
        return None
    # a colour profile only fits the RGB output if it describes RGB (not grey or CMYK sources)
    return ((h, w) if turned else (w, h)), (icc if icc and icc[16:20] == b"RGB " else None)


def load(item: Item, max_pixels: float, overwrite: bool) -> Item:
    """Read and check one image and its masks (union); raises ValueError/OSError with a one-line reason."""
    check_output_path(item.output, [item.image_path, *item.mask_paths], overwrite)
    if not item.mask_paths:
        raise ValueError(f"no mask for '{item.image_path}'")
    header = peek(item.image_path)
    if header is not None:
        (w, h), item.icc = header
        if w * h > max_pixels:
            raise ValueError(f"image '{item.image_path}' is {w}x{h} = {w * h / 1e6:.1f} MP, above --max-pixels "
                             f"{max_pixels / 1e6:g} MP")
        if min(w, h) < MIN_SIDE:
            raise ValueError(f"image '{item.image_path}' is {w}x{h}; at least {MIN_SIDE} px on each side are needed")
    item.image = read_image(item.image_path)
    size = tuple(item.image.shape[-2:])
    item.mask = torch.stack([read_mask(p, size=size) for p in item.mask_paths]).amax(0)
    if item.mask.all():
        raise ValueError(f"'{item.image_path}': {FULL_MASK}; leave some of the image unmasked")
    item.empty = not item.mask.any()
    return item


def write(item: Item, eps: float) -> Path:
    """Write ``item.protected`` (or the image itself for an empty mask), rounded within the bound, atomically."""
    protected = item.image if item.empty else item.protected
    pixels = quantize_within_bound(protected, item.image, eps)
    options = dict(SAVE_OPTIONS.get(item.output.suffix.lower(), {}))
    if item.icc:
        options["icc_profile"] = item.icc
    return write_atomic(Image.fromarray(pixels), item.output, **options)


def say(kind: str, message: str) -> None:
    """One line on stderr that does not break a progress bar."""
    tqdm.write(f"paintguard: {kind}: {message}", file=sys.stderr)


def warn_empty(item: Item) -> None:
    say("warning", f"the mask of '{item.image_path}' is empty; wrote the image unchanged")


def warn_lossy(suffix: str) -> None:
    if suffix.lower() not in LOSSLESS | {".webp"}:
        say("warning", f"{suffix} is lossy: compression changes pixels after the bound is applied and weakens the "
                       "protection; prefer PNG or WebP (written losslessly)")


def summary(written: int, unchanged: int, failed: int, seconds: float, processes: int) -> str:
    rate = written / seconds if seconds > 0 else 0.0
    extra = f" ({unchanged} unchanged: empty mask)" if unchanged else ""
    procs = f" on {processes} processes" if processes > 1 else ""
    images = f"{written} image{'s' * (written != 1)}"
    return f"paintguard protect: {images} written{extra}, {failed} failed, {seconds:.1f} s ({rate:.2f} images/s){procs}"


# --- a folder: Lightning's predict loop --------------------------------------------------------

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
        return DataLoader(shard, batch_size=None, shuffle=False, num_workers=self.workers, collate_fn=identity)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # the Protector moves what it needs; the items also hold paths and errors


class ProtectModule(pl.LightningModule):
    """Wraps a Protector for ``Trainer.predict``: a batch of items in, the same items with ``protected`` out."""

    def __init__(self, protector: Protector, method: str, steps: int) -> None:
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
        if trainer.is_global_zero:
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


def folder_items(folder: Path, out_dir: Path, suffix: str, mask_suffix: str) -> list[Item]:
    """Image/mask pairs under ``folder`` with their output paths (the sub-folders are mirrored)."""
    items, seen = [], {}
    for image, masks in find_image_mask_pairs(folder, mask_suffix):
        if out_dir in image.parents:
            continue  # outputs of an earlier run inside the input folder are not inputs
        item = Item(image, masks, out_dir / image.relative_to(folder).with_suffix(suffix))
        if item.output in seen:
            item.error = f"'{image}' and '{seen[item.output]}' would both be written to '{item.output}'"
        seen.setdefault(item.output, image)
        items.append(item)
    return items


def accelerator(device: str) -> tuple[str, int | list[int] | None]:
    """Lightning's accelerator (and device index, if one is named) for a torch device string."""
    if device.startswith("cuda") or device == "gpu":
        index = device.partition(":")[2]
        return "gpu", [int(index)] if index else None
    return device, None


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


def protect_folder(args: argparse.Namespace, protector: Protector, steps: int, start: float) -> int:
    folder, out_dir = Path(args.input), Path(args.output)
    if out_dir.resolve() == folder.resolve():
        raise ValueError(f"output folder '{out_dir}' is the input folder; choose another")
    items = folder_items(folder, out_dir, FORMATS[args.format], args.mask_suffix)
    if not items:
        raise ValueError(f"no images ({', '.join(sorted({'.jpg', '.jpeg', '.png', '.webp'}))}) under '{folder}'")
    for parent in sorted({item.output.parent for item in items}):
        parent.mkdir(parents=True, exist_ok=True)
    warn_lossy(FORMATS[args.format])

    groups = group_by_size(items, args.batch_size)
    data = FolderData(groups, args.max_pixels, args.overwrite, args.workers)
    accel, index = accelerator(args.device)
    writer = Writer(start)
    with quiet_lightning():
        trainer = pl.Trainer(accelerator=accel, devices=index or args.devices, num_nodes=args.num_nodes,
                             strategy=args.strategy, logger=False, enable_checkpointing=False,
                             enable_model_summary=False, enable_progress_bar=False, use_distributed_sampler=False,
                             inference_mode=args.method == "generator",  # the optimiser needs autograd
                             callbacks=[writer])
        trainer.predict(ProtectModule(protector, args.method, steps), datamodule=data, return_predictions=False)
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


def protect_file(args: argparse.Namespace, protector: Protector, steps: int, start: float) -> int:
    if not args.mask:
        raise ValueError("--mask is required for a single image (a folder pairs NAME with NAME_mask.png)")
    output = Path(args.output)
    if output.is_dir():
        output = output / f"{Path(args.input).stem}.png"
    item = load(Item(Path(args.input), [Path(args.mask)], output), args.max_pixels, args.overwrite)
    warn_lossy(output.suffix)
    if item.empty:
        warn_empty(item)
    else:
        item.protected = protector.protect_batch(item.image[None], item.mask[None], args.method, steps)[0].cpu()
    write(item, protector.eps)
    print(summary(1, int(item.empty), 0, time.perf_counter() - start, 1) + f"; wrote {output}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    args = build_parser().parse_args(argv)
    if args.steps is not None and (args.method == "generator" or args.steps < 0):
        raise ValueError("--steps must be >= 0 and only applies to --method iterative, hybrid or refine")
    if min(args.batch_size, args.devices, args.num_nodes) < 1 or args.workers < 0 or args.max_pixels <= 0:
        raise ValueError("--batch-size, --devices and --num-nodes must be >= 1, --workers >= 0, --max-pixels > 0")
    if not Path(args.input).exists():
        raise ValueError(f"cannot read image '{args.input}': No such file or directory")
    if args.method == "iterative" and args.backend != "torch":
        raise ValueError("--backend onnx runs the generator, which --method iterative does not use")
    if args.method == "refine" and args.backend != "torch":
        raise ValueError("--method refine steps the generator's own field, which needs --backend torch")
    if args.onnx_model and args.backend != "onnx":
        raise ValueError("--onnx-model needs --backend onnx")
    # Pillow's decompression-bomb guard would refuse photos that --max-pixels allows: raise it to match
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, int(args.max_pixels))
    dtype = resolve_dtype(args.dtype, args.device, args.backend)
    if args.method == "iterative":  # the optimiser alone: no generator to load
        protector = Protector.iterative(args.inpainter, dtype=dtype)
    else:
        inpainter = args.inpainter if args.method in OPTIMISED else None
        protector = Protector.from_checkpoint(args.checkpoint, device="cpu", dtype=dtype,
                                              inpainter=inpainter, backend=args.backend, onnx_model=args.onnx_model)
    steps = DEFAULT_STEPS.get(args.method, 0) if args.steps is None else args.steps
    if Path(args.input).is_dir():
        return protect_folder(args, protector, steps, start)
    protector.to(args.device)
    return protect_file(args, protector, steps, start)
