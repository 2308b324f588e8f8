"""Time and memory per optimiser step against an ensemble of inpainters; ``--quality``: mean vs random at equal cost.

    python benchmarks/ensemble_speed.py [--size 256] [--steps 5] [--threads N] [--device cpu]
    python benchmarks/ensemble_speed.py --quality --inpainters lama-tiny,lama-tiny-ft,lama-tiny-seed1

Speed: the members are the lama-tiny architecture with random weights (speed does
not depend on their values), one 256 px image. Each setting runs in a fresh process, so
that its peak memory is its own: on a CPU the peak resident set size during the steps
over the one before them (after loading, a forward-only warm-up and ``prepare``), on a
GPU torch's peak allocation over the allocation before them. Time per step is
(t(S steps) - t(0 steps)) / S, which leaves out ``prepare`` and the final evaluation.

- single: one inpainter, the paper's optimiser;
- mean K: every step on the mean loss of K members, each member's graph freed after its
  own backward (what ``protect_iterative`` does);
- joint K: the same gradient with all K graphs held until one backward (what a
  LightningModule returning the ensemble's loss does, e.g. generator training);
- random K: one member drawn per step.

Quality (``--quality``): on held-out sample crops, the mean mode with S steps against
the random mode with K x S steps (the same number of inpainter passes, so about the
same time), scored by the attack gain on each member. It needs real, trained members:
random-weight inpainters say nothing about it.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from generator.cli_parser import ArgumentParser
from trainer.commands.cli import run_guarded
from trainer.inpainting.ffc import FFCResNetConfig
from trainer.inpainting.inpainter import build_inpainter, load_inpainter
from trainer.objective.ensemble import ensemble_losses, prepare_ensemble_task
from trainer.objective.iterative import IterativeConfig, protect_iterative

LAMA_TINY = FFCResNetConfig(ngf=32, n_downsampling=3, n_blocks=6)
SETTINGS = {"single": ("mean", 1), "mean 2": ("mean", 2), "mean 3": ("mean", 3), "joint 3": ("joint", 3),
            "random 3": ("random", 3)}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def sample(size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    mask = torch.zeros(1, 1, size, size, device=device)
    mask[..., size // 4: size // 2, size // 4: 3 * size // 4] = 1
    return image, mask


def joint_steps(members, image, mask, steps: int) -> None:
    """The optimiser's loop with one backward through every member's graph at once."""
    cfg = IterativeConfig()
    task = prepare_ensemble_task(members, image, mask)
    noise = (torch.rand_like(image) * cfg.init_scale).requires_grad_(True)
    adam = torch.optim.Adam([noise], lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)
    for _ in range(steps):
        with torch.no_grad():
            noise.clamp_(-cfg.eps, cfg.eps)
        adam.zero_grad(set_to_none=True)
        ensemble_losses(members, (image + noise).clamp(0, 1), task)["total"].sum().backward()
        adam.step()
    with torch.no_grad():
        ensemble_losses(members, (image + noise).clamp(0, 1), task)


def measure(setting: str, size: int, steps: int, device: str) -> dict[str, float]:
    """One setting in this process: seconds per step and peak memory over the level before the steps (MB)."""
    mode, k = SETTINGS[setting]
    members = [build_inpainter(LAMA_TINY, seed=i).to(device) for i in range(k)]
    image, mask = sample(size, device)

    def run(n: int) -> None:
        if mode == "joint":
            joint_steps(members, image, mask, n)
        else:
            protect_iterative(members, image, mask, IterativeConfig(steps=n, ensemble=mode),
                              generator=torch.Generator(device=device).manual_seed(0))

    def timed(n: int) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(n)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    with torch.no_grad():
        members[0](image, mask)  # first-call costs (kernel selection) before the baseline
    base = timed(0)  # prepare and the final evaluation only: forward passes, no graph
    if device.startswith("cuda"):
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = rss_mb()
    total = timed(steps)
    if device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = peak_rss_mb() - before
    again = [timed(0) for _ in range(2)]
    per_step = (total - statistics.median([base, *again])) / steps
    return {"seconds_per_step": per_step, "peak_mb": peak}


def quality(sources: list[str], steps: int, count: int, device: str) -> None:
    """Mean mode, S steps, against random mode, K x S steps: attack gain on each member, and seconds per image."""
    from trainer.data.images import FixedCropDataset, sample_images

    members = [load_inpainter(s, device=device) for s in sources]
    data = FixedCropDataset(sample_images("val"), size=256, masks_per_image=2, seed=0)
    items = [data[i] for i in range(min(count, len(data)))]
    print("| mode | steps | seconds / image | " + " | ".join(f"attack gain on {s}" for s in sources) + " |")
    print("|---|---|---|" + "---|" * len(sources))
    for mode, n in (("mean", steps), ("random", steps * len(members))):
        gains, seconds = [[] for _ in members], 0.0
        for item in items:
            image = (torch.round(item["image"] * 255) / 255)[None].to(device)
            mask = item["mask"][None].to(device)
            task = prepare_ensemble_task(members, image, mask)
            start = time.perf_counter()
            result = protect_iterative(members, image, mask, IterativeConfig(steps=n, ensemble=mode),
                                       generator=torch.Generator(device=device).manual_seed(0), task=task)
            seconds += time.perf_counter() - start
            with torch.no_grad():
                for i in range(len(members)):
                    clean = ensemble_losses(members, image, task, members=[i])["attack"]
                    after = ensemble_losses(members, result.protected, task, members=[i])["attack"]
                    gains[i].append(float((clean - after).mean()))
        cells = " | ".join(f"{statistics.fmean(g):.4f}" for g in gains)
        print(f"| {mode} | {n} | {seconds / len(items):.1f} | {cells} |", flush=True)


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting (quality: the mean mode's)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                        help="the ensemble settings timed (mode and members)")
    parser.add_argument("--one", choices=list(SETTINGS), help=argparse.SUPPRESS)  # a child process's setting
    parser.add_argument("--quality", action="store_true", help="mean vs random mode at equal inpainter passes")
    parser.add_argument("--inpainters", default="lama-tiny", help="--quality: comma list of trained inpainters")
    parser.add_argument("--samples", type=int, default=4, help="--quality: held-out samples")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one, args.size, args.steps, args.device)))
        return
    if args.quality:
        quality(args.inpainters.split(","), args.steps, args.samples, args.device)
        return
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.device}, {args.size}x{args.size}, "
          f"lama-tiny architecture, {args.steps} timed steps per setting")
    print("| setting | members | inpainter passes per step | s / step | peak memory over the level before (MB) |")
    print("|---|---|---|---|---|")
    for setting in args.settings:
        mode, k = SETTINGS[setting]
        child = [sys.executable, __file__, "--one", setting, "--size", str(args.size), "--steps", str(args.steps),
                 "--threads", str(args.threads), "--device", args.device]
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        m = json.loads(done.stdout.strip().splitlines()[-1])
        passes = 1 if mode == "random" else k
        print(f"| {setting} | {k} | {passes} | {m['seconds_per_step']:.3f} | {m['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
