"""Every benchmark script still imports and parses its arguments: they call the package's internals, which change.

The benchmarks themselves need photos and minutes (their figures are in the model card); ``--help`` runs a
script's imports and builds its argument parser, so a renamed or moved function fails here, not months later.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def two_samples() -> tuple[list, list]:
    """Two seeded 32 px images with the same box mask."""
    import torch

    torch.manual_seed(0)
    masks = [torch.zeros(1, 32, 32) for _ in range(2)]
    for m in masks:
        m[:, 8:20, 10:24] = 1
    return [torch.rand(3, 32, 32) for _ in range(2)], masks


def test_every_benchmark_is_listed():
    assert len(SCRIPTS) >= 10 and "amortisation.py" in {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_imports_and_parses_help(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    monkeypatch.setattr(sys, "path", [str(script.parent), *sys.path])  # as `python benchmarks/X.py` runs it
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {script.name}")  # argparse names the script it parsed for


def test_averaging_means_pre_tanh_outputs_and_mirrors_back(monkeypatch):
    """``benchmarks/averaging.py``: one member is the generator itself; a mirrored member is the generator on the
    mirrored input, mirrored back; two members average their pre-tanh outputs (or their noises)."""
    import importlib

    import torch

    from generator import load_generator
    from generator.target import target_colour

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    averaging = importlib.import_module("averaging")
    net = load_generator("generator-lama-tiny-fast").eval()
    torch.manual_seed(0)
    image, mask = torch.rand(1, 3, 48, 64), torch.zeros(1, 1, 48, 64)
    mask[..., 10:30, 8:40] = 1
    target = target_colour(image)
    with torch.no_grad():
        raw = net.noise_and_raw(image, mask, target)[1]
        mirrored = net.noise_and_raw(image.flip(-1), mask.flip(-1), target)[1].flip(-1)
        eps, outside = net.config.eps, 1 - mask  # a direct head's noise is zero in the hole, averaged or not
        assert torch.allclose(averaging.averaged([(net, False)])(image, mask),
                              (image + net(image, mask, target)).clamp(0, 1))
        assert torch.allclose(averaging.averaged([(net, True)])(image, mask),
                              (image + eps * torch.tanh(mirrored) * outside).clamp(0, 1))
        both = [(net, False), (net, True)]
        assert torch.allclose(averaging.averaged(both)(image, mask),
                              (image + eps * torch.tanh((raw + mirrored) / 2) * outside).clamp(0, 1), atol=1e-6)
        assert torch.allclose(averaging.averaged(both, of="noise")(image, mask),
                              (image + eps * (torch.tanh(raw) + torch.tanh(mirrored)) / 2 * outside).clamp(0, 1),
                              atol=1e-6)
        assert not torch.allclose(raw, mirrored)  # the network is not mirror-symmetric: the member is another answer
    sys.modules.pop("averaging", None)


def test_hole_noise_compares_the_cut_with_the_uncut_noise_of_the_same_pass(monkeypatch, capsys):
    """``benchmarks/hole_noise.py``: "uncut" is the direct head's noise before the cut, hole included, and equal to
    the shipped noise outside the hole; a gradient-head generator, with nothing to cut, is refused in one line."""
    import importlib

    import torch

    from generator import load_generator
    from generator.target import target_colour

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    hole_noise = importlib.import_module("hole_noise")
    net = load_generator("generator-lama-tiny-fast")
    torch.manual_seed(0)
    image, mask = torch.rand(1, 3, 48, 64), torch.zeros(1, 1, 48, 64)
    mask[..., 10:30, 8:40] = 1
    target = target_colour(image)
    with torch.no_grad():
        cut, uncut = net(image, mask, target), hole_noise.Uncut(net)(image, mask, target)
    hole = mask.expand_as(cut) > 0
    assert cut[hole].abs().max() == 0 and uncut[hole].abs().mean() > 0.1 * net.config.eps
    torch.testing.assert_close(uncut[~hole], cut[~hole])
    monkeypatch.setattr(sys, "argv", ["hole_noise.py", "--generator", "generator-lama-tiny"])
    with pytest.raises(SystemExit) as exit_:
        hole_noise.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "stem-gradient head, whose noise is zero in the hole anyway" in err
    sys.modules.pop("hole_noise", None)


def test_cached_references_come_back_untimed(monkeypatch, tmp_path, steerable_inpainter):
    """``benchmarks/amortisation.py``: the none / optimiser / FGSM runs are timed when computed, and come back from
    the cache with the same images but no time, so no speed-up is printed against a time from another run."""
    import importlib
    import math

    import torch

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    amortisation = importlib.import_module("amortisation")
    images, masks = two_samples()
    cache = tmp_path / "val-ref.safetensors"
    fresh = amortisation.reference_runs(steerable_inpainter, images, masks, cache)
    cached = amortisation.reference_runs(steerable_inpainter, images, masks, cache)
    assert [r.name for r in fresh] == [r.name for r in cached] == list(amortisation.REFERENCES)
    for a, b in zip(fresh, cached):
        assert a.timed_images == 2 and math.isfinite(a.seconds_per_image)
        assert b.timed_images == 0 and math.isnan(b.seconds_per_image) and math.isnan(b.total_seconds)
        assert math.isnan(b.images_per_second)  # not infinitely fast: not timed at all
        for x, y in zip(a.protected, b.protected):  # stored as 8-bit, as the saved PNG is scored
            assert torch.allclose(x, y, atol=0.5 / 255)
    sys.modules.pop("amortisation", None)


def test_the_optimiser_from_other_starts_is_scored_against_the_reference(monkeypatch, tmp_path, capsys,
                                                                         steerable_inpainter):
    """``--optimiser-seeds``: the 20-step optimiser from other random starts, each a row of its own and a paired
    difference from the reference (seed 0's start); seed 0 itself is refused in one line."""
    import importlib

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    amortisation = importlib.import_module("amortisation")
    images, masks = two_samples()
    references = amortisation.reference_runs(steerable_inpainter, images, masks, tmp_path / "ref.safetensors")
    monkeypatch.setattr(amortisation, "load_inpainter", lambda name: steerable_inpainter)
    monkeypatch.setattr(amortisation, "split_samples", lambda *args: (images, masks, list(references)))
    argv = ["amortisation.py", "--generator", "generator-lama-tiny-fast", "--splits", "val", "--k", "--refine-k",
            "--threads", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--optimiser-seeds", "0"])
    with pytest.raises(SystemExit) as exit_:
        amortisation.main()
    assert exit_.value.code == 2 and "--optimiser-seeds 0 is the reference's own start" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", [*argv, "--optimiser-seeds", "1", "2", "--out", str(tmp_path / "report.md")])
    amortisation.main()
    out = capsys.readouterr().out
    written = (tmp_path / "report.md").read_text()
    summary = out.split("## Share of the 20-step optimiser's attack gain")[1].strip()
    assert written.startswith("## val: 2 samples") and written.strip().endswith(summary)  # the report, whole
    shares = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in
              out.split("## Share of the 20-step optimiser's attack gain")[1].splitlines() if row.startswith("| ")}
    assert shares[amortisation.OPTIMISER] == "1.00"
    assert {"optimiser (20 steps, seed 1)", "optimiser (20 steps, seed 2)"} <= set(shares)
    spread = out.split("## The optimiser from other random starts")[1]
    rows = [row for row in spread.splitlines() if row.startswith("| optimiser (20 steps, seed")]
    assert len(rows) == 2 and all("[" in row for row in rows)  # mean [95% interval] per split
    sys.modules.pop("amortisation", None)


def test_a_report_path_that_cannot_be_written_is_refused_before_the_work(monkeypatch, tmp_path, capsys):
    """``amortisation.py --out``: a folder ended an hour's run at its last line ("[Errno 21] Is a directory"); it
    is refused in one line before the inpainter loads, as is a file under a missing folder or under a file."""
    import importlib

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    amortisation = importlib.import_module("amortisation")

    def no_work(name):
        raise AssertionError("the work started")

    monkeypatch.setattr(amortisation, "load_inpainter", no_work)
    (tmp_path / "a-file").write_text("x")
    for out, message in [(tmp_path, f"--out '{tmp_path}' is a folder; give the report's file, such as "
                                     f"'{tmp_path / 'report.md'}'"),
                         (tmp_path / "missing" / "r.md", f"the folder '{tmp_path / 'missing'}' does not exist"),
                         (tmp_path / "a-file" / "r.md", f"'{tmp_path / 'a-file'}' is a file")]:
        monkeypatch.setattr(sys, "argv", ["amortisation.py", "--generator", "generator-lama-tiny", "--out", str(out)])
        with pytest.raises(SystemExit) as exit_:
            amortisation.main()
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and message in err.splitlines()[-1], err
    sys.modules.pop("amortisation", None)


def test_precisions_are_labelled_and_the_optimiser_runs_in_bfloat16(monkeypatch, tmp_path, tiny_inpainter):
    """``--dtypes``: each generator once per precision, labelled by it; ``autocast_method``: the optimiser with the
    inpainter's convolutions in bfloat16 gives other float32 images within the bound; ``protect_speed.py``
    times a bfloat16 pass and refuses one through onnxruntime in one line."""
    import argparse
    import importlib

    import torch

    from trainer.evaluation.scoring import autocast_method, iterative_method
    from trainer.objective.iterative import IterativeConfig

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    amortisation = importlib.import_module("amortisation")
    protectors = amortisation.load_protectors(argparse.ArgumentParser(), ["generator-lama-tiny-fast"],
                                              ("float32", "bfloat16"))
    assert list(protectors) == ["generator-lama-tiny-fast", "generator-lama-tiny-fast (bfloat16)"]
    assert [next(p.net.parameters()).dtype for p in protectors.values()] == [torch.float32, torch.bfloat16]

    torch.manual_seed(0)
    image, mask = torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 10:24] = 1
    optimiser = iterative_method(tiny_inpainter, IterativeConfig(steps=2))
    full, half = optimiser(image, mask), autocast_method(optimiser, torch.bfloat16)(image, mask)
    assert half.dtype == torch.float32 and (half - image).abs().max() <= 0.025 + 1e-6
    assert not torch.equal(half, full)  # the convolutions did run in bfloat16
    # the benchmarks' hybrid and refine take their steps in the generator's precision, exactly as Protector does
    from generator import Protector
    from trainer.evaluation.scoring import hybrid_method, refine_method
    for name, method, make in (("generator-lama-tiny-fast", "hybrid", hybrid_method),
                               ("generator-lama-tiny", "refine", refine_method)):
        protector = Protector.from_checkpoint(name, dtype=torch.bfloat16, inpainter=tiny_inpainter)
        # to within an ulp: protect_batch keeps its noise that far inside the bound, so that its sum cannot round past
        torch.testing.assert_close(make(protector, tiny_inpainter, 1)(image, mask),
                                   protector.protect_batch(image, mask, method, 1), rtol=0, atol=2.5e-7)

    protect_speed = importlib.import_module("protect_speed")
    timed = protect_speed.one_size("generator-lama-tiny-fast", 32, 32, runs=1, dtype="bfloat16")
    assert timed["median_s"] > 0 and timed["peak_mib"] >= timed["baseline_mib"]
    for extra in (["--dtypes", "bfloat16"], ["--compile"]):  # onnxruntime runs the float32 export, uncompiled
        monkeypatch.setattr(sys, "argv", ["protect_speed.py", "--backend", "onnx", *extra])
        with pytest.raises(SystemExit) as exit_:
            protect_speed.main()
        assert exit_.value.code == 2
    for name in ("amortisation", "protect_speed"):
        sys.modules.pop(name, None)


