"""What each term of the paper's loss costs the attack: one FGSM step under each weighting, on the same samples.

    python benchmarks/fgsm_weights.py [--splits val test] [--threads N]

The share the amortisation issue counts is the attack loss's drop, but the generator and the optimiser both
minimise attack + incp + 2 hide. One signed gradient step (``trainer.objective.fgsm``) of the attack term alone,
of attack + incp, of attack + 2 hide and of the paper's total shows how far the other terms pull the first
step's direction away from the attack (the paper's total is the reference row every amortisation table shares,
"FGSM (1 step)"): each row prints its share of the 20-step optimiser's attack gain and the
incp and hide PSNR it leaves. Samples and cached references as in ``amortisation.py``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from amortisation import OPTIMISER, add_sample_arguments, split_samples
from generator.cli_parser import ArgumentParser
from generator.messages import counted
from trainer.commands.cli import run_guarded
from trainer.evaluation.scoring import run_method, score_runs
from trainer.evaluation.tables import markdown
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.fgsm import protect_fgsm
from trainer.objective.losses import LossWeights
from trainer.objective.metrics import share_of_gain

# the paper's weighting is the shared reference row "FGSM (1 step)" (amortisation.py's cache): not run twice
PAPERS = "FGSM (1 step): attack + incp + 2 hide, the paper's"
WEIGHTINGS = {
    "attack + incp": LossWeights(hide=0),
    "attack + 2 hide": LossWeights(incp=0),
    "attack alone": LossWeights(incp=0, hide=0),
}


def fgsm_step(inpainter, weights: LossWeights):
    return lambda image, mask: protect_fgsm(inpainter, image, mask, 0.025, weights)


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    add_sample_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inpainter = load_inpainter(args.inpainter)
    for split in args.splits:
        images, masks, runs = split_samples(parser, args, inpainter, split)
        runs += [run_method(f"FGSM, {name}", fgsm_step(inpainter, w), images, masks, batch_size=1)
                 for name, w in WEIGHTINGS.items()]
        metrics = score_runs(inpainter, images, masks, runs, batch_size=4)
        reference = metrics[OPTIMISER]["attack_gain"]
        rows = [[PAPERS if r.name == "FGSM (1 step)" else r.name,
                 f"{share_of_gain(metrics[r.name]['attack_gain'], reference):.3f}",
                 f"{metrics[r.name]['incp_psnr'].mean():.2f}", f"{metrics[r.name]['hide_psnr'].mean():.2f}"]
                for r in runs]
        print(f"## {split}: {counted(len(images), 'sample')}\n")
        print(markdown(["method", "share of the optimiser's attack gain", "incp PSNR (dB)", "hide PSNR (dB)"], rows),
              flush=True)


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
