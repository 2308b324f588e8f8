"""``paintguard protect``: protect image files with the one-pass generator (or the optimiser).

    paintguard protect IMAGE --mask MASK -o OUT.png
    paintguard protect DIR -o OUTDIR     # NAME.jpg + NAME_mask.png pairs (LaMa's convention)

One image is read, checked and written by ``generator.protect_items``; a folder runs
through Lightning's predict loop (``generator.protect_folder``), so ``--devices N
--num-nodes M`` spread it over processes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image
from torch import nn

from generator.checkpoint import CheckpointError, available, read_metadata, resolve
from generator.cli_parser import ArgumentParser, device_option, mask_suffix_option
from generator.messages import counted
from generator.precision import CHOICES, resolve_dtype
from generator.protect_folder import protect_folder
from generator.protect_items import FORMATS, Item, load, say, summary, warn_empty, warn_lossy, write
from generator.protector import BACKENDS, DEFAULT, DEFAULT_STEPS, METHODS, OPTIMISED, Protector, check_steps
from generator.save import check_skip_existing

INPAINTER = "lama-tiny"  # the optimiser's target when --inpainter is not given


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="paintguard protect", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="an image, or a folder of NAME.ext + NAME_mask.png pairs")
    parser.add_argument("--mask", help="mask of the same size (single image); non-zero pixels are protected")
    parser.add_argument("-o", "--output", required=True, help="output file (single image) or folder")
    parser.add_argument("--checkpoint", help=f"generator: shipped name or .safetensors file (default {DEFAULT})")
    parser.add_argument("--method", choices=METHODS, default="generator",
                        help="generator: one pass (default); iterative: the 20-step optimiser; hybrid: the optimiser "
                             "from the generator's noise; refine: optimiser steps on the generator's own field")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="run the generator with torch or onnxruntime (CPU; onnx: needs the onnx extra)")
    parser.add_argument("--onnx-model", help="--backend onnx: an exported .onnx file of --checkpoint (checked "
                                             "against its fingerprint); default: export in memory")
    parser.add_argument("--dtype", choices=CHOICES, default="float32", help="the networks' convolutions (torch "
                        "backend): bfloat16 is faster on CPUs with bfloat16 instructions; auto uses it there")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: " + ", ".join(
        f"{steps} for {method}" for method, steps in DEFAULT_STEPS.items()) + ")")
    parser.add_argument("--inpainter", help="for iterative/hybrid/refine: name, file or LaMa folder (default: "
                                            "for hybrid and refine the one inpainter the generator was trained "
                                            f"against, else {INPAINTER})")
    parser.add_argument("--device", type=device_option, default="cpu", help="cpu, cuda, cuda:1, ... (folder mode: one per process)")
    parser.add_argument("--devices", type=int, default=1, help="folder mode: processes (devices) per node")
    parser.add_argument("--num-nodes", type=int, default=1, help="folder mode: machines")
    parser.add_argument("--strategy", default="auto", help="folder mode: Lightning strategy (auto = ddp if several)")
    parser.add_argument("--batch-size", type=int, default=1, help="folder mode: images of one size per batch")
    parser.add_argument("--workers", type=int, default=0, help="folder mode: image-reading worker processes")
    parser.add_argument("--mask-suffix", default="_mask", type=mask_suffix_option,
                        help="folder mode: masks are NAME{suffix}*.png")
    parser.add_argument("--format", choices=FORMATS, default="png", help="folder mode: output format")
    parser.add_argument("--max-pixels", type=float, default=40e6,
                        help="refuse larger images (memory; default: 40e6, 40 MP)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--skip-existing", action="store_true",
                        help="folder mode: leave the images whose output exists (a rerun finishes a stopped run)")
    return parser


# options a single image has no use for (--skip-existing is refused for one: it would leave the image unprotected)
FOLDER_ONLY = ("devices", "num_nodes", "strategy", "batch_size", "workers", "mask_suffix", "format")


def default_inpainter(generator: str, method: str) -> str | nn.Module:
    """The inpainter the optimiser steps of hybrid and refine attack without --inpainter: the one ``generator`` was
    trained against, as its checkpoint records it (a shipped name, or a path here or beside the generator whose
    weights match the recorded fingerprint: then the inpainter loaded to check them), else lama-tiny, said. A
    generator of an ensemble keeps lama-tiny: which of its members a step should attack is the user's choice."""
    if method not in ("hybrid", "refine"):
        return INPAINTER
    try:
        path = resolve(generator, "generator")
        meta = read_metadata(path)
    except (CheckpointError, OSError):
        return INPAINTER  # loading the generator says what is wrong with it
    trained, recorded = meta.get("inpainter"), meta.get("inpainter_sha")
    if not trained or trained == INPAINTER:
        return INPAINTER
    if "," in trained:
        say("note", f"the generator was trained against several inpainters ({trained}); its optimiser steps attack "
                    f"{INPAINTER} (pass --inpainter to choose)")
        return INPAINTER
    # the path as typed when it was trained: from here, or from the generator's folder if it travelled with it
    candidates = [c for c in dict.fromkeys([trained, str(path.parent / trained)])
                  if c in available("inpainter") or Path(c).exists()]
    for candidate in candidates:
        if recorded is None:
            return candidate
        loaded = _loaded(candidate)
        if loaded is not None and loaded.fingerprint() == recorded:
            return loaded  # read once: the protector takes the module as it is
    why = f"'{candidates[0]}' holds other weights" if candidates else "which is not here"
    say("warning", f"the generator was trained against '{trained}', {why}; its optimiser steps attack {INPAINTER} "
                   "(pass --inpainter)")
    return INPAINTER