def test_amortisation_scores_the_editors_masks(monkeypatch, steerable_inpainter):
    """``--editor-masks``: per method, the share of the optimiser's gain under the protected mask, and under each
    editor's mask the share that survives with, in brackets, the share of the optimiser's own gain there."""
    import importlib

    import torch

    from trainer.evaluation.scoring import MethodRun, score_runs

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    amortisation = importlib.import_module("amortisation")
    images, masks = two_samples()
    half = [(x + 0.0125 * torch.randn_like(x).sign()).clamp(0, 1) for x in images]
    noisy = [(x + 0.025 * torch.randn_like(x).sign()).clamp(0, 1) for x in images]
    runs = [MethodRun.untimed(name, protected) for name, protected in
            [("none", images), (amortisation.OPTIMISER, noisy), ("half", half)]]
    saved = score_runs(steerable_inpainter, images, masks, runs, batch_size=4)
    table = amortisation.editor_mask_table(steerable_inpainter, images, masks, runs, ["mask-dilate-9"], saved)
    rows = {line.split(" | ")[0].strip("| "): line.strip("| ").split(" | ")[1:]
            for line in table.splitlines() if line.startswith("| ") and "method" not in line}
    assert "| method | protected mask | mask-dilate-9 | mean |" in table
    assert rows["none"] == ["0.00", "0.00 (0.00)", "0.00 (0.00)"]
    mean = float(rows["half"][2].split()[0])  # the mean of the two masks' shares, each rounded to 0.005
    assert abs(mean - (float(rows["half"][0]) + float(rows["half"][1].split()[0])) / 2) <= 0.011
    assert rows[amortisation.OPTIMISER][0] == "1.00" and rows[amortisation.OPTIMISER][1].endswith("(1.00)")
    assert rows[amortisation.OPTIMISER][1] != "1.00 (1.00)"  # another mask keeps another gain
    assert rows["half"][0] != "0.00"
    assert "share minus" not in table  # one method: nothing to pair
    table = amortisation.editor_mask_table(steerable_inpainter, images, masks, runs, ["mask-dilate-9"], saved,
                                           paired=["none", "half"])
    paired = table.split("share minus none's")[1]
    row = next(line for line in paired.splitlines() if line.startswith("| half"))
    difference = float(row.split(" | ")[1].split()[0])  # under the protected mask: half's share minus none's (0)
    assert abs(difference - float(rows["half"][0])) <= 0.006
    sys.modules.pop("amortisation", None)


