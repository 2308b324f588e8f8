"""Can a generator match the optimiser on the very samples it trains on? Capacity, apart from data and time.

    python benchmarks/memorisation.py [--generator generator-lama-tiny] [--split train] [--samples 8]
        [--batch N] [--steps 300] [--every 25] [--lr 1e-4] [--free-field-steps 100]
        [--held-out-seed 1] [--held-out-split val]

Fine-tunes a copy of the generator end to end (the paper's total loss through the frozen
inpainter, 8-bit straight-through rounding, as stage 3 of the recipe) on exactly the first
N samples of a split (``amortisation.py``'s centre crops and seeded masks), all in one
batch or in shuffled batches of ``--batch`` (stage 3 trains at 4), and prints its share of
the 20-step optimiser's attack gain on those same samples every few steps (rounded to 8
bits within the bound, as saved).

Held-out, the generator stays near 0.70 whatever it is given (model card). If it cannot
fit a handful of fixed samples either, its function class is what limits it; if it fits
them well past 0.70, the limit is data and training time, which a GPU would buy.

With ``--free-field-steps`` (encoder-gradient generators only) it first optimises the
head's field itself, one free tensor per sample at the field's resolution, from the
generator's own field: the share the head can deliver on these samples at all, so the
ceiling that the network in front of it is measured against. ``--interpolate A ...`` then scores
the fields part of the way from the generator's to the optimised one (0: the generator, 1: the
optimised field) and prints their cosine: how much of that difference a network has to learn
for a given share.

``--held-out-seed S`` and ``--held-out-split SPLIT`` also score the fitted generator, at every
report, on samples it is not fitted to: the same photos with the masks of seed ``S``, and the
first samples of another split. Whether a fit transfers, to other masks on the same photos or
to other photos, tells a correction the network can learn from data from one it can only
memorise.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from amortisation import OPTIMISER, add_sample_arguments, split_samples
from generator.cli_parser import ArgumentParser
from generator.messages import counted
from generator.protector import load_generator
from generator.unet import NoiseUNet
from trainer.commands.cli import run_guarded
from trainer.evaluation.scoring import as_saved
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.field_steps import FIELD_LR, field_steps, has_field, stepped_field
from trainer.objective.losses import ProtectionTask, prepare_task, protection_losses, select_task
from trainer.objective.metrics import share_of_gain
from trainer.objective.transforms import round_to_8bit

Tensor = torch.Tensor


def attack_loss(inpainter, protected: Tensor, task: ProtectionTask) -> Tensor:
    """Per-sample attack loss of images as they were saved."""
    with torch.no_grad():
        return protection_losses(inpainter, protected, task)["attack"]


class Scorer:
    """Share of the optimiser's attack gain on fixed samples, for noise rounded as a saved PNG would be."""

    def __init__(self, inpainter, task: ProtectionTask, optimised: Tensor, eps: float) -> None:
        self.inpainter, self.task, self.eps = inpainter, task, eps
        self.clean = attack_loss(inpainter, task.image, task)
        self.reference = self.clean - attack_loss(inpainter, optimised, task)

    def share(self, noise: Tensor) -> float:
        image = self.task.image
        saved = as_saved((image + noise.detach()).clamp(0, 1), image, self.eps)
        return share_of_gain(self.clean - attack_loss(self.inpainter, saved, self.task), self.reference)


def total_loss(inpainter, noise: Tensor, task: ProtectionTask) -> Tensor:
    """The paper's total loss of the noise, rounded to 8 bits straight through."""
    protected = round_to_8bit((task.image + noise).clamp(0, 1))
    return protection_losses(inpainter, protected, task)["total"].mean()


def fit_free_field(net: NoiseUNet, inpainter, task: ProtectionTask, scorer: Scorer, steps: int, every: int,
                   lr: float, blank: int = 0) -> None:
    """Optimise the encoder head's field directly, from the generator's own, and print the share as it goes
    (``blank``: empty cells for the held-out columns, which a per-sample field has nothing to say about)."""
    began = time.perf_counter()

    def report(step: int, noise: Tensor) -> None:
        if step % every == 0 or step == steps:
            print(f"| free field | {step} | {scorer.share(noise):.3f} | {'- | ' * blank}"
                  f"{time.perf_counter() - began:.0f} |", flush=True)

    field_steps(net, inpainter, task.image, task.mask, steps, lr, task.target, callback=report)


def field_path(net: NoiseUNet, inpainter, task: ProtectionTask, scorer: Scorer, steps: int, lr: float,
               fractions: list[float]) -> None:
    """The share of the fields a fraction of the way from the generator's own to its ``steps``-step optimum."""
    head = net.target_encoder
    with torch.no_grad():
        encoding = head.encode(task.image, task.mask)
        start = net.field(task.image, task.mask, task.target, encoding)
    final, _ = stepped_field(net, inpainter, task.image, task.mask, steps, lr, task.target)
    cosine = F.cosine_similarity(start.flatten(1), final.flatten(1), dim=1)
    print(f"cosine of the generator's field to the {steps}-step one: mean {cosine.mean():.3f}, "
          f"min {cosine.min():.3f}, max {cosine.max():.3f}")
    print("| fraction of the way | share | cosine to the optimised field |\n|---:|---:|---:|")
    for fraction in fractions:
        field = start + fraction * (final - start)
        with torch.no_grad():
            noise = net.config.eps * torch.tanh(head(field, task.image, task.mask, encoding))
        to_final = F.cosine_similarity(field.flatten(1), final.flatten(1), dim=1).mean()
        print(f"| {fraction:g} | {scorer.share(noise):.3f} | {to_final:.3f} |", flush=True)


