"""Starting an inpainter fit from saved weights (``--model.init_from``) and the overlays of the other inpainters."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

import pytest
import torch

from trainer.commands import cli
from trainer.commands.fit_inpainter import main, make_cli
from trainer.inpainting.ffc import FFCResNetConfig
from trainer.inpainting.inpainter import build_inpainter, load_inpainter, save_inpainter
from trainer.training.lightning_cli import read_lightning_checkpoint

from .conftest import ROOT, header_chains

CONFIGS = ROOT / "configs" / "inpainter"
CI = str(CONFIGS / "ci.yaml")
# configs/inpainter/ci.yaml's generator: ngf 8, 2 downsamplings, 1 block (LaMa's other defaults)
CI_NET = FFCResNetConfig(ngf=8, n_downsampling=2, n_blocks=1)
QUIET = ["--trainer.logger", "false", "--model.attack_eval_every_n_epochs", "0", "--model.image_log_every_n_steps",
         "0"]


@pytest.fixture
def source(tmp_path) -> Path:
    """A saved inpainter with ci.yaml's architecture and weights no fresh module would have."""
    net = build_inpainter(CI_NET, seed=7).net
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    return save_inpainter(net, tmp_path / "source.safetensors")


def generator_parameters(path: Path) -> dict[str, torch.Tensor]:
    state = read_lightning_checkpoint(path)["state_dict"]
    return {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}


def test_init_from_loads_the_weights_exactly(tmp_path, source):
    with contextlib.chdir(tmp_path):
        fit = make_cli(["--config", CI, "--model.init_from", str(source), *QUIET], run=False)
    before = {k: v.clone() for k, v in fit.model.generator.state_dict().items()}
    fit.model.setup("fit")
    loaded = fit.model.generator.state_dict()
    expected = load_inpainter(source).net.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert any(not torch.equal(before[k], expected[k]) for k in expected)  # it did replace the fresh weights
    with torch.no_grad():
        for p in fit.model.generator.parameters():
            p.zero_()
    fit.model.setup("validate")  # only a fit starts from init_from: validate and export keep what they load
    assert all(not p.detach().any() for p in fit.model.generator.parameters())


def test_a_fit_starts_from_init_from_and_a_resumed_fit_keeps_its_own_weights(tmp_path, source):
    # learning rate 0: Adam's update is exactly 0, so the fitted parameters must be the source's, bit for bit
    frozen = ["--model.lr_generator", "0", "--model.lr_discriminator", "0"]
    with contextlib.chdir(tmp_path):
        assert main(["fit", "--config", CI, "--model.init_from", str(source), "--trainer.max_steps", "1",
                     *frozen, *QUIET]) == 0
    started = generator_parameters(tmp_path / "runs/ci/checkpoints/last.ckpt")
    names = [n for n, _ in load_inpainter(source).net.named_parameters()]
    expected = dict(load_inpainter(source).net.named_parameters())
    assert all(torch.equal(started[n], expected[n]) for n in names)

    # a fit without init_from and another one resumed with it: the resumed weights win, as they must
    other = tmp_path / "other"
    with contextlib.chdir(other.mkdir() or other):
        assert main(["fit", "--config", CI, "--trainer.max_steps", "1", *QUIET]) == 0
        own = generator_parameters(other / "runs/ci/checkpoints/last.ckpt")
        assert main(["fit", "--config", CI, "--model.init_from", str(source), "--ckpt_path", "last",
                     "--trainer.max_steps", "2", *frozen, *QUIET]) == 0
    resumed = generator_parameters(other / "runs/ci/checkpoints/last.ckpt")
    assert all(torch.equal(resumed[n], own[n]) for n in names)
    assert not all(torch.equal(resumed[n], expected[n]) for n in names)


@pytest.mark.parametrize("case, pattern", [
    ("wider", r"init_from '.*wide.safetensors' is another architecture: ngf 16 \(this model: 8\)"),
    ("shapes", r"weights in '.*shapes.safetensors' do not fit the architecture: missing keys"),
    ("generator", r"is a generator checkpoint, expected a checkpoint of kind 'inpainter'"),
    ("missing", r"no inpainter checkpoint 'no-such-inpainter'"),
    ("lama-folder", r"init_from '.*big-lama' is another architecture: n_downsampling 3 \(this model: 2\)"),
    ("bad-folder", r"'.*nockpt' is not a LaMa model directory: missing models/best.ckpt"),
])
def test_init_from_refuses_a_mismatched_checkpoint_with_one_line(tmp_path, capsys, case, pattern, tiny_inpainter):
    """Before the run folder and W&B run open: a LaMa folder was loaded only at setup, after both."""
    from .test_inpainter import make_lama_dir

    if case == "lama-folder":
        path = make_lama_dir(tmp_path / "big-lama", tiny_inpainter)
    elif case == "bad-folder":
        path = make_lama_dir(tmp_path / "nockpt", tiny_inpainter)
        (path / "models" / "best.ckpt").unlink()
    elif case == "wider":
        path = save_inpainter(build_inpainter(FFCResNetConfig(ngf=16, n_downsampling=2, n_blocks=1)).net,
                              tmp_path / "wide.safetensors")
    elif case == "shapes":  # same architecture metadata, tensors of another network: caught key for key
        from generator import checkpoint

        other = build_inpainter(FFCResNetConfig(ngf=8, n_downsampling=2, n_blocks=2)).net.state_dict()
        path = checkpoint.save(other, tmp_path / "shapes.safetensors", "inpainter",
                               {"architecture": "ffc_resnet", **CI_NET.to_dict()})
    elif case == "generator":
        from generator.protector import save_generator
        from generator.unet import NoiseUNet, UNetConfig

        path = save_generator(NoiseUNet(UNetConfig(widths=[8, 16], groups=4)), tmp_path / "gen.safetensors")
    else:
        path = "no-such-inpainter"
    with contextlib.chdir(tmp_path):
        code = cli.main(["fit-inpainter", "fit", "--config", CI, "--model.init_from", str(path),
                         "--trainer.max_steps", "1", *QUIET])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("paintguard: error: ") and re.search(pattern, err[0]), err
    assert not (tmp_path / "runs").exists()  # refused before the run folder and W&B run open