def test_the_family_optimiser_steps_on_every_mask_of_the_family(monkeypatch, steerable_inpainter):
    """``editor_mask_objective.py``: the optimiser over m and its family stays within the bound and makes another
    noise than the paper's, which sees m alone."""
    import importlib

    import torch

    from trainer.evaluation.scoring import iterative_method
    from trainer.objective.iterative import IterativeConfig

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    objective = importlib.import_module("editor_mask_objective")
    images, masks = two_samples()
    x, m = torch.stack(images), torch.stack(masks)
    family = objective.family_optimiser(steerable_inpainter, steps=3)(x, m)
    paper = iterative_method(steerable_inpainter, IterativeConfig(steps=3))(x, m)
    assert (family - x).abs().max() <= 0.025 + 1e-6 and not torch.allclose(family, paper)
    # none of the family is a mask the editor is scored on
    assert all(not torch.equal(f(m), e(m)) for f in objective.FAMILY.values() for e in objective.EDITOR_MASKS.values())
    sys.modules.pop("editor_mask_objective", None)
    sys.modules.pop("amortisation", None)


def test_the_push_in_the_hole_leaves_the_attacking_edits_alone(monkeypatch, tiny_inpainter):
    """``hole_push``: only the hole's pixels move (by eps towards the target colour), so the attack and incp
    losses, whose edits never see the hole, are unchanged; the hide edit, which sees it, changes."""
    import importlib

    import torch

    from trainer.objective.losses import prepare_task, protection_losses

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    objective = importlib.import_module("editor_mask_objective")
    images, masks = two_samples()
    x, m = torch.stack(images), torch.stack(masks)
    noisy = lambda image, mask: (image + 0.01).clamp(0, 1)  # noqa: E731
    pushed = objective.hole_push(noisy)(x, m)
    assert torch.equal(pushed * (1 - m), noisy(x, m) * (1 - m))
    assert torch.allclose(((pushed - x) * m).abs().amax(), torch.tensor(0.025))
    half = objective.hole_push(noisy, 0.0125)(x, m)  # --push 0.5: half as far, the rest as before
    assert torch.allclose(((half - x) * m).abs().amax(), torch.tensor(0.0125))
    assert torch.equal(half * (1 - m), pushed * (1 - m))
    task = prepare_task(tiny_inpainter, x, m)
    before, after = (protection_losses(tiny_inpainter, p, task) for p in (noisy(x, m), pushed))
    for term in ("attack", "incp"):
        assert torch.allclose(before[term], after[term], atol=1e-6), term
    assert not torch.allclose(before["hide"], after["hide"])
    sys.modules.pop("editor_mask_objective", None)
    sys.modules.pop("amortisation", None)


