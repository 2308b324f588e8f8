"""How much of the optimiser's gain a generator could keep if it knew the inpainter's inner gradient coarsely.

    python benchmarks/stem_bounds.py [--split val] [--pool 4 8] [--layers 1 2 3] [--heads "one field" ...]
                                     [--deep-heads 2 3] [--head-ranks 0.5 0.25]

A one-pass generator cannot compute the inpainter's input gradient g, but it can carry
the inpainter's first layers and run them backwards exactly (generator/stem_head.py),
so that it only has to predict the gradient at layer k, which is smoother than g. This
measures the ceiling of that idea: the true gradient at the output of lama-tiny's layer
k is averaged over s x s blocks (what a coarse prediction could know), sent back
through the exact layers 1..k, and the signed step ``-eps * sign(.)`` is scored like
every method of benchmarks/amortisation.py (same samples, 8-bit, share of the 20-step
optimiser's gain; k = 1, s = 1 is FGSM). Then the same for the heads a generator can
afford, at layer 1: two exact stems (the attack's and the incp term's inputs), one gate
shared by both fields, one field, and no gate at all. ``--deep-heads k``: the one-field head
carrying layers 1..k instead of the stem alone (the field at layer k's resolution). ``--head-ranks r``: the
four-layer head with layers 2..4 kept at that share of their rank (``model.head_rank``), fed the same true field.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from amortisation import OPTIMISER, reference_path, reference_runs, samples
from generator.cli_parser import ArgumentParser, positive_int
from generator.encoder_head import EncoderGradientHead, lama_encoder_widths
from generator.messages import counted
from generator.stem_head import StemGradientHead
from trainer.commands.cli import run_guarded
from trainer.evaluation.scoring import run_method, score_runs
from trainer.inpainting.inpainter import Inpainter, load_inpainter
from trainer.objective import fgsm
from trainer.objective.losses import prepare_task
from trainer.objective.metrics import share_of_gain

Tensor = torch.Tensor
HEADS = ("two stems", "shared gate", "one field", "one field, incp outside E(m)", "no gate")


def pooled(grad: Tensor, s: int) -> Tensor:
    """The gradient averaged over s x s blocks and brought back to full size (bilinear)."""
    if s == 1:
        return grad
    return F.interpolate(F.avg_pool2d(grad, s, s, ceil_mode=True), size=grad.shape[-2:], mode="bilinear",
                         align_corners=False)


def layer_gradient(inpainter: Inpainter, image: Tensor, mask: Tensor, k: int):
    """The task, the image (requiring grad), layer k's outputs and the total loss's gradient at them."""
    task = prepare_task(inpainter, image, mask)
    x, out, _, grad = fgsm.layer_gradient(inpainter, task, k)
    return task, x, out, grad


def back(out: list[Tensor], x: Tensor, field: Tensor) -> Tensor:
    """``field`` (both parts of layer k's output along channels) sent back to the image through layers 1..k."""
    parts = field.split([t.shape[1] for t in out], dim=1)
    (g,) = torch.autograd.grad(out, x, grad_outputs=list(parts), retain_graph=True)
    return g


def layer_method(inpainter: Inpainter, k: int, s: int, eps: float = 0.025) -> Callable[[Tensor, Tensor], Tensor]:
    def protect(image: Tensor, mask: Tensor) -> Tensor:
        _, x, out, grad = layer_gradient(inpainter, image, mask, k)
        g = back(out, x, pooled(grad, s))
        return (image - eps * torch.sign(g)).clamp(0, 1)
    return protect


def head_method(inpainter: Inpainter, head: str, s: int, eps: float = 0.025) -> Callable[[Tensor, Tensor], Tensor]:
    layers = inpainter.encoder_layers(1)
    stem = StemGradientHead(layers[0][0].shape[0], layers[0][0].shape[-1])
    stem.copy_layers(layers)
    if head == "no gate":  # the stem's transpose with every unit open
        stem.shift.fill_(1e9)

    def protect(image: Tensor, mask: Tensor) -> Tensor:
        task, _, _, grad = layer_gradient(inpainter, image, mask, 1)
        b = image.shape[0]
        attack, incp = -pooled(grad[:b], s), -pooled(grad[b:2 * b], s)
        if head == "two stems":  # each stem masks its own edit's hole
            raw = stem(attack, image, task.mask) + stem(incp, image, task.dilated)
        elif head == "shared gate":  # the attack's gate for both fields, each masked as its own term
            raw = stem(attack, image, task.mask) + stem(incp, image, task.mask) * (1 - task.dilated)
        elif head == "one field":  # what generator/stem_head.py computes
            raw = stem(attack + incp, image, task.mask)
        elif head == "one field, incp outside E(m)":  # the same head; the field a generator is free to learn
            # the incp edit never sees the ring's pixels, so its field there only misleads the attack's gate
            raw = stem(attack + incp * (1 - task.dilated), image, task.mask)
        else:  # as two stems, but the open stem gates nothing
            raw = stem(attack, image, task.mask) + stem(incp, image, task.dilated)
        return (image + eps * torch.sign(raw)).clamp(0, 1)
    return protect


def deep_head_method(inpainter: Inpainter, k: int, s: int, eps: float = 0.025) -> Callable[[Tensor, Tensor], Tensor]:
    """A one-field head that carries layers 1..k: the attack's and the incp term's true gradient at layer k (the
    latter outside E(m) only, as the one-field stem head), pooled, sent back through the attack's layers alone."""
    def protect(image: Tensor, mask: Tensor) -> Tensor:
        task, x, out, grad = layer_gradient(inpainter, image, mask, k)
        field = pooled(fgsm.head_field(grad, task), s)
        g = back(out, x, torch.cat([field, torch.zeros_like(grad[image.shape[0]:])]))
        return (image - eps * torch.sign(g)).clamp(0, 1)
    return protect


def low_rank_head_method(inpainter: Inpainter, rank: float, s: int, eps: float = 0.025
                         ) -> Callable[[Tensor, Tensor], Tensor]:
    """The four-layer head at ``rank`` (generator/encoder_head.py) fed lama-tiny's true field at layer 4, pooled: what
    a generator with that head keeps at best for a field known to s x s blocks of layer 4."""
    layers = inpainter.encoder_layers(4)
    head = EncoderGradientHead(lama_encoder_widths(layers[0][0].shape[0], 4), layers[0][0].shape[-1], rank=rank)
    head.copy_layers(layers)

    def protect(image: Tensor, mask: Tensor) -> Tensor:
        task, _, _, grad = layer_gradient(inpainter, image, mask, 4)
        raw = head(-pooled(fgsm.head_field(grad, task), s), image, task.mask)
        return (image + eps * torch.sign(raw)).clamp(0, 1)
    return protect


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val")
    parser.add_argument("--inpainter", default="lama-tiny")
    parser.add_argument("--layers", type=int, nargs="*", default=[1, 2, 3],
                        help="the layers k whose true gradient is averaged (1: the stem)")
    parser.add_argument("--pool", type=int, nargs="+", default=[4, 8], help="the block sides s it is averaged over")
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS, help="the heads at layer 1 scored")
    parser.add_argument("--deep-heads", type=int, nargs="*", default=[],
                        help="layers k for a one-field head that carries layers 1..k (the attack's gates only)")
    parser.add_argument("--head-ranks", type=float, nargs="*", default=[],
                        help="shares of layers 2..4's rank for a four-layer head fed the true field (1: exact)")
    parser.add_argument("--photos-per-split", type=positive_int, default=11, help="first N photos of each split")
    parser.add_argument("--masks-per-image", type=positive_int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--reference-dir", default="runs/amortisation-reference")
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inpainter = load_inpainter(args.inpainter)
    images, masks = samples(args.split, args.photos_per_split, args.masks_per_image, args.size, 0)
    cache = reference_path(args.reference_dir, inpainter, args.split, args.photos_per_split, args.masks_per_image,
                           args.size, 0)
    runs = reference_runs(inpainter, images, masks, cache)
    methods = {f"layer {k}, gradient pooled {s}x{s}": layer_method(inpainter, k, s)
               for k in args.layers for s in args.pool}
    methods.update({f"head: {h}, pooled {s}x{s}": head_method(inpainter, h, s) for h in args.heads for s in args.pool})
    methods.update({f"head carrying layers 1..{k}: one field, incp outside E(m), pooled {s}x{s}":
                    deep_head_method(inpainter, k, s) for k in args.deep_heads for s in args.pool})
    methods.update({f"head carrying layers 1..4 at rank {r:g}: one field, incp outside E(m), pooled {s}x{s}":
                    low_rank_head_method(inpainter, r, s) for r in args.head_ranks for s in args.pool})
    runs += [run_method(name, m, images, masks, batch_size=4, warmup=False) for name, m in methods.items()]
    metrics = score_runs(inpainter, images, masks, runs, batch_size=4)
    reference = metrics[OPTIMISER]["attack_gain"]
    print(f"{args.split}: {counted(len(images), 'sample')}, {args.size} px, against {args.inpainter}\n")
    print("| method | share of the optimiser's gain | hide PSNR (dB) |\n|---|---:|---:|")
    for run in runs:
        m = metrics[run.name]
        print(f"| {run.name} | {share_of_gain(m['attack_gain'], reference):.3f} | {m['hide_psnr'].mean():.2f} |")


if __name__ == "__main__":
    sys.exit(run_guarded(main))  # a bad option or file: one line and exit code 2
