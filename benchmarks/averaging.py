"""Does averaging a generator's answer, over mirrored inputs or over several generators, raise its share?

    python benchmarks/averaging.py [--generator generator-lama-tiny --generator FILE ...] [--splits val]
        [--scale 1 2 100]

Test-time averaging is the cheap fix for a model whose errors are noise: if the one-pass
generator's error in the direction of its noise differed from input to input at random,
the mean of several of its answers would sit closer to the optimiser's. On ``amortisation.py``'s
samples (its cached optimiser references; 8-bit within the bound) this scores, as a share of
the 20-step optimiser's attack gain:

- each generator alone, and the first one run on the left-right mirrored input (its noise
  mirrored back): LaMa's layers are not mirror-symmetric, so this is another answer, not the same;
- the mean of the first generator's pre-tanh output on the input and on the mirrored input,
  and the mean of their noises (``eps * tanh`` of each);
- the mean of every generator's pre-tanh output (with two or more), with and without the mirrors;
- ``--scale``: the first generator's pre-tanh output times s (s > 1 pushes its noise towards the
  corners of the bound; its direction stays), which asks whether its noise is too weak, not
  wrongly aimed.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence

import torch

from amortisation import OPTIMISER, add_sample_arguments, load_protectors, split_samples
from generator.cli_parser import ArgumentParser
from generator.messages import counted
from generator.target import target_colour
from generator.unet import NoiseUNet
from trainer.commands.cli import run_guarded
from trainer.evaluation.scoring import run_method, score_runs
from trainer.evaluation.tables import markdown
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.metrics import share_of_gain

Tensor = torch.Tensor
Member = tuple[NoiseUNet, bool]  # a generator, and whether it reads the mirrored input


def raw_output(net: NoiseUNet, image: Tensor, mask: Tensor, mirrored: bool) -> Tensor:
    """The generator's pre-tanh output for ``image``; with ``mirrored``, computed on the mirrored input and
    mirrored back."""
    target = target_colour(image)
    if mirrored:
        image, mask = image.flip(-1), mask.flip(-1)
    raw = net.noise_and_raw(image, (mask > 0).to(image.dtype), target)[1]
    return raw.flip(-1) if mirrored else raw


def averaged(members: Sequence[Member], of: str = "raw", scale: float = 1.0) -> Callable[[Tensor, Tensor], Tensor]:
    """A protect method: the members' mean pre-tanh output (``of="raw"``) or mean noise (``of="noise"``)."""
    first = members[0][0]

    @torch.no_grad()
    def protect(image: Tensor, mask: Tensor) -> Tensor:
        raws = [raw_output(net, image, mask, mirrored) for net, mirrored in members]
        if of == "raw":
            noise = first.bounded(scale * torch.stack(raws).mean(0), mask)
        else:
            noise = torch.stack([net.bounded(scale * raw, mask) for (net, _), raw in zip(members, raws)]).mean(0)
        return (image + noise).clamp(0, 1)
    return protect


def methods(nets: dict[str, NoiseUNet], scales: Sequence[float]) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    """Every averaging this benchmark scores, by name."""
    (first_name, first), *_ = nets.items()
    out = {name: averaged([(net, False)]) for name, net in nets.items()}
    out[f"{first_name}, mirrored input"] = averaged([(first, True)])
    out[f"{first_name} + mirrored: mean pre-tanh"] = averaged([(first, False), (first, True)])
    out[f"{first_name} + mirrored: mean noise"] = averaged([(first, False), (first, True)], of="noise")
    if len(nets) > 1:
        out["all generators: mean pre-tanh"] = averaged([(net, False) for net in nets.values()])
        out["all generators + mirrored: mean pre-tanh"] = averaged(
            [(net, mirrored) for net in nets.values() for mirrored in (False, True)])
    for s in scales:
        if s != 1:
            out[f"{first_name}, pre-tanh x {s:g}"] = averaged([(first, False)], scale=s)
    return out


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", action="append", default=None,
                        help="shipped name or file; repeatable (default: generator-lama-tiny)")
    parser.add_argument("--splits", nargs="+", default=["val"], help="choices are made on val: keep test for last")
    parser.add_argument("--scale", type=float, nargs="*", default=[], help="also the first generator's pre-tanh x s")
    add_sample_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inpainter = load_inpainter(args.inpainter)
    protectors = load_protectors(parser, args.generator or ["generator-lama-tiny"])
    nets = {label: p.net.eval() for label, p in protectors.items()}
    for split in args.splits:
        images, masks, runs = split_samples(parser, args, inpainter, split)
        runs += [run_method(name, m, images, masks, batch_size=1) for name, m in methods(nets, args.scale).items()]
        metrics = score_runs(inpainter, images, masks, runs, batch_size=4)
        reference = metrics[OPTIMISER]["attack_gain"]
        rows = [[r.name, f"{share_of_gain(metrics[r.name]['attack_gain'], reference):.3f}",
                 f"{metrics[r.name]['hide_psnr'].mean():.2f}", f"{metrics[r.name]['noise_psnr'].mean():.2f}",
                 f"{r.seconds_per_image:.3f}" if math.isfinite(r.seconds_per_image) else "-"]  # cached: untimed
                for r in runs if r.name != "none"]
        print(f"## {split}: {counted(len(images), 'sample')} ({args.size} px) against {args.inpainter}\n")
        print(markdown(["method", "share of the optimiser's gain", "hide PSNR (dB)", "noise PSNR (dB)",
                        "s / image"], rows), flush=True)


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