def test_noise_views_rounds_away_from_zero_and_keeps_the_unsaved_floats(monkeypatch):
    """``benchmarks/noise_views.py``: rounding away from zero lands on whole 8-bit levels no nearer zero than the
    noise (so the save only clips it to the bound); the unsaved run keeps the method's floats, off the grid."""
    import importlib

    import torch

    from generator.protector import Protector
    from trainer.evaluation.scoring import as_saved

    monkeypatch.syspath_prepend(str(SCRIPTS[0].parent))
    monkeypatch.setattr(sys, "argv", ["noise_views.py"])
    noise_views = importlib.import_module("noise_views")
    protector = Protector.from_checkpoint("generator-lama-tiny-fast")
    torch.manual_seed(0)
    image, mask = torch.round(torch.rand(1, 3, 48, 64) * 255) / 255, torch.zeros(1, 1, 48, 64)
    mask[..., 10:30, 8:40] = 1
    with torch.no_grad():
        d = protector.protect(image, mask) - image
        levels = (noise_views.away_from_zero(protector)(image, mask) - image) * 255
    inside = (image > 8 / 255) & (image < 247 / 255)  # away from the clamp to [0, 1]
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert (levels[inside].abs() >= d[inside].abs() * 255 - 1e-3).all()
    assert (levels[inside].abs() <= d[inside].abs() * 255 + 1 + 1e-3).all()
    assert (levels.abs() > d.abs() * 255 + 0.25).any()  # not the nearest rounding
    run = noise_views.unsaved("g", protector.protect, [image[0]], [mask[0]])
    assert torch.equal(run.protected[0], protector.protect(image, mask)[0].clamp(0, 1))
    saved = as_saved(run.protected[0][None], image, protector.eps)[0]
    assert not torch.allclose(run.protected[0], saved) and (saved - image[0]).abs().max() <= 6 / 255 + 1e-6
    sys.modules.pop("noise_views", None)


