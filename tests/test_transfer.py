"""The transfer matrix of ``paintguard compare``: several target inpainters, ensembles, held-out cells (tiny models)."""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from generator.checkpoint import read_metadata
from generator.protector import save_generator
from generator.unet import NoiseUNet, UNetConfig
from trainer.commands.cli import main as cli_main
from trainer.evaluation.compare_config import load_config
from trainer.evaluation.comparison import InpainterPool, build_methods, generator_inpainters
from trainer.inpainting.inpainter import build_inpainter, save_inpainter
from trainer.training.wandb_logger import read_offline_run

from .conftest import ROOT, TINY

CONFIG = ROOT / "configs" / "compare" / "transfer-ci.yaml"
TARGETS = ["lama-tiny", "lama-tiny-ft", "lama-tiny-seed1"]
ROWS = [  # (method, made against) in the matrix's order
    ("none", ""),
    ("optimiser (2 steps)", "lama-tiny"),
    ("optimiser (2 steps)", "lama-tiny-ft"),
    ("optimiser (2 steps)", "lama-tiny-seed1"),
    ("optimiser ensemble (2 steps) [lama-tiny+lama-tiny-ft]", "lama-tiny+lama-tiny-ft"),
    ("optimiser ensemble (2 steps, random member per step) [lama-tiny-ft+lama-tiny-seed1]",
     "lama-tiny-ft+lama-tiny-seed1"),
    ("generator", "lama-tiny"),
    ("generator ensemble [lama-tiny-ft+lama-tiny-seed1]", "lama-tiny-ft+lama-tiny-seed1"),
    ("hybrid (k=1)", "lama-tiny"),
]


def tiny_generator(seed: int) -> NoiseUNet:
    torch.manual_seed(seed)
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4))
    with torch.no_grad():
        net.head[0].weight.normal_(std=0.5)  # an untrained generator emits almost no noise: make it visible
    return net