def fit_generator(net: NoiseUNet, inpainter, task: ProtectionTask, scorer: Scorer, steps: int, every: int,
                  lr: float, batch: int, held_out: Sequence[tuple[ProtectionTask, Scorer]] = ()) -> None:
    """Train the generator on the fixed samples (stage 3's loss and rate) and print the share as it goes, on them
    and on each ``held_out`` set it is not trained on."""
    net.train().requires_grad_(True)
    if net.target_blocks is not None:  # the target's own blocks stay frozen, as in training
        net.target_blocks.requires_grad_(False)
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    order = torch.cat([torch.randperm(len(task.image)) for _ in range(steps * batch // len(task.image) + 1)])
    began = time.perf_counter()
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            net.eval()
            with torch.no_grad():
                shares = [s.share(net(t.image, t.mask, t.target)) for t, s in [(task, scorer), *held_out]]
            print(f"| generator | {step} | {' | '.join(f'{v:.3f}' for v in shares)} | "
                  f"{time.perf_counter() - began:.0f} |", flush=True)
            net.train()
        if step == steps:
            break
        optimiser.zero_grad()
        part = select_task(task, order[step * batch:(step + 1) * batch])
        total_loss(inpainter, net(part.image, part.mask, part.target), part).backward()
        optimiser.step()


def fixed_samples(parser: argparse.ArgumentParser, args: argparse.Namespace, inpainter, split: str, seed: int,
                  count: int, eps: float, photos: int | None = None) -> tuple[ProtectionTask, Scorer]:
    """The first ``count`` samples of ``split`` with the masks of ``seed``, and their scorer against the optimiser
    (whose references are run, or read from the cache, for the first ``photos`` photos: default, every one asked)."""
    asked = {**vars(args), "seed": seed, "photos_per_split": photos or args.photos_per_split}
    images, masks, runs = split_samples(parser, argparse.Namespace(**asked), inpainter, split)
    n = min(count, len(images))
    optimised = next(r for r in runs if r.name == OPTIMISER).protected[:n]
    task = prepare_task(inpainter, torch.stack(images[:n]), torch.stack(masks[:n]))
    return task, Scorer(inpainter, task, torch.stack(optimised), eps)


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default="generator-lama-tiny", help="shipped name or .safetensors file")
    parser.add_argument("--split", default="train", help="the samples to fit (choices are made on val: not test)")
    parser.add_argument("--samples", type=int, default=8, help="the first N samples of the split")
    parser.add_argument("--batch", type=int, default=None, help="samples per generator step (default: all N)")
    parser.add_argument("--steps", type=int, default=300, help="generator steps on that batch")
    parser.add_argument("--every", type=int, default=25, help="score every N steps")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam's rate for the generator (stage 3's)")
    parser.add_argument("--free-field-steps", type=int, default=0, help="first optimise the head's field alone")
    parser.add_argument("--interpolate", type=float, nargs="*", default=[],
                        help="with --free-field-steps: score fields these fractions of the way to the optimised one")
    parser.add_argument("--field-lr", type=float, default=FIELD_LR,
                        help="Adam's rate, relative to each field's mean size")
    parser.add_argument("--held-out-seed", type=int, default=None,
                        help="also score the fit on the same photos with the masks of this seed")
    parser.add_argument("--held-out-split", default=None, help="also score the fit on this split's first samples")
    add_sample_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    inpainter = load_inpainter(args.inpainter)
    try:
        net = load_generator(args.generator)
    except ValueError as err:  # a CheckpointError: one line
        parser.error(str(err))
    if args.free_field_steps and not has_field(net):
        parser.error("--free-field-steps needs an encoder-gradient generator (head: stem-gradient, head_layers > 1)")
    task, scorer = fixed_samples(parser, args, inpainter, args.split, args.seed, args.samples, net.config.eps)
    n = len(task.image)
    held_out, columns = [], ["share"]
    if args.held_out_seed is not None:
        # only the fitted photos: the optimiser's references for new masks are run here, a minute a sample
        photos = -(-n // args.masks_per_image)
        held_out.append(fixed_samples(parser, args, inpainter, args.split, args.held_out_seed, n, net.config.eps,
                                      photos))
        columns.append(f"same photos, masks of seed {args.held_out_seed}")
    if args.held_out_split is not None:
        held_out.append(fixed_samples(parser, args, inpainter, args.held_out_split, args.seed, args.samples,
                                      net.config.eps))
        columns.append(f"{args.held_out_split} (not fitted)")
    print(f"{counted(n, 'sample')} of {args.split} ({args.size} px), {args.generator} against {args.inpainter}; "
          f"share of the 20-step optimiser's attack gain on these same samples, as saved")
    print(f"| fitted | step | {' | '.join(columns)} | seconds |\n|---|---:|{'---:|' * len(columns)}---:|", flush=True)
    if args.free_field_steps:
        fit_free_field(net, inpainter, task, scorer, args.free_field_steps, args.every, args.field_lr,
                       len(held_out))
    if args.interpolate:
        if not args.free_field_steps:
            parser.error("--interpolate needs --free-field-steps")
        field_path(net, inpainter, task, scorer, args.free_field_steps, args.field_lr, args.interpolate)
    fit_generator(copy.deepcopy(net), inpainter, task, scorer, args.steps, args.every, args.lr,
                  args.batch or n, held_out)


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
