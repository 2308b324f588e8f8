"""The transfer experiment of ``paintguard compare``: saved protected images scored against several inpainters.

A protected photo is edited with whatever inpainter the editor has. With ``targets``
in the compare config, every method's saved images (made against the attacked
inpainter, or against an ensemble) are scored against each target, and the 20-step
optimiser is also run white-box against each target, for two reasons: its gain on a
target is what "as strong as possible on that target" means, the denominator of the
share of gain, and its own images are the optimiser's rows of the matrix (made
against one target, scored on the others).

The result is a transfer matrix: rows are what the noise was made against (method and
inpainters), columns the target that scores it; cells hold the mean attack gain (the
drop of the attack loss from no noise, on that target) and its share of the white-box
optimiser's gain on that target. A cell is *held out* when the target is none of the
inpainters the noise was made against: the true transfer (or, for an ensemble trained
on all but one inpainter, its leave-one-out score).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from generator.messages import counted
from trainer.evaluation.comparison import InpainterPool
from trainer.evaluation.scoring import MethodRun, iterative_method, run_method, score_runs
from trainer.objective.iterative import IterativeConfig
from trainer.objective.metrics import share_of_gain

Tensor = torch.Tensor


@dataclass
class TransferRow:
    """One row of the matrix: a run's name (unique), its method's display name, what its noise was made against."""

    name: str
    method: str
    against: list[str]

    @property
    def label(self) -> str:
        """The method and, unless its name already says it, what it was made against."""
        return self.method if not self.against or "[" in self.method else f"{self.method} [{'+'.join(self.against)}]"


@dataclass
class TransferResult:
    targets: list[str]
    rows: list[TransferRow]
    scores: dict[str, dict[str, dict[str, Tensor]]]  # target -> run name -> metric -> per image (N,)
    reference: dict[str, str]  # target -> the run name of the white-box optimiser against it
    reference_label: str  # the white-box optimiser's method name, e.g. "optimiser (20 steps)"
    held_out: dict[tuple[str, str], bool]  # (run name, target) -> the target is none of what the noise was made against

    def gain(self, row: TransferRow, target: str) -> Tensor:
        return self.scores[target][row.name]["attack_gain"]

    def share(self, row: TransferRow, target: str) -> float:
        """The row's mean gain on ``target`` as a fraction of the white-box optimiser's mean gain there."""
        return share_of_gain(self.gain(row, target), self.scores[target][self.reference[target]]["attack_gain"])


def whitebox_name(reference: str, target: str) -> str:
    return f"{reference} [{target}]"


def run_transfer(targets: Sequence[str], pool: InpainterPool, source: str, runs: Sequence[MethodRun],
                 against: dict[str, list[str]], reference: str | None, images: Sequence[Tensor],
                 masks: Sequence[Tensor], steps: int = 20, seed: int = 0, batch_size: int = 1, eps: float = 0.025,
                 device: str | torch.device = "cpu", log: Callable[[str], None] | None = None) -> TransferResult:
    """Run the white-box optimiser against every target it has not run against yet, then score every run on each.

    ``runs`` are the compare methods' runs against ``source`` (``against``: run name ->
    the sources its noise was made against); ``reference`` is the name of their
    optimiser run (``steps`` steps, seed ``seed``), which serves as the white-box run of
    any target that is ``source`` itself (by name or by weights). ``log`` gets a progress line per stage.
    """
    log = log or (lambda message: None)
    rows = [TransferRow(run.name, run.name, list(against.get(run.name, []))) for run in runs]
    label = reference or f"optimiser ({counted(steps, 'step')})"
    whitebox: dict[str, str] = {}
    extra_runs: list[MethodRun] = []
    extra_rows: list[TransferRow] = []
    for target in targets:
        if reference is not None and pool.same(target, source):
            whitebox[target] = reference
            continue
        name = whitebox_name(label, target)
        log(f"== white-box optimiser against {target}: {counted(len(images), 'sample')} ==")
        method = iterative_method(pool(target), IterativeConfig(steps=steps), seed=seed)
        extra_runs.append(run_method(name, method, images, masks, batch_size, 1, eps, device, warmup=False))
        extra_rows.append(TransferRow(name, label, [target]))
        whitebox[target] = name
    # the white-box rows right after the attacked inpainter's own optimiser row (or after "none")
    names = [r.name for r in rows]
    at = names.index(reference) + 1 if reference in names else int("none" in names)
    rows[at:at] = extra_rows
    everything = [*runs, *extra_runs]
    scores = {}
    for target in targets:
        log(f"== scoring {len(everything)} runs against {target} ==")
        scores[target] = score_runs(pool(target), images, masks, everything, None, batch_size, seed, device)
    held_out = {(row.name, t): bool(row.against) and not any(pool.same(a, t) for a in row.against)
                for row in rows for t in targets}
    return TransferResult(list(targets), rows, scores, whitebox, label, held_out)


def transfer_records(result: TransferResult) -> list[dict[str, float | str | bool]]:
    """One record per (row, target): mean metrics, share of the white-box gain, and whether the target was held out."""
    records = []
    for row in result.rows:
        for target in result.targets:
            metrics = result.scores[target][row.name]
            records.append({
                "method": row.method, "made_against": "+".join(row.against), "target": target,
                "held_out": result.held_out[(row.name, target)],
                "attack_gain": float(metrics["attack_gain"].mean()),
                "share_of_whitebox_gain": result.share(row, target),
                "attack_psnr": float(metrics["attack_psnr"].mean()),
                "success": float(metrics["success"].float().mean()),
                "hide_psnr": float(metrics["hide_psnr"].mean()),
            })
    return records
