"""What ``paintguard compare`` writes: report.md, per_image.csv, figures and an optional W&B run; with ``targets``,
the transfer matrix's tables, transfer_per_image.csv and its heat map."""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

import torch

from generator.messages import counted
from generator.precision import resolve_dtype
from generator.save import atomic_write
from trainer.evaluation.compare_config import CompareConfig
from trainer.evaluation.comparison import TRANSFER, Sample
from trainer.evaluation.scoring import MethodRun, MethodScore
from trainer.evaluation.tables import (
    ROBUSTNESS_METRICS,
    SAVED,
    condition_table,
    markdown,
    markdown_table,
    spread_table,
    summarise,
)
from trainer.evaluation.transfer import TransferResult
from trainer.inpainting.inpainter import Inpainter
from trainer.objective.metrics import SUCCESS_DB

Tensor = torch.Tensor
GRID_COLUMNS = ("original", "protected", "noise x20", "clean inpainting", "protected inpainting")



# --- outputs --------------------------------------------------------------------------------

def log_progress(message: str) -> None:
    """Progress goes to stderr: stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_per_image(path: Path, samples: list[Sample], runs: list[MethodRun], results: list[MethodScore]) -> None:
    """One row per (sample, method): seconds, every metric on the saved PNG, robustness metrics per condition."""
    keys = list(results[0].metrics)
    conditions = list(results[0].conditions)
    extra = [(c, k) for c in conditions for k in (*ROBUSTNESS_METRICS, "attack_gain")]
    header = ["sample", "method", "seconds", *keys, *(f"{c}/{k}" for c, k in extra)]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for run, r in zip(runs, results):
                for i, s in enumerate(samples):
                    values = [run.image_seconds[i], *(r.metrics[k][i] for k in keys),
                              *(r.conditions[c][k][i] for c, k in extra)]
                    writer.writerow([s.name, r.name, *(f"{float(v):.6g}" for v in values)])
    atomic_write(path, write)


def save_grid(path: Path, title: str, rows: list[list[Tensor]]) -> Path:
    """A figure with one row of (3,H,W) images per sample and the GRID_COLUMNS as titles."""
    from kornia.image import tensor_to_image
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, and the Agg canvas is used for PNG
    )

    fig = Figure(figsize=(2.2 * len(GRID_COLUMNS), 2.2 * len(rows) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), len(GRID_COLUMNS), squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            axes[r][c].imshow(tensor_to_image(image.clamp(0, 1)))
            axes[r][c].set_axis_off()
            if r == 0:
                axes[r][c].set_title(GRID_COLUMNS[c], fontsize=9)
    fig.suptitle(title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def save_speed_plot(path: Path, results: list[MethodScore]) -> Path:
    """Attack PSNR (mean, 95% t interval) against the time per image (log scale), one point per method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    for r in results:
        s = summarise(r.metrics["attack_psnr"])
        if r.name == "none":  # it takes no time: a level, not a point
            ax.axhline(s.mean, ls="--", color="black", lw=1, label="no protection")
            continue
        low, high = (s.mean - s.low, s.high - s.mean) if math.isfinite(s.low) else (0.0, 0.0)
        ax.errorbar([max(r.seconds_per_image, 1e-6)], [s.mean], yerr=[[low], [high]], fmt="o", capsize=3)
        ax.annotate(r.name, (max(r.seconds_per_image, 1e-6), s.mean), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    ax.axhline(SUCCESS_DB, ls=":", color="grey", lw=1, label=f"success threshold ({SUCCESS_DB:g} dB)")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image (median, warm)")
    ax.set_ylabel("attack PSNR to the target (dB)")
    ax.set_title("speed versus strength")
    ax.legend(fontsize=8)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


@torch.no_grad()
def save_figures(folder: Path, samples: list[Sample], runs: list[MethodRun], inpainter: Inpainter,
                 results: list[MethodScore], rows: int, device: torch.device) -> list[Path]:
    """A grid per method over the first ``rows`` samples, and the speed-versus-strength plot."""
    folder.mkdir(exist_ok=True)
    paths = []
    shown = samples[:rows]
    clean = [inpainter(s.image[None].to(device), s.mask[None].to(device))[0].cpu() for s in shown]
    for run in runs if shown else []:
        grid = []
        for s, fill, protected in zip(shown, clean, run.protected):
            attacked = inpainter(protected[None].to(device), s.mask[None].to(device))[0].cpu()
            noise = ((protected - s.image) * 20 + 0.5).clamp(0, 1)
            grid.append([s.image, protected, noise, fill, attacked])
        paths.append(save_grid(folder / f"grid-{slug(run.name)}.png", run.name, grid))
    paths.append(save_speed_plot(folder / "speed-vs-strength.png", results))
    return paths


def dtype_note(cfg: CompareConfig) -> str:
    """The networks' precision where the config sets one other than float32 (``auto``: what it chose here)."""
    chosen = str(resolve_dtype(cfg.dtype, cfg.device)).removeprefix("torch.")
    return "" if cfg.dtype == "float32" else f", networks in {chosen} (dtype `{cfg.dtype}`)"


def build_report(cfg: CompareConfig, config_path: str | Path, samples: list[Sample], results: list[MethodScore],
                 reference: str | None, transforms: list[str], figures: list[Path], out: Path,
                 transfer: list[str] = (), editor_masks: list[str] = ()) -> tuple[str, str]:
    """report.md, and its tables for stdout (main, robustness, editor's masks, transfer)."""
    masks = (f"seeded LaMa-style masks (seed {cfg.masks.seed}, {cfg.masks.per_image} per image) on "
             f"{cfg.masks.size} px centre crops" if cfg.masks.kind == "seeded"
             else f"mask files *{cfg.masks.suffix}*.png")
    ref = f"`{reference}`" if reference else "none (no optimiser in the config)"
    intro = [
        "# PaintGuard: protection methods compared",
        f"Config `{config_path}`: {counted(len(samples), 'sample')} from `{cfg.images}` with {masks}; inpainter attacked "
        f"`{cfg.inpainter}`; device `{cfg.device}`{dtype_note(cfg)}, torch {torch.__version__} with {torch.get_num_threads()} CPU "
        f"thread(s), batch size {cfg.batch_size}, {cfg.repeats} timed run(s) per batch.",
        "Every protected image is rounded to 8 bits within the bound (what a saved PNG holds) before it is scored. "
        "Values are means ± the half-width of a 95% Student-t interval over samples (wide for a few samples; the "
        "spread table's intervals stop at each metric's range). Attack PSNR: the inpainter's fill of the mask "
        "against the target colour, higher is stronger protection; "
        f"success: the samples where it reaches {SUCCESS_DB:g} dB. Incp PSNR: the same for the mask dilated by "
        "17 x 17 px. Hide PSNR: an edit of the ring around the mask (the dilation minus the mask) against the same "
        "edit of the unprotected image, higher keeps a benign edit as it was. Noise PSNR, SSIM and L_inf (the "
        "largest pixel change, on [0, 1]): the saved image against the original; higher PSNR and SSIM are less "
        "visible. Share of gain: the drop of the attack loss from no "
        f"noise, as a fraction of the reference's ({ref}); speed-up: the reference's time per image over the "
        "method's. Time per image: median of warm timed calls, after a warm-up call (none for no protection).",
    ]
    tables = [
        f"## Against {cfg.inpainter}",
        markdown_table(results, reference),
        "## Robustness: the saved image after a transformation",
        "The inpainter gets the transformed protected image; the gain is measured from the transformed unprotected "
        "image, and the share is of the reference's gain on the untouched PNG (how much of it survives).",
        condition_table(results, [SAVED, *transforms], reference),
    ]
    if editor_masks:
        tables += ["## The editor's mask: an edit of another mask than the protected one",
                   "The inpainter fills the editor's mask on the saved image (attack), its 17 x 17 dilation (incp) "
                   "and its ring (hide); the gain is measured from the unprotected image under the same mask, and the "
                   "share is of the reference's gain under the protected mask (how much survives a mask drawn "
                   "tighter, looser or off). `trainer/evaluation/editor_masks.py` defines each.",
                   condition_table(results, list(editor_masks), reference)]
    if cfg.transfer:
        tables += [f"## Transfer: the same saved images against {cfg.transfer}",
                   f"The same saved images against a second inpainter; the share is of the reference's gain on it. "
                   f"The optimisers' noise was made against {cfg.inpainter} alone, a generator's against what its "
                   "checkpoint records (`targets:` marks which cells are held out).",
                   condition_table(results, [TRANSFER], reference, relative_to=TRANSFER)]
    tables += list(transfer)
    rest = ["## Spread over samples", spread_table(results),
            "`per_image.csv` has a row per sample and method: `seconds` (its batch's time over the batch size), the "
            "metrics above, `attack_loss`, `hide_loss` and `total_loss` (total = attack + incp + 2 hide, each a mean "
            "squared error), `attack_gain` and `total_gain` (their drop from the unprotected image), and "
            "`condition/metric` under each transformation.",
            "## Figures",
            "\n".join(f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figures)]
    return "\n\n".join(intro + tables + rest) + "\n", "\n\n".join([intro[-1], *tables])  # what the columns mean


# --- the transfer matrix --------------------------------------------------------------------

def _fmt(value: float, spec: str) -> str:
    return "-" if not math.isfinite(value) else format(value, spec)


def transfer_sections(result: TransferResult) -> list[str]:
    """The transfer matrix (attack gain, share of the white-box gain) and its held-out cells, as report sections."""
    header = ["noise [made against]", *result.targets]

    def matrix(cell) -> str:
        return markdown(header, [[row.label, *(cell(row, t) for t in result.targets)] for row in result.rows])

    def bold_if_held_out(row, target, text: str) -> str:
        return f"**{text}**" if result.held_out[(row.name, target)] else text

    gain = matrix(lambda row, t: bold_if_held_out(row, t, f"{float(result.gain(row, t).mean()):.4f}"))
    share = matrix(lambda row, t: bold_if_held_out(row, t, _fmt(result.share(row, t), ".2f")))
    held = [[row.label, t, f"{float(result.gain(row, t).mean()):.4f}", _fmt(result.share(row, t), ".2f"),
             f"{float(result.scores[t][row.name]['success'].float().mean()):.0%}"]
            for row in result.rows for t in result.targets if result.held_out[(row.name, t)]]
    sections = [
        "## Transfer matrix",
        "Rows: what the noise was made against (the method, and in brackets the inpainters it was optimised or "
        "trained against); columns: the inpainter that scores the saved image. **Bold**: a target the noise was "
        "not made against (transfer; for an ensemble trained on all but one inpainter, the one left out).",
        "### Attack gain (drop of the attack loss from no noise, on the column's inpainter)",
        gain,
        f"### Share of the white-box optimiser's gain (the {result.reference_label} run against the column's "
        "inpainter)",
        share,
    ]
    if held:
        sections += ["### Held-out targets",
                     markdown(["noise [made against]", "held-out target", "attack gain", "share of white-box gain",
                               f"success @{SUCCESS_DB:g} dB"], held)]
    return sections


def write_transfer_csv(path: Path, samples: list[Sample], result: TransferResult) -> Path:
    """One row per (sample, matrix row, target): the metrics of that image on that target, and the white-box gain."""
    keys = ("attack_gain", "attack_psnr", "success", "hide_psnr")

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sample", "method", "made_against", "target", "held_out", *keys, "whitebox_attack_gain"])
            for row in result.rows:
                for target in result.targets:
                    metrics = result.scores[target][row.name]
                    whitebox = result.scores[target][result.reference[target]]["attack_gain"]
                    for i, s in enumerate(samples):
                        values = [float(metrics[k][i]) for k in keys] + [float(whitebox[i])]
                        writer.writerow([s.name, row.method, "+".join(row.against), target,
                                         int(result.held_out[(row.name, target)]), *(f"{v:.6g}" for v in values)])
    return atomic_write(path, write)


def save_transfer_heatmap(path: Path, result: TransferResult) -> Path:
    """The share matrix as a heat map, each cell annotated with its share and mean gain; held-out cells framed."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    shares = [[result.share(row, t) for t in result.targets] for row in result.rows]
    finite = [v for line in shares for v in line if math.isfinite(v)]
    labels = [row.label for row in result.rows]
    # the row labels are long (ensembles name their members): the figure widens with them rather than squeezing cells
    width = 1.5 + 1.4 * len(result.targets) + 0.065 * max(len(label) for label in labels)
    fig = Figure(figsize=(width, 1.6 + 0.5 * len(result.rows)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="viridis", vmin=min([0.0, *finite]), vmax=max([1.0, *finite]), aspect="auto")
    for r, row in enumerate(result.rows):
        for c, target in enumerate(result.targets):
            gain = float(result.gain(row, target).mean())
            dark = not math.isfinite(shares[r][c]) or shares[r][c] < 0.5  # viridis is dark below the middle
            ax.text(c, r, f"{_fmt(shares[r][c], '.2f')}\n({gain:.4f})", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
            if result.held_out[(row.name, target)]:  # inset, so that a frame never looks like its neighbour's
                ax.add_patch(Rectangle((c - 0.44, r - 0.42), 0.88, 0.84, fill=False, edgecolor="red", lw=1.5))
    ax.set_xticks(range(len(result.targets)), result.targets, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(result.rows)), labels, fontsize=8)
    ax.set_xlabel("scored against")
    ax.set_ylabel("noise made against")
    ax.set_title(f"share of the gain of the white-box {result.reference_label} on each target\n"
                 "(mean attack gain in brackets; red frame: a target the noise was not made against)", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
