"""One-pass protection speed and memory, and folder throughput of ``paintguard protect``.

    python benchmarks/protect_speed.py [--checkpoint generator-lama-tiny] [--compare-to generator-lama-tiny-fast]
        [--runs 5] [--threads N] [--folder-images 20] [--backend torch|onnx] [--sizes 512x512 3840x2160]
        [--dtypes float32 bfloat16] [--compile]

Times the architecture of ``--checkpoint`` (a shipped name or a file; the default
generator unless told) with its own weights: speed does not depend on their values. Each image size is timed in a
fresh process, so its peak resident memory (``ru_maxrss``) belongs to that size
alone; the baseline column is the same process before the first pass (Python,
torch and the model). The folder figure runs the real CLI on generated 512 px
images and reads the images/s of its summary line (model loading included). With several ``--dtypes`` every
generator is timed in each precision (``paintguard protect --dtype``); ``--compile`` times each also through
``torch.compile`` (after its first pass, which compiles for that image size; its time is listed below the table).
On a machine whose cores are busy with other work, ``--threads 1`` gives steadier
figures: a parallel region waits for its slowest thread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from generator import Protector
from generator.cli_parser import ArgumentParser
from generator.precision import DTYPES, labelled
from generator.protector import load_generator
from trainer.commands.cli import run_guarded

ROOT = Path(__file__).resolve().parents[1]
SIZES = ["512x512", "3840x2160"]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def one_size(checkpoint: str, h: int, w: int, runs: int, backend: str = "torch", dtype: str = "float32",
             compiled: bool = False) -> dict[str, float]:
    """Median seconds of ``runs`` warm passes at h x w, the first pass's, and peak memory; run in its own process."""
    protector = Protector.from_checkpoint(checkpoint, backend=backend, dtype=getattr(torch, dtype))
    if compiled:
        protector.net = torch.compile(protector.net)
    image, mask = torch.rand(1, 3, h, w), torch.zeros(1, 1, h, w)
    mask[..., h // 4: h // 2, w // 4: w // 2] = 1
    baseline = peak_rss_mib()
    start = time.perf_counter()
    protector.protect(image, mask)  # warm-up (and compilation)
    first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        protector.protect(image, mask)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "first_s": first, "baseline_mib": baseline,
            "peak_mib": peak_rss_mib()}


def folder_throughput(checkpoint: str, count: int, size: int, threads: int, backend: str = "torch",
                      dtype: str = "float32") -> float:
    """images/s of ``paintguard protect DIR -o OUT`` on ``count`` generated size x size images."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(src / f"img{i:02d}.png")
            mask = np.zeros((size, size), np.uint8)
            mask[size // 4: size // 2, size // 4: 3 * size // 4] = 255
            Image.fromarray(mask).save(src / f"img{i:02d}_mask.png")
        proc = subprocess.run([sys.executable, "-m", "trainer.commands.cli", "protect", str(src), "-o", str(Path(tmp) / "out"),
                               "--checkpoint", str(checkpoint), "--backend", backend, "--dtype", dtype],
                              capture_output=True, text=True,
                              cwd=ROOT,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        found = re.search(r"\(([\d.]+) images/s\)", proc.stdout)
        if proc.returncode != 0 or not found:
            raise RuntimeError(f"protect failed: {proc.stderr[-500:]}")
        return float(found.group(1))


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="generator-lama-tiny", help="generator to time (name or file)")
    parser.add_argument("--compare-to", action="append", default=[], metavar="CHECKPOINT",
                        help="also time this generator, interleaved with the first (repeatable)")
    parser.add_argument("--runs", type=int, default=5, help="timed passes per size (after one warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--folder-images", type=int, default=20, help="images of the folder-mode timing (0: none)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                        help="the network through PyTorch or onnxruntime (exported in memory, as protect does)")
    parser.add_argument("--sizes", nargs="+", default=SIZES, metavar="WxH", help="image sizes to time")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=["float32"],
                        help="the generators' precisions (torch backend), each timed, interleaved")
    parser.add_argument("--compile", action="store_true", help="also time each generator through torch.compile")
    parser.add_argument("--one", type=int, nargs=2, metavar=("H", "W"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.backend == "onnx" and (args.dtypes != ["float32"] or args.compile):
        parser.error("--dtypes other than float32 and --compile need --backend torch: onnxruntime runs the export")
    if args.one:
        print(json.dumps(one_size(args.checkpoint, *args.one, args.runs, args.backend, args.dtypes[0],
                                  args.compile)))
        return

    print(f"torch {torch.__version__}, {args.backend} backend, {args.threads} threads, median of {args.runs} warm runs")
    for name in args.compare_to:  # the same sizes for other generators, interleaved, as ratios to the first
        if name == args.checkpoint:
            raise ValueError("--compare-to names the timed checkpoint itself")
    names = [args.checkpoint, *args.compare_to]
    for name in names:
        net = load_generator(name)
        params = sum(p.numel() for p in net.parameters())
        head = net.config.head
        if head == "stem-gradient":
            head += f" over {net.config.head_layers} of the inpainter's layers"
        print(f"- {name}: widths {net.config.widths}, head {head} ({params / 1e6:.2f} M parameters)")
    runs = [(name, dtype, compiled) for name in names for dtype in args.dtypes
            for compiled in ([False, True] if args.compile else [False])]
    compile_notes = []
    print("\n| generator | image | one pass (median s) | time / first | peak RSS (MiB) | of which before the pass |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        w, h = (int(side) for side in size.lower().split("x"))
        first = None
        for name, dtype, compiled in runs:
            out = subprocess.run([sys.executable, __file__, "--one", str(h), str(w), "--runs", str(args.runs),
                                  "--threads", str(args.threads), "--checkpoint", name, "--backend", args.backend,
                                  "--dtypes", dtype, *(["--compile"] if compiled else [])],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            first = first or r["median_s"]
            row = labelled(name, dtype, "torch.compile" if compiled else "")
            if compiled:
                compile_notes.append(f"- {row} at {w}x{h}: first pass {r['first_s']:.1f} s")
            print(f"| {row} | {w}x{h} | {r['median_s']:.3f} | {r['median_s'] / first:.2f} "
                  f"| {r['peak_mib']:.0f} "
                  f"| {r['baseline_mib']:.0f} |", flush=True)
    for dtype in args.dtypes if args.folder_images else []:
        rate = folder_throughput(args.checkpoint, args.folder_images, 512, args.threads, args.backend, dtype)
        print(f"| {labelled(args.checkpoint, dtype)} | folder of {args.folder_images} x 512x512 "
              f"(`paintguard protect DIR`) "
              f"| {rate:.2f} images/s | | | |")
    if compile_notes:
        print("\ntorch.compile's first pass at each size (compilation included, cached on disk for later runs):")
        print("\n".join(compile_notes))

if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