@pytest.fixture
def stand_ins(tmp_path, monkeypatch, tiny_inpainter) -> Path:
    """Tiny stand-ins for every name transfer-ci.yaml uses: a base, a slightly drifted copy, an independent model."""
    folder = tmp_path / "checkpoints"
    save_inpainter(tiny_inpainter, folder / "lama-tiny.safetensors")
    drifted = build_inpainter(TINY, seed=0)
    drifted.load_state_dict(tiny_inpainter.state_dict())
    with torch.no_grad():
        for p in drifted.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.02 * p.abs().mean())
    save_inpainter(drifted, folder / "lama-tiny-ft.safetensors")
    independent = build_inpainter(TINY, seed=1)
    with torch.no_grad():  # as the tiny_inpainter fixture: raised BatchNorm gains make it react to its input
        for module in independent.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.mul_(4)
    save_inpainter(independent, folder / "lama-tiny-seed1.safetensors")
    save_generator(tiny_generator(0), folder / "generator-lama-tiny.safetensors", inpainter="lama-tiny")
    save_generator(tiny_generator(1), folder / "generator-ensemble-no-lama-tiny.safetensors",
                   inpainter="lama-tiny-ft,lama-tiny-seed1")
    monkeypatch.setenv("PAINTGUARD_CHECKPOINTS", str(folder))
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_writes_the_transfer_matrix_in_a_subprocess(tmp_path, stand_ins):
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_SILENT="true")
    out = tmp_path / "out"
    config = tmp_path / "transfer.yaml"
    config.write_text(CONFIG.read_text().replace("wandb: false", "wandb: true"))
    proc = subprocess.run([sys.executable, "-m", "trainer.commands.cli", "compare", "--config", str(config),
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "## Transfer matrix" in proc.stdout
    report = (out / "report.md").read_text()
    share_table = report.split("### Share of the white-box optimiser's gain")[1].split("###")[0]
    assert "| noise [made against] | lama-tiny | lama-tiny-ft | lama-tiny-seed1 |" in share_table
    assert "![transfer-matrix](figures/transfer-matrix.png)" in report
    assert (out / "figures" / "transfer-matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = read_csv(out / "transfer_per_image.csv")
    assert len(rows) == len(ROWS) * len(TARGETS) * 2  # rows x targets x samples
    seen = list(dict.fromkeys((r["method"], r["made_against"]) for r in rows))
    assert seen == ROWS

    def cells(method: str, against: str, target: str) -> list[dict[str, str]]:
        return [r for r in rows if (r["method"], r["made_against"], r["target"]) == (method, against, target)]

    for target in TARGETS:
        whitebox = cells("optimiser (2 steps)", target, target)
        # the white-box optimiser is its own reference: share 1 exactly, and it does steer every tiny target
        assert all(r["attack_gain"] == r["whitebox_attack_gain"] and r["held_out"] == "0" for r in whitebox)
        assert sum(float(r["whitebox_attack_gain"]) for r in whitebox) > 0
        assert f"| optimiser (2 steps) [{target}] |" in share_table
        # no noise, no gain, on every target
        assert all(float(r["attack_gain"]) == 0 for r in cells("none", "", target))
    # held out: the targets a row's noise was not made against
    held = {(r["method"], r["target"]): r["held_out"] for r in rows}
    assert held[("generator ensemble [lama-tiny-ft+lama-tiny-seed1]", "lama-tiny")] == "1"
    assert held[("generator ensemble [lama-tiny-ft+lama-tiny-seed1]", "lama-tiny-ft")] == "0"
    assert held[("optimiser ensemble (2 steps) [lama-tiny+lama-tiny-ft]", "lama-tiny-seed1")] == "1"
    assert held[("generator", "lama-tiny-seed1")] == "1" and held[("none", "lama-tiny")] == "0"
    held_table = report.split("### Held-out targets")[1].split("##")[0]
    assert "| generator ensemble [lama-tiny-ft+lama-tiny-seed1] | lama-tiny |" in held_table
    # an ensemble steers each of its members
    for member in ("lama-tiny", "lama-tiny-ft"):
        ensemble = cells("optimiser ensemble (2 steps) [lama-tiny+lama-tiny-ft]", "lama-tiny+lama-tiny-ft", member)
        assert sum(float(r["attack_gain"]) for r in ensemble) > 0

    # the matrix's records go to the W&B run too
    (run,) = (out / "wandb").glob("offline-run-*")
    logged = read_offline_run(run)
    assert logged.summary["compare/transfer/nrows"] == len(ROWS) * len(TARGETS)

    # the matrix's column for the attacked inpainter is the main table's scoring, image for image
    main = {(r["sample"], r["method"]): r for r in read_csv(out / "per_image.csv")}
    for method, against in ROWS:
        if (method, against) in [("optimiser (2 steps)", "lama-tiny-ft"), ("optimiser (2 steps)", "lama-tiny-seed1")]:
            continue  # white-box runs against the other targets are not methods of the main table
        for r in cells(method, against, "lama-tiny"):
            assert float(r["attack_gain"]) == pytest.approx(float(main[(r["sample"], method)]["attack_gain"]),
                                                            rel=1e-5, abs=1e-9)


def test_ensemble_methods_accept_a_mapping_or_a_list_and_check_their_fields(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("methods: {optimiser_ensemble: {inpainters: [a, b]}, generator_ensemble: {checkpoint: g}}\n")
    cfg = load_config(path)
    assert [e.inpainters for e in cfg.methods.optimiser_ensemble] == [["a", "b"]]
    assert cfg.methods.optimiser_ensemble[0].mode == "mean" and cfg.methods.generator_ensemble[0].inpainters is None
    cfg = load_config(ROOT / "configs" / "compare" / "transfer.yaml")
    assert cfg.targets == TARGETS and len(cfg.methods.optimiser_ensemble) == 3
    assert generator_inpainters(cfg.methods.generator_fast.checkpoint) == ["lama-tiny"]
    assert [e.inpainters for e in cfg.methods.generator_ensemble] == [
        ["lama-tiny-ft", "lama-tiny-seed1"], ["lama-tiny", "lama-tiny-seed1"], ["lama-tiny", "lama-tiny-ft"]]
    # leave-one-out: each ensemble leaves out exactly one target
    for spec in [*cfg.methods.optimiser_ensemble, *cfg.methods.generator_ensemble]:
        assert len(set(cfg.targets) - set(spec.inpainters)) == 1
    # the generators are shipped, so that the config runs on a fresh clone, and were trained against what it says
    for spec in cfg.methods.generator_ensemble:
        assert generator_inpainters(spec.checkpoint) == spec.inpainters




def test_ensemble_generators_of_the_same_models_are_told_apart_by_their_mode(tmp_path, stand_ins):
    from trainer.training.generator_module import GeneratorModule

    pair = ["lama-tiny", "lama-tiny-ft"]
    for mode in ("mean", "random"):
        module = GeneratorModule(inpainters=pair, ensemble=mode, widths=[8, 16], groups=4)
        module.export(tmp_path / f"{mode}.safetensors")
    single = GeneratorModule(inpainter="lama-tiny", widths=[8, 16], groups=4).export(tmp_path / "one.safetensors")
    path = tmp_path / "modes.yaml"
    path.write_text(yaml.safe_dump({"methods": {"none": None, "generator_ensemble": [
        {"checkpoint": str(tmp_path / f"{mode}.safetensors")} for mode in ("mean", "random")]}}))
    names = list(build_methods(load_config(path), InpainterPool()("lama-tiny")).methods)
    assert names == ["none", "generator ensemble [lama-tiny+lama-tiny-ft]",
                     "generator ensemble (random member per batch) [lama-tiny+lama-tiny-ft]"]
    assert "ensemble" not in read_metadata(single)  # a one-model generator has no mode


def test_a_missing_target_fails_before_any_method_runs(tmp_path, capsys, stand_ins):
    config = yaml.safe_load(CONFIG.read_text())
    config["targets"] = ["lama-tiny", "lama-tiny-nowhere"]
    path = tmp_path / "missing.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["compare", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no inpainter checkpoint 'lama-tiny-nowhere'" in err
    assert not (tmp_path / "out").exists()


def test_pool_tells_one_inpainter_under_two_names_apart_from_another(tmp_path, stand_ins):
    pool = InpainterPool()
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes((stand_ins / "lama-tiny.safetensors").read_bytes())
    assert pool.same("lama-tiny", str(copy)) and not pool.same("lama-tiny", "lama-tiny-ft")
    assert pool("lama-tiny") is pool("lama-tiny")  # loaded once
    assert pool.fingerprint("no-such-inpainter") is None and not pool.same("no-such-inpainter", "lama-tiny")


def test_a_generator_s_target_is_known_by_the_weights_its_export_recorded(tmp_path, stand_ins, ci_config):
    """Training records the target as typed: a relative path that does not resolve where compare runs made a
    white-box row look like transfer. The export records the weights' fingerprint too."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    (tmp_path / "mine.safetensors").write_bytes((stand_ins / "lama-tiny-seed1.safetensors").read_bytes())
    with contextlib.chdir(tmp_path):  # trained against "mine.safetensors", relative to tmp_path
        assert cli_main(["train", "fit", "--config", str(ci_config), "--model.inpainter", "mine.safetensors"]) == 0
        assert cli_main(["train", "export", "--ckpt_path", "ckpt/last.ckpt", "--out", "g.safetensors"]) == 0
    export = tmp_path / "g.safetensors"
    pool = InpainterPool()
    with contextlib.chdir(work):
        assert generator_inpainters(str(export), pool) == ["mine.safetensors"]
        assert pool.same("mine.safetensors", "lama-tiny-seed1") and not pool.same("mine.safetensors", "lama-tiny")