def _loaded(source: str) -> nn.Module | None:
    from trainer.inpainting.inpainter import load_inpainter  # lazy: the generator package runs without trainer

    try:
        return load_inpainter(source)
    except (CheckpointError, OSError, ValueError):
        return None


LONG_PIXELS = 4e6  # above this one generator pass takes seconds on a CPU; any optimiser step takes longer


def working_note(item: Item, method: str, steps: int | None) -> None:
    """On a terminal, say what runs before a long silent wait (a folder shows a progress bar instead)."""
    h, w = item.image.shape[-2:]
    if not sys.stderr.isatty() or (method == "generator" and h * w < LONG_PIXELS):
        return
    count = DEFAULT_STEPS.get(method) if steps is None else steps
    how = ("the generator" if method == "generator" else
           f"{counted(count, 'optimiser step')} ({method})")
    say("note", f"protecting '{item.image_path}' ({w}x{h}) with {how}; this takes a while on a CPU")


def protect_file(args: argparse.Namespace, protector: Protector, steps: int | None, start: float) -> int:
    if not args.mask:
        raise ValueError("--mask is required for a single image (a folder pairs NAME with NAME_mask.png)")
    output = Path(args.output)
    if output.is_dir():
        output = output / f"{Path(args.input).stem}.png"
    if Path(args.mask).suffix.lower() in (".jpg", ".jpeg"):  # folder mode skips such masks, with a warning
        say("warning", f"mask '{args.mask}' is a JPEG: its compression moves the mask's edges (any non-zero pixel "
                       "is protected); save masks as PNG")
    item = load(Item(Path(args.input), [Path(args.mask)], output), args.max_pixels, args.overwrite)
    warn_lossy(output.suffix)
    if item.empty:
        warn_empty(item)
    else:
        working_note(item, args.method, steps)
        item.protected = protector.protect_batch(item.image[None], item.mask[None], args.method, steps)[0].cpu()
    write(item, protector.eps)
    print(summary(1, int(item.empty), 0, time.perf_counter() - start, 1) + f"; wrote {output}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)
    check_steps(args.method, args.steps, "--steps")
    # an option the method does not use was ignored without a word; a warning, not a refusal, so that a script
    # looping over methods with one set of options still runs
    if args.inpainter is not None and args.method == "generator":
        say("warning", "--inpainter is not used by --method generator (only by iterative, hybrid and refine)")
    if args.checkpoint is not None and args.method == "iterative":
        say("warning", "--checkpoint is not used by --method iterative (the optimiser alone loads no generator)")
    if args.inpainter is not None and "," in args.inpainter:  # read as one file name, which did not exist
        raise ValueError(f"--inpainter takes one inpainter, got '{args.inpainter}'; paintguard optimize attacks a "
                         "comma list of them at once")
    args.checkpoint = args.checkpoint or DEFAULT
    args.inpainter = args.inpainter or default_inpainter(args.checkpoint, args.method)
    if min(args.batch_size, args.devices, args.num_nodes) < 1 or args.workers < 0 or not 0 < args.max_pixels < 1e18:
        raise ValueError("--batch-size, --devices and --num-nodes must be >= 1, --workers >= 0, --max-pixels a "
                         "number > 0 (and below 1e18)")
    if not Path(args.input).exists():
        raise ValueError(f"cannot read image '{args.input}': No such file or directory")
    if args.mask and Path(args.input).is_dir():  # it was ignored: one mask for every image is no folder's meaning
        raise ValueError(f"--mask is for one image; a folder's masks are NAME{args.mask_suffix}*.png beside each "
                         "image (--mask-suffix)")
    ignored = [f"--{name.replace('_', '-')}" for name in FOLDER_ONLY if getattr(args, name) != parser.get_default(name)]
    if ignored and Path(args.input).is_file():  # as --inpainter above: said, so a script's shared options still run
        say("warning", f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} for a folder; one image "
                       f"ignores {'it' if len(ignored) == 1 else 'them'}")
    if args.method == "iterative" and args.backend != "torch":
        raise ValueError("--backend onnx runs the generator, which --method iterative does not use")
    if args.method == "refine" and args.backend != "torch":
        raise ValueError("--method refine steps the generator's own field, which needs --backend torch")
    check_skip_existing(args.skip_existing, args.overwrite, Path(args.input).is_dir())
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
    steps = args.steps  # None: the method's default (DEFAULT_STEPS)
    if Path(args.input).is_dir():
        return protect_folder(args, protector, steps, start)
    protector.to(args.device)
    return protect_file(args, protector, steps, start)
