"""``paintguard compare``, its evaluation helpers and the transformation registry, on tiny models."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from trainer.commands.cli import main as cli_main
from trainer.data.images import FixedCropDataset, sample_images
from trainer.evaluation.compare_config import eot_from_config, load_config
from trainer.evaluation.comparison import build_methods, load_samples
from trainer.evaluation.report import dtype_note
from trainer.evaluation.scoring import batches, run_method
from trainer.evaluation.tables import paired_share_difference, summarise
from trainer.objective.metrics import share_of_gain
from trainer.objective.transforms import TRANSFORMS, get_transform
from trainer.training.wandb_logger import read_offline_run

from .conftest import write_mask, write_rgb

ROOT = Path(__file__).resolve().parents[1]
CI_CONFIG = ROOT / "configs" / "compare" / "ci.yaml"
METHODS = ["none", "optimiser (2 steps)", "generator", "hybrid (k=1)"]
EDITOR = ["mask-dilate-9", "mask-shift-8"]
PNG = b"\x89PNG\r\n\x1a\n"


def eight_bit(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)).float() / 255


def photo(size: int = 64) -> torch.Tensor:
    """A natural 8-bit image: JPEG artefacts on uniform noise say little about photos."""
    return FixedCropDataset(sample_images("val")[:1], size=size)[0]["image"][None]


# --- transforms -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transforms_keep_shape_dtype_and_range(name):
    x = eight_bit(2, 3, 33, 40)
    y = get_transform(name)(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    if name != "png":
        assert (y - x).abs().mean() > 1e-3  # every attack changes the image


def test_png_round_trip_is_identity_on_8bit_input_and_rounds_the_rest():
    x = eight_bit(2, 3, 16, 16)
    assert torch.equal(get_transform("png")(x), x)
    y = (x + 0.3 / 255).clamp(0, 1)
    back = get_transform("png")(y)
    assert not torch.equal(back, y) and torch.allclose(back * 255, torch.round(back * 255))
    assert (back - y).abs().max() <= 0.5 / 255 + 1e-6


def test_jpeg_75_changes_pixels_more_than_jpeg_90():
    x = photo()
    err90 = (get_transform("jpeg90")(x) - x).abs().mean()
    err75 = (get_transform("jpeg75")(x) - x).abs().mean()
    assert 0 < err90 < err75


def test_noise_is_seeded_and_has_the_asked_strength():
    x = torch.full((1, 3, 64, 64), 0.5)
    noise = get_transform("noise-0.01")
    a = noise(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, noise(x, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, noise(x, generator=torch.Generator().manual_seed(2)))
    assert abs(float((a - x).std()) - 0.01) < 0.001


def test_resize_and_blur_remove_fine_detail_but_keep_flat_images():
    flat = torch.full((1, 3, 31, 30), 0.25)
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).float().expand(1, 3, 32, 32)
    for name in ("resize-half", "blur-1"):
        assert torch.allclose(get_transform(name)(flat), flat, atol=1e-6)
        assert (get_transform(name)(checker) - 0.5).abs().max() < 0.2  # a 1 px checkerboard averages out


def test_unknown_transform_names_the_choices():
    with pytest.raises(ValueError, match="jpeg90"):
        get_transform("jpeg50")


# --- evaluation helpers -----------------------------------------------------------------------

def test_summary_mean_median_and_t_interval():
    s = summarise(torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0]))
    assert s.mean == pytest.approx(4.0) and s.median == pytest.approx(3.0)
    half = 2.7764451 * math.sqrt(12.5) / math.sqrt(5)  # t(0.975, 4) * sample std / sqrt(n)
    assert (s.low, s.high) == pytest.approx((4.0 - half, 4.0 + half))
    assert math.isnan(summarise(torch.tensor([2.0])).low)
    values = torch.tensor([0.9, 0.95, 1.0, 0.98])  # SSIMs: an interval reached 1.53
    plain, clipped = summarise(values), summarise(values, limits=(-1.0, 1.0))
    assert plain.high > 1 and clipped.high == 1.0 and clipped.low == plain.low


def test_paired_share_difference_sees_a_shift_smaller_than_the_spread_across_samples():
    teacher = torch.tensor([1.0, 4.0, 2.0, 3.0])
    base = torch.tensor([0.5, 3.0, 1.2, 2.4])
    better = base + torch.tensor([0.05, 0.07, 0.06, 0.06])  # +0.024 of the teacher's mean gain, on every sample
    d = paired_share_difference(better, base, teacher)
    assert d.mean == pytest.approx(share_of_gain(better, teacher) - share_of_gain(base, teacher), abs=1e-6)
    assert 0 < d.low < d.high  # significant, though the shares' spread over samples is far wider
    same = paired_share_difference(base, base, teacher)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)


def test_run_method_warms_up_batches_by_shape_and_times_every_call():
    images = [torch.rand(3, 8, 8) for _ in range(3)] + [torch.rand(3, 8, 12)]
    masks = [torch.ones(1, *x.shape[-2:]) for x in images]
    assert batches(images, 2) == [[0, 1], [2], [3]]
    calls = []

    def method(x, m):
        calls.append(len(x))
        return x + 0.5  # the saved image must still keep the bound

    run = run_method("m", method, images, masks, batch_size=2, repeats=3)
    assert calls == [1] + [2] * 3 + [1] * 3 + [1] * 3  # warm-up on one image, then each batch 3 times
    assert len(run.call_seconds) == 9 and len(run.image_seconds) == 4 and run.timed_images == 12
    assert run.seconds_per_image > 0 and run.images_per_second > 0
    for x, p in zip(images, run.protected):
        assert p.shape == x.shape and (p - x).abs().max() <= 0.025 + 1e-6


# --- the command ----------------------------------------------------------------------------

def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_writes_report_csv_figures_and_a_wandb_run(tmp_path, checkpoints, capsys):
    config = yaml.safe_load(CI_CONFIG.read_text())
    config.update(transfer="other-inpainter", wandb=True, editor_masks=EDITOR)
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert cli_main(["compare", "--config", str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert printed.startswith("Every protected image is rounded to 8 bits")  # the columns explained, as in report.md
    assert "success: the samples where it reaches 20 dB. Incp PSNR: the same for the mask dilated" in printed
    for term in ("Hide PSNR: ", "Noise PSNR, SSIM and L_inf", "Share of gain: the drop of the attack loss"):
        assert term in printed
    assert f"saved PNG and {len(TRANSFORMS) - 1} transformations ==" in captured.err  # not counting png

    report = (out / "report.md").read_text()
    main_table = report.split("## Against lama-tiny")[1].split("##")[0]
    assert "| share of gain |" in main_table
    assert main_table.split("| none |")[1].split("\n")[0].endswith("| 0.00 | - | - | - |")  # no time of nothing
    spread = report.split("## Spread over samples")[1].split("##")[0]
    assert "`per_image.csv` has a row per sample and method" in spread
    for row in spread.splitlines():  # two samples: t intervals wider than the range, clipped to it
        if "| SSIM |" in row:
            low, high = map(float, row.split("[")[1].split("]")[0].split(", "))
            assert -1 <= low <= high <= 1
    for name in METHODS:
        assert f"| {name} |" in main_table
    robustness = report.split("## Robustness")[1].split("##")[0]
    for transform in TRANSFORMS:
        assert sum(f"| {transform} | {name} |" in robustness for name in METHODS) == len(METHODS)
    editor = report.split("## The editor's mask")[1].split("##")[0]
    for name in EDITOR:
        assert sum(f"| {name} | {method} |" in editor for method in METHODS) == len(METHODS)
    assert "## Transfer: the same saved images against other-inpainter" in report
    assert "| transfer | optimiser (2 steps) |" in report
    assert "## Robustness" in printed and "| hybrid (k=1) |" in printed and "## Spread" not in printed

    rows = read_csv(out / "per_image.csv")
    assert len(rows) == 2 * len(METHODS)
    assert [r["method"] for r in rows[::2]] == METHODS
    by_method = {name: [r for r in rows if r["method"] == name] for name in METHODS}
    for r in by_method["none"]:
        # no noise: no gain, under every transformation (the seeded noise is the same for both images)
        assert float(r["noise_psnr"]) == 100 and float(r["linf"]) == 0
        assert all(float(r[f"{t}/attack_gain"]) == 0 for t in [*TRANSFORMS, *EDITOR] if t != "png")
    for name in EDITOR:  # the edit of another mask: most of the gain goes with it, not all
        gain = np.mean([float(r[f"{name}/attack_gain"]) for r in by_method["optimiser (2 steps)"]])
        assert gain != np.mean([float(r["attack_gain"]) for r in by_method["optimiser (2 steps)"]])
    for name in METHODS[1:]:
        for r in by_method[name]:
            assert 0 < float(r["linf"]) <= 0.025 + 1e-6 and float(r["seconds"]) > 0
            assert 0 < float(r["ssim"]) < 1
    optimiser_gain = np.mean([float(r["attack_gain"]) for r in by_method["optimiser (2 steps)"]])
    assert optimiser_gain > 0  # the tiny inpainter does react: share-of-gain columns are not 0/0

    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == sorted(["grid-none.png", "grid-optimiser-2-steps.png", "grid-generator.png",
                              "grid-hybrid-k-1.png", "speed-vs-strength.png"])
    for name in figures:
        assert (out / "figures" / name).read_bytes()[:8] == PNG
        assert f"(figures/{name})" in report
    with Image.open(out / "figures" / "grid-none.png") as grid:
        assert grid.width > grid.height  # five columns, two rows

    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = read_offline_run(runs[0])
    assert logged.finished
    assert logged.summary["compare/main/_type"] == "table-file" and logged.summary["compare/main/nrows"] == 4
    assert logged.summary["compare/robustness/nrows"] == 4 * (len(TRANSFORMS) + len(EDITOR)) + 4  # and transfer
    assert logged.summary["figures/speed-vs-strength/_type"] == "image-file"
    table = json.loads((runs[0] / "files" / logged.summary["compare/main/path"]).read_text())
    assert "share_of_gain" in table["columns"] and [row[0] for row in table["data"]] == METHODS


def test_compare_runs_as_a_subprocess_on_the_ci_config(tmp_path, checkpoints):
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    out = tmp_path / "ci"
    proc = subprocess.run([sys.executable, "-m", "trainer.commands.cli", "compare", "--config", str(CI_CONFIG),
                           "--out", str(out), "--set", "max_samples=1"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| optimiser (2 steps) |" in proc.stdout and "share of gain" in proc.stdout
    assert len(read_csv(out / "per_image.csv")) == len(METHODS)  # the file's 2 samples, set to 1
    assert f"Config `{CI_CONFIG} --set max_samples=1`: 1 sample from" in (out / "report.md").read_text()


def test_compare_runs_the_eot_optimiser_and_more_generators(tmp_path, checkpoints, capsys):
    config = yaml.safe_load(CI_CONFIG.read_text())
    config.update(transforms=["jpeg75"], methods={
        "none": None,
        "optimiser": {"steps": 2},
        "optimiser_eot": {"steps": 2, "samples": 2,
                          "eot_config": str(ROOT / "configs" / "generator" / "lama-tiny-robust.yaml")},
        "generator_robust": {"checkpoint": str(checkpoints / "generator-lama-tiny.safetensors")},
        "generator_fast": {"checkpoint": str(checkpoints / "generator-lama-tiny.safetensors")},
    })
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["compare", "--config", str(path), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    for name in ["optimiser EOT (2 steps x 2)", "generator (robust)", "generator (fast)"]:
        assert f"| {name} |" in report and f"| jpeg75 | {name} |" in report
    rows = [r for r in read_csv(tmp_path / "out" / "per_image.csv") if r["method"] == "optimiser EOT (2 steps x 2)"]
    assert len(rows) == 2 and all(0 < float(r["linf"]) <= 0.025 + 1e-6 for r in rows)


@pytest.mark.parametrize("dtype", ["bfloat16", "auto"])
@pytest.mark.filterwarnings("ignore:this CPU has no bfloat16")  # tests/test_precision.py checks that warning
def test_dtype_runs_every_method_in_that_precision(tmp_path, checkpoints, native, tiny_inpainter, dtype):
    """``dtype: bfloat16`` puts the generators in bfloat16 and the optimisers' convolutions under autocast, as
    ``paintguard protect --dtype`` does; ``auto`` does so only where the CPU has bfloat16 instructions."""
    def build(value: str) -> dict:
        path = tmp_path / f"{value}.yaml"
        path.write_text(yaml.safe_dump({"dtype": value, "methods": {"optimiser": {"steps": 2}, "generator": None,
                                                                     "hybrid": {"k": [1]}}}))
        cfg = load_config(path)
        return cfg, build_methods(cfg, tiny_inpainter).methods
    image, mask = photo(32), torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 10:24] = 1
    (full_cfg, full), (cfg, half) = build("float32"), build(dtype)
    chosen = torch.bfloat16 if dtype == "bfloat16" or native else torch.float32
    assert half["generator"].__self__.dtype == chosen and full["generator"].__self__.dtype == torch.float32
    for name in full:
        a, b = full[name](image, mask), half[name](image, mask)
        assert b.dtype == torch.float32 and (b - image).abs().max() <= 0.025 + 1e-6
        assert torch.equal(a, b) == (chosen == torch.float32), name  # bfloat16 gives other, bounded images
    assert dtype_note(full_cfg) == ""
    assert dtype_note(cfg) == f", networks in {str(chosen)[6:]} (dtype `{dtype}`)"


def test_eot_optimiser_needs_a_config_with_transformations(tmp_path, capsys):
    plain = ROOT / "configs" / "generator" / "lama-tiny.yaml"  # a generator config without model.eot
    path = tmp_path / "bad.yaml"
    path.write_text(f"methods: {{optimiser_eot: {{eot_config: {plain}}}}}\n")
    assert cli_main(["compare", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"eot_config '{plain}' has no model.eot section" in err


BAD_CONFIGS = {
    "methds: {}\n": "unknown key 'methds'",
    "masks: {kind: random}\n": "masks.kind must be 'seeded' or 'files'",
    "masks: {size: big}\n": "masks.size must be an integer",
    "methods: {hybrid: {k: []}}\n": "methods.hybrid.k must be a non-empty list",
    "methods: {refine: {k: [0]}}\n": "methods.refine.k must be a non-empty list of steps >= 1",
    "methods: {optimiser: {stpes: 3}}\n": "unknown key 'methods.optimiser.stpes'",
    "methods: {}\n": "methods lists no method",
    "methods: {optimiser_eot: {samples: 0}}\n": "methods.optimiser_eot.steps and .samples must be >= 1",
    "methods: {optimiser_eot: {eot_config: /no/such.yaml}}\n": "eot_config '/no/such.yaml' does not exist",
    "transforms: [png, jpeg50]\n": "unknown transform 'jpeg50'",
    "images: /no/such/folder\n": "images must be one of",
    "batch_size: 0\n": "batch_size and repeats must be >= 1",
    "images: [a\n": "is not valid YAML",
    "- a list\n": "must be a mapping",
    "methods: {optimiser_ensemble: {inpainters: [a]}}\n": "optimiser_ensemble[0].inpainters must list at least two",
    "methods: {optimiser_ensemble: [{inpainters: [a, b], mode: vote}]}\n": "optimiser_ensemble[0].mode must be one of",
    "methods: {generator_ensemble: [{inpainters: [a]}]}\n": "generator_ensemble[0].checkpoint is missing",
    "targets: [a, a]\n": "targets must be distinct",
    "targets: lama-tiny\n": "targets must be a list",
    "dtype: float16\n": "dtype must be one of float32, bfloat16, auto, got 'float16'",
    "editor_masks: [box]\n": "unknown editor mask 'box'; choose from mask-erode-9, mask-dilate-9",
}


def test_an_editor_mask_that_leaves_nothing_is_refused_before_any_method_runs(tmp_path, checkpoints, capsys):
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["editor_masks"] = ["mask-erode-9"]  # the first 32 px sample's mask is thinner than 9 px
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["compare", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == ("paintguard: error: editor mask 'mask-erode-9' leaves nothing of the "
                                               "mask of sample 'astronaut' to edit")
    assert not (tmp_path / "out").exists()


def test_set_overrides_the_config_option_by_option():
    cfg = load_config(CI_CONFIG, ["masks.size=48", "methods.hybrid.k=[1, 2]", "methods.refine.k=[1]",
                                  "editor_masks=[mask-dilate-9]", "transfer=null", "masks.seed=3"])
    assert (cfg.masks.size, cfg.masks.seed, cfg.masks.kind) == (48, 3, "seeded")  # the rest of the section kept
    assert cfg.methods.hybrid.k == [1, 2] and cfg.methods.refine.k == [1]  # refine: a section the file left out
    assert cfg.editor_masks == ["mask-dilate-9"] and cfg.transfer is None and cfg.max_samples == 2
    assert cfg.methods.generator.checkpoint == "generator-lama-tiny"


# --set KEY=VALUE over the CI config -> a piece of the one-line message
BAD_SETTINGS = {
    "masks.size": "--set 'masks.size' is not KEY=VALUE (e.g. masks.size=384)",
    "=3": "--set '=3' is not KEY=VALUE",
    "masks.size=big": "masks.size must be an integer, got 'big'",
    "masks.size=99999999999999999999": "masks.size must be between 16 and 16384, got 99999999999999999999",
    "masks.size=[1": "--set 'masks.size=[1': the value is not valid YAML",
    "max_samples.size=1": "--set 'max_samples.size=1': 'max_samples' is not a section",
    "mask.size=1": "unknown key 'mask'",
}
BAD = [(text, None, why) for text, why in BAD_CONFIGS.items()] + [
    (None, setting, why) for setting, why in BAD_SETTINGS.items()]


@pytest.mark.parametrize("text,setting,why", BAD, ids=[t or f"--set {s}" for t, s, _ in BAD])
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, text, setting, why):
    path = tmp_path / "bad.yaml"
    path.write_text(CI_CONFIG.read_text() if text is None else text)
    settings = ["--set", setting] if setting is not None else []
    assert cli_main(["compare", "--config", str(path), "--out", str(tmp_path / "out"), *settings]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"paintguard: error: config '{path}'")
    assert why in err, err
    assert not (tmp_path / "out").exists()


def test_missing_config_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli_main(["compare", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"paintguard: error: config '{tmp_path / 'none.yaml'}' does not exist"


def test_shipped_configs_load():
    cfg = load_config(ROOT / "configs" / "compare" / "lama-tiny.yaml")
    assert cfg.masks.size == 256 and cfg.methods.hybrid.k == [2, 5] and cfg.methods.none is not None
    assert cfg.methods.refine.k == [1, 2] and cfg.methods.refine.checkpoint is None
    assert cfg.inpainter == "lama-tiny" and cfg.methods.generator.checkpoint == "generator-lama-tiny"
    assert cfg.methods.generator_fast.checkpoint == "generator-lama-tiny-fast"
    assert cfg.transforms == list(TRANSFORMS)
    assert load_config(CI_CONFIG).max_samples == 2


def test_shipped_robustness_config_loads_the_robust_generators_transformations(monkeypatch):
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository root
    cfg = load_config(ROOT / "configs" / "compare" / "robustness.yaml")
    assert cfg.methods.generator_robust.checkpoint == "generator-lama-tiny-robust"
    assert cfg.methods.generator_fast.checkpoint == "generator-lama-tiny-fast"
    eot = eot_from_config(cfg.methods.optimiser_eot.eot_config)
    assert eot.enabled and eot.jpeg_p > 0 and eot.jpeg_quality == (50.0, 95.0)


def test_mask_files_pair_by_lama_naming(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    write_rgb(folder / "a.png", 24, 32, seed=1)
    write_mask(folder / "a_mask000.png", 24, 32, (2, 2, 10, 10))
    write_mask(folder / "a_mask001.png", 24, 32, (12, 4, 20, 30))
    write_rgb(folder / "b.png", 20, 20, seed=2)
    write_mask(folder / "b_mask.png", 20, 20, (5, 5, 15, 15))
    path = tmp_path / "files.yaml"
    path.write_text(f"images: {folder}\nmasks: {{kind: files}}\n")
    samples = load_samples(load_config(path))
    assert [s.name for s in samples] == ["a_mask000", "a_mask001", "b_mask"]
    assert [tuple(s.mask.shape) for s in samples] == [(1, 24, 32), (1, 24, 32), (1, 20, 20)]
    assert float(samples[1].mask.sum()) == 8 * 26
    write_rgb(folder / "c.png", 20, 20, seed=3)
    with pytest.raises(ValueError, match="'.*c.png' has no mask 'c_mask\\*.png'"):
        load_samples(load_config(path))
    write_mask(folder / "c_mask.png", 20, 20, (0, 0, 20, 20))  # nothing left for an inpainter to see
    with pytest.raises(ValueError, match="^sample 'c_mask': the mask covers the whole image: .*; nothing to compare$"):
        load_samples(load_config(path))
    write_mask(folder / "c_mask.png", 20, 20, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="^the mask of sample 'c_mask' is empty: nothing to protect$"):
        load_samples(load_config(path))


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs" / "compare").glob("*.yaml")))
def test_every_shipped_compare_config_loads(name):
    cfg = load_config(ROOT / "configs" / "compare" / name)
    assert cfg.methods.none is not None or cfg.methods.optimiser is not None
    assert cfg.inpainter in (cfg.targets or [cfg.inpainter])  # a matrix's first row is also one of its columns
