"""End-to-end: tiny fits through the real CLI and config (configs/inpainter/ci.yaml), a few seconds each."""

import contextlib
import math
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from trainer.commands import cli
from trainer.commands.fit_inpainter import main, make_cli
from trainer.inpainting.inpainter import load_inpainter
from trainer.training.inpainter_module import InpainterModule
from trainer.training.lightning_cli import read_lightning_checkpoint
from trainer.training.wandb_logger import OfflineRun, PaintGuardWandbLogger, read_offline_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "inpainter"
CI = str(CONFIGS / "ci.yaml")
STEPS = 4  # trainer.max_steps in ci.yaml; 2 batches per epoch


@contextlib.contextmanager
def one_thread():
    # tiny tensors gain nothing from a second thread, and on a shared CPU OpenMP threads spinning against
    # another process's make a 1 s fit take 30 s
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One fit shared by the tests below (it is the slow part); its files land under runs/ci of a tmp dir."""
    root = tmp_path_factory.mktemp("fit")
    with contextlib.chdir(root), one_thread():
        assert main(["fit", "--config", CI]) == 0
    return root


def offline_runs(root: Path) -> list[Path]:
    return sorted((root / "runs/ci/wandb").glob("offline-run-*"))


def read_run(run_dir: Path, timeout: float = 30.0) -> OfflineRun:
    """The offline run once wandb's service has written all of it (it writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while not (run := read_offline_run(run_dir)).finished and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.finished, f"wandb never finished writing {run_dir}"
    return run


def train_steps(run_dir: Path) -> list[int]:
    return [row["trainer/global_step"] for row in read_run(run_dir).history if "train/gen_l1" in row]


def module_from_checkpoint(path: Path) -> InpainterModule:
    blob = read_lightning_checkpoint(path)
    module = InpainterModule(**{k: v for k, v in blob["hyper_parameters"].items() if not k.startswith("_")})
    module.load_state_dict(blob["state_dict"])
    return module.eval()


