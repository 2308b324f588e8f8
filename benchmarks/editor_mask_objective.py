"""Whether the optimiser protects against the editor's own mask when it is optimised over a few masks.

    python benchmarks/editor_mask_objective.py [--splits val] [--generator generator-lama-tiny] [--threads N]

The paper's objective covers the protected mask m and its 17 x 17 dilation; ``--editor-masks`` of
``amortisation.py`` shows how little of the optimiser's gain survives when the editor inpaints a mask 4 px
tighter, 4 or 16 px looser or 8 px off. Here the same 20 Adam steps minimise the mean of the paper's total over
a family of masks, m and three others near it (``FAMILY``), none of which is one of the editor's masks it is
scored on; each member of the family is one task of the ensemble objective (``trainer.objective.ensemble``),
with its own dilation, ring and clean ring edit. It prints each method's share of the paper's optimiser's gain
under the protected mask and what survives each editor's mask. Samples and cached references as in
``amortisation.py``.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from amortisation import add_sample_arguments, editor_mask_table, load_protectors, split_samples
from generator.masks import dilate, erode
from trainer.evaluation.editor_masks import EDITOR_MASKS, shift
from trainer.evaluation.scoring import generator_method, run_method
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.ensemble import EnsembleTask
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.losses import prepare_task

# the masks optimised over besides m: 2 px tighter, 6 px looser, 4 px off (the editor's masks are 4 px tighter,
# 4 and 16 px looser and 8 px off: none is in the family)
FAMILY = {"2 px tighter": partial(erode, size=5), "6 px looser": partial(dilate, size=13),
          "4 px off": partial(shift, pixels=4)}


def family_optimiser(inpainter, steps: int = 20, seed: int = 0):
    """The paper's optimiser on the mean of the total over m and each ``FAMILY`` mask of it."""
    def protect(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tasks = [prepare_task(inpainter, image, m) for m in [mask, *(f(mask) for f in FAMILY.values())]]
        gen = torch.Generator(device=image.device).manual_seed(seed)
        return protect_iterative([inpainter] * len(tasks), image, mask, IterativeConfig(steps=steps), generator=gen,
                                 task=EnsembleTask(tasks)).protected
    return protect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", default=["val"])
    parser.add_argument("--generator", action="append", default=[], help="also score these generators")
    add_sample_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inpainter = load_inpainter(args.inpainter)
    protectors = load_protectors(parser, args.generator)
    for split in args.splits:
        images, masks, runs = split_samples(parser, args, inpainter, split)
        runs += [run_method(name, generator_method(p), images, masks, batch_size=1) for name, p in protectors.items()]
        label = f"optimiser over m, {', '.join(FAMILY)} (20 steps)"
        runs.append(run_method(label, family_optimiser(inpainter), images, masks, batch_size=1))
        print(f"## {split}: {len(images)} samples; optimiser over m and its masks {runs[-1].seconds_per_image:.1f} "
              "s / image\n")
        print(editor_mask_table(inpainter, images, masks, runs, list(EDITOR_MASKS)), flush=True)


if __name__ == "__main__":
    main()