# --- the overlays ------------------------------------------------------------------------------

def header_chain(name: str) -> list[list[Path]]:
    """Every ``--config`` chain of the fit commands in an overlay's header, in order."""
    return header_chains(CONFIGS / name, "paintguard fit-inpainter fit")


def parse(chain: list[Path], *extra: str):
    return make_cli([a for p in chain for a in ("--config", str(p))] + list(extra), run=False)


@pytest.mark.parametrize("name, run_name", [("lama-tiny.yaml", "lama-tiny"), ("lama-tiny-ft.yaml", "lama-tiny-ft"),
                                            ("lama-tiny-seed1.yaml", "lama-tiny-seed1")])
def test_every_inpainter_config_writes_to_its_own_run_folder(tmp_path, name, run_name):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from trainer.training.lightning_cli import ExportOnTrainEnd

    chains = header_chain(name)
    assert chains and all(chain[-1].name == name for chain in chains if name != "lama-tiny.yaml")
    for chain in chains:
        with contextlib.chdir(tmp_path):
            fit = parse(chain)
        assert fit.config.run_name == run_name
        dirs = {Path(c.dirpath).relative_to(tmp_path) for c in fit.trainer.callbacks if isinstance(c, ModelCheckpoint)}
        assert dirs == {Path(f"runs/{run_name}/checkpoints")}
        exports = [c.path for c in fit.trainer.callbacks if isinstance(c, ExportOnTrainEnd)]
        assert exports == [f"runs/{run_name}/{run_name}.safetensors"]
        assert Path(fit.trainer.logger.save_dir) == tmp_path / "runs" / run_name


def test_fine_tune_overlay_starts_from_lama_tiny_with_the_final_recipe_and_a_short_average(tmp_path):
    from lightning.pytorch.callbacks import EMAWeightAveraging

    (chain,) = header_chain("lama-tiny-ft.yaml")
    with contextlib.chdir(tmp_path):
        fit = parse(chain)
    hp = fit.model.hparams
    assert hp.init_from == "lama-tiny" and (hp.ngf, hp.n_blocks) == (32, 6)
    assert (hp.lr_generator, hp.adversarial, hp.l1_missing) == (1e-4, 3.0, 10.0)
    assert fit.datamodule.train_dir == "data/editor-photos" and fit.datamodule.val_dir is None
    assert 100 <= fit.trainer.max_steps <= 5000
    (ema,) = [c for c in fit.trainer.callbacks if isinstance(c, EMAWeightAveraging)]
    # the averaging function of decay d moves an average of 0 to 1 - d towards a new value of 1
    assert float(ema._kwargs["avg_fn"](torch.tensor(0.0), torch.tensor(1.0), 1)) == pytest.approx(0.01)
    # the shipped lama-tiny fits the overlay's architecture, key for key
    fit.model.load_generator_from("lama-tiny")
    shipped = load_inpainter("lama-tiny").net.state_dict()
    assert all(torch.equal(fit.model.generator.state_dict()[k], v) for k, v in shipped.items())


def test_independent_overlay_changes_the_seeds_and_nothing_of_the_architecture(tmp_path):
    chains = header_chain("lama-tiny-seed1.yaml")
    assert len(chains) == 2 and chains[1][-2].name == "lama-tiny-256.yaml"
    with contextlib.chdir(tmp_path):
        base, seed1 = parse(chains[0][:-1]), parse(chains[0])
    assert (seed1.config.seed_everything, seed1.datamodule.seed) == (1, 1)
    assert base.config.seed_everything == 0 and base.datamodule.seed == 0
    assert seed1.model.hparams.init_from is None
    assert {k: v for k, v in seed1.model.hparams.items()} == {k: v for k, v in base.model.hparams.items()}
    assert seed1.datamodule.train_dir == "data/photos"
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