def sample_batch(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    mask = torch.zeros(2, 1, size, size)
    mask[..., 8:20, 6:26] = 1
    return torch.rand(2, 3, size, size), mask


def test_fit_writes_checkpoints_and_counts_batches_as_steps(trained):
    checkpoints = trained / "runs/ci/checkpoints"
    blob = read_lightning_checkpoint(checkpoints / "last.ckpt")
    # global_step counts batches, although two optimisers step on each
    assert blob["global_step"] == STEPS
    assert len(blob["optimizer_states"]) == 2
    assert (checkpoints / f"epoch=1-step={STEPS}.ckpt").is_file()


def test_wandb_offline_run_holds_history_summary_config_and_panels(trained):
    (run_dir,) = offline_runs(trained)
    run = read_run(run_dir)
    assert train_steps(run_dir) == list(range(STEPS))
    train = [row for row in run.history if "train/gen_l1" in row]
    for key in ("train/gen_highfreq", "train/gen_adv", "train/gen_fm", "train/disc_total", "train/disc_r1"):
        assert all(math.isfinite(row[key]) for row in train), key
    val = [row for row in run.history if "val/hole_psnr" in row]
    assert len(val) == 2  # one validation per epoch
    for key in ("val/hole_l1", "val/meanfill_hole_psnr", "probe/steering_gain", "probe/attack_psnr_before",
                "probe/attack_psnr_after", "probe/success_rate"):
        assert math.isfinite(run.summary[key]), key
    assert run.config["ngf"] == 8 and run.config["size"] == 32
    panels = list((run_dir / "files/media/images").rglob("*.png"))
    assert any("train" in str(p) for p in panels) and any("val" in str(p) for p in panels)


def test_exported_generator_loads_back_and_inpaints_like_the_checkpoint(trained, tmp_path):
    module = module_from_checkpoint(trained / "runs/ci/checkpoints/last.ckpt")
    image, mask = sample_batch()
    with torch.no_grad():
        expected = module(image, mask)
    # written by the ExportInpainter callback at the end of training ...
    at_end = load_inpainter(trained / "runs/ci/ci.safetensors")
    assert torch.allclose(at_end(image, mask), expected, atol=1e-6)
    # ... and by the export command from the checkpoint
    out = tmp_path / "exported.safetensors"
    assert main(["export", "--ckpt_path", str(trained / "runs/ci/checkpoints/last.ckpt"), "--out", str(out)]) == 0
    assert torch.allclose(load_inpainter(out)(image, mask), expected, atol=1e-6)
    # refuses to overwrite without --overwrite, as a one-line error through the dispatcher
    assert cli.main(["fit-inpainter", "export", "--ckpt_path", str(trained / "runs/ci/checkpoints/last.ckpt"),
                     "--out", str(out)]) == 2


def test_resume_from_last_checkpoint_continues_the_step_count(trained, tmp_path):
    shutil.copytree(trained / "runs/ci/checkpoints", tmp_path / "runs/ci/checkpoints")
    with contextlib.chdir(tmp_path):
        assert main(["fit", "--config", CI, "--ckpt_path", "last", "--trainer.max_steps", str(STEPS + 2)]) == 0
    (run_dir,) = offline_runs(tmp_path)
    assert train_steps(run_dir) == [STEPS, STEPS + 1]
    assert read_lightning_checkpoint(tmp_path / "runs/ci/checkpoints/last.ckpt")["global_step"] == STEPS + 2


@pytest.mark.parametrize("resume", ["last", "file"])
def test_resumed_fit_takes_the_learning_rates_and_weights_from_the_config_not_the_checkpoint(trained, tmp_path,
                                                                                           resume):
    shutil.copytree(trained / "runs/ci/checkpoints", tmp_path / "runs/ci/checkpoints")
    ckpt = "last" if resume == "last" else str(trained / "runs/ci/checkpoints/last.ckpt")
    with contextlib.chdir(tmp_path):
        assert main(["fit", "--config", CI, "--ckpt_path", ckpt, "--trainer.max_steps", str(STEPS + 1),
                     "--model.lr_generator", "2e-5", "--model.lr_discriminator", "3e-6",
                     "--model.l1_missing", "7"]) == 0
    blob = read_lightning_checkpoint(tmp_path / "runs/ci/checkpoints/last.ckpt")
    assert [[group["lr"] for group in state["param_groups"]] for state in blob["optimizer_states"]] == [[2e-5], [3e-6]]
    assert blob["hyper_parameters"]["l1_missing"] == 7


def test_validate_without_a_config_takes_the_model_from_the_checkpoint(trained, tmp_path):
    # the checkpoint's ngf 8 (ci.yaml) differs from the module's default 32: with no --config, Lightning's
    # reading of its hyperparameters is what lets the weights load
    ckpt = str(trained / "runs/ci/checkpoints/last.ckpt")
    with contextlib.chdir(tmp_path):
        assert main(["validate", "--ckpt_path", ckpt, "--trainer.logger", "false",
                     "--trainer.enable_progress_bar", "false", "--data.size", "32"]) == 0


def test_validate_subcommand_reports_metrics_and_probe(trained, tmp_path):
    ckpt = str(trained / "runs/ci/checkpoints/last.ckpt")
    with contextlib.chdir(tmp_path):
        assert main(["validate", "--config", CI, "--ckpt_path", ckpt]) == 0
    (run_dir,) = offline_runs(tmp_path)
    summary = read_run(run_dir).summary
    assert math.isfinite(summary["val/hole_psnr"]) and math.isfinite(summary["probe/steering_gain"])


def test_without_adversarial_term_no_discriminator_is_built_or_stepped(tmp_path):
    args = ["--config", CI, "--model.adversarial", "0", "--model.feature_matching", "0", "--trainer.max_steps", "2",
            "--model.attack_eval_every_n_epochs", "0", "--trainer.logger", "false"]
    with contextlib.chdir(tmp_path):
        fit = make_cli(args, run=False)
        assert fit.model.discriminator is None
        before = [p.detach().clone() for p in fit.model.generator.parameters()]
        fit.trainer.fit(fit.model, datamodule=fit.datamodule)
    assert fit.trainer.global_step == 2
    assert not any(k.startswith("train/disc") or k == "train/gen_adv" for k in fit.trainer.callback_metrics)
    assert "train/gen_highfreq" in fit.trainer.callback_metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, fit.model.generator.parameters()))


