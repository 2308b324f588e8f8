"""A uniform weight average ("soup") of generators that share one architecture, e.g. a run's snapshots.

    python scripts/average_generators.py runs/s37/step-1000.safetensors runs/s37/step-1100.safetensors ... \
        -o runs/s38/soup.safetensors

Floating-point tensors are averaged; every other tensor (and the architecture) must be the same in all of them.
The frozen copies of the inpainter's layers that an encoder-gradient head carries are equal across one run's
snapshots, so they come out unchanged. Score the result like any generator (``benchmarks/amortisation.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from generator.checkpoint import CheckpointError, load, save
from generator.protector import KIND


def average(paths: list[str | Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The mean of the generators at ``paths`` and the first one's metadata; refuses generators that differ in
    architecture, keys, shapes or any non-float tensor."""
    states, metas = zip(*(load(p, KIND) for p in paths))
    first, meta = states[0], metas[0]
    for path, state, other in zip(paths[1:], states[1:], metas[1:]):
        if other["config"] != meta["config"] or state.keys() != first.keys():
            raise CheckpointError(f"'{path}' is another architecture than '{paths[0]}'")
        for key, tensor in state.items():
            if tensor.shape != first[key].shape or (not tensor.is_floating_point()
                                                    and not torch.equal(tensor, first[key])):
                raise CheckpointError(f"'{path}': tensor {key} differs from '{paths[0]}' where it cannot be averaged")
    mean = {key: torch.stack([s[key] for s in states]).mean(0) if first[key].is_floating_point() else first[key]
            for key in first}
    return mean, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generators", nargs="+", help="generator files (.safetensors) of one architecture")
    parser.add_argument("-o", "--out", required=True, help="the averaged generator (.safetensors)")
    args = parser.parse_args(argv)
    if len(args.generators) < 2:
        parser.error("give at least two generators to average")
    if Path(args.out).resolve() in {Path(g).resolve() for g in args.generators}:
        parser.error(f"output '{args.out}' is one of the inputs; choose another path")
    try:
        state, meta = average(args.generators)
    except (OSError, ValueError) as err:  # CheckpointError is a ValueError
        print(f"average_generators.py: error: {err}", file=sys.stderr)
        return 2
    notes = {k: str(v) for k, v in meta.items() if k not in ("format", "kind", "config")}
    notes["source"] = "uniform weight average of " + ", ".join(Path(g).name for g in args.generators)
    save(state, args.out, KIND, meta["config"], **notes)
    print(f"averaged {len(args.generators)} generators into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