@pytest.mark.parametrize("name,args,message", [
    ("amortisation", ["--generator", "g", "--photos-per-split", "-1"], "argument --photos-per-split: must be at least 1"),
    ("stem_bounds", ["--masks-per-image", "0"], "argument --masks-per-image: must be at least 1, got 0"),
    ("compare_speed", ["--images", "-1"], "argument --images: must be at least 1, got -1"),
    ("training_curve", ["{tmp}/missing"], "run folder '{tmp}/missing' does not exist"),
    ("training_curve", ["{tmp}"], "'{tmp}' holds no wandb/offline-run-* folder"),
    # the scripts' own errors, said as the commands say theirs: one line, exit code 2, no traceback
    ("flops", ["--generator", "nothere"], "paintguard: error: no generator checkpoint 'nothere'"),
    ("flops", ["--size", "-4"], "paintguard: error: --size must be >= 32"),
])
def test_bad_counts_and_run_folders_are_refused(name, args, message, tmp_path, monkeypatch, capsys):
    """A negative count once sliced the photos from the end (``[:-1]``: all but one), and a wrong run folder printed
    an empty curve: both looked like results."""
    script = SCRIPTS[0].parent / f"{name}.py"
    monkeypatch.setattr(sys, "argv", [str(script), *(a.format(tmp=tmp_path) for a in args)])
    monkeypatch.setattr(sys, "path", [str(script.parent), *sys.path])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err and err.count("\n") == 1, err