def test_lama_tiny_config_builds_the_default_model_and_its_export_is_under_20_mb(tmp_path):
    with contextlib.chdir(tmp_path):
        config = make_cli(["--config", str(CONFIGS / "lama-tiny.yaml")], run=False)
    model = config.model
    assert (model.hparams.ngf, model.hparams.n_blocks, config.datamodule.size) == (32, 6, 256)
    assert model.hparams.adversarial > 0 and model.discriminator is not None
    path = model.export(tmp_path / "lama-tiny.safetensors")
    assert path.stat().st_size < 20e6
    assert load_inpainter(path).config.ngf == 32


def test_photos_overlay_sets_the_final_phase_recipe_and_keeps_the_rest(tmp_path):
    with contextlib.chdir(tmp_path):
        config = make_cli(["--config", str(CONFIGS / "lama-tiny.yaml"), "--config",
                           str(CONFIGS / "lama-tiny-photos.yaml")], run=False)
    hp = config.model.hparams
    assert (hp.l1_missing, hp.highfreq, hp.adversarial, hp.ngf) == (10.0, 1.0, 10.0, 32)
    assert (config.datamodule.train_dir, config.datamodule.size) == ("data/photos", 128)
    assert any(type(c).__name__ == "EMAWeightAveraging" for c in config.trainer.callbacks)


def test_adversarial_zero_with_feature_matching_warns():
    with pytest.warns(UserWarning, match="feature matching needs the discriminator"):
        assert InpainterModule(ngf=8, n_blocks=1, adversarial=0.0, feature_matching=1.0).discriminator is None


# --- the W&B logger ------------------------------------------------------------------------------

@pytest.fixture
def no_account(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no such file yet
    return tmp_path / "netrc"


def test_logger_is_offline_without_an_account_and_keeps_paths_absolute(no_account, tmp_path):
    with contextlib.chdir(tmp_path):
        logger = PaintGuardWandbLogger()
    assert logger.offline and logger._wandb_init["mode"] == "offline"
    assert logger.save_dir == str(tmp_path / "runs")
    assert logger._wandb_init["project"] == "paintguard"


@pytest.mark.parametrize("env, netrc_host, online", [
    ({"WANDB_API_KEY": "x" * 40}, None, True),
    ({"WANDB_MODE": "online"}, None, True),
    ({}, "api.wandb.ai", True),
    ({}, "example.org", False),
    ({"WANDB_BASE_URL": "https://wandb.example.org"}, "wandb.example.org", True),
    ({"WANDB_API_KEY": "x" * 40, "WANDB_MODE": "offline"}, None, False),
])
def test_logger_goes_online_only_with_an_account(no_account, monkeypatch, env, netrc_host, online):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if netrc_host:
        no_account.write_text(f"machine {netrc_host}\n  login user\n  password {'y' * 40}\n")
    logger = PaintGuardWandbLogger()
    assert logger.offline is not online
    assert logger._wandb_init["mode"] == ("online" if online else "offline")


def test_logger_explicit_offline_and_disabled_mode_win(no_account, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert PaintGuardWandbLogger(offline=True).offline
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert PaintGuardWandbLogger()._wandb_init["mode"] == "disabled"


def test_log_model_offline_is_kept_for_the_end_of_the_run(no_account):
    # Lightning itself refuses log_model offline; ours stores checkpoints in the offline run when it ends
    logger = PaintGuardWandbLogger(log_model=True)
    assert logger.offline and not logger._log_model and logger._offline_log_model


def test_offline_run_leaves_the_environment_alone_and_is_finished_at_the_end(no_account, tmp_path):
    logger = PaintGuardWandbLogger(save_dir=tmp_path / "wb")
    logger.log_metrics({"a": 1.0}, step=0)
    logger.log_images("panel", [torch.rand(3, 8, 8), torch.rand(8, 8)], caption="x")
    assert "WANDB_MODE" not in os.environ  # Lightning would have left WANDB_MODE=dryrun behind
    logger.finalize("success")
    assert logger._experiment is None
    (run_dir,) = (tmp_path / "wb/wandb").glob("offline-run-*")
    history = read_run(run_dir).history
    assert history[0]["a"] == 1.0 and history[1]["panel/count"] == 2
