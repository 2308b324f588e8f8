"""Generator training end to end: LightningCLI, W&B offline history, resume, teacher cache, export."""


import logging
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from generator import Protector
from trainer.commands.train import main as train_main
from trainer.inpainting.inpainter import build_inpainter, load_inpainter, save_inpainter
from trainer.training.teacher_cache import TeacherCache, WithTeacher, build_teacher_cache
from trainer.training.wandb_logger import read_offline_run

from .conftest import ROOT, header_chains, offline_run


def test_fit_logs_to_wandb_offline_and_resumes(tmp_path, ci_config):
    assert train_main(["fit", "--config", str(ci_config)]) == 0
    run = read_offline_run(offline_run(tmp_path))
    keys = set().union(*run.history)
    for key in ("train/total", "train/attack", "train/hide", "val/attack_psnr", "val/teacher_attack_psnr",
                "val/success", "val/hide_psnr", "val/noise_psnr", "val/linf", "val/share_of_attack_gain"):
        assert key in keys, key
    assert any(k.startswith("train/panel") for k in keys)
    assert run.config.get("model", {}).get("inpainter") or any("inpainter" in k for k in run.config)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4

    first_id = torch.load(last, weights_only=True)["paintguard_wandb_run_id"]
    assert first_id in offline_run(tmp_path).name

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train_main(["fit", "--config", str(ci_config), "--trainer.max_steps", "6", "--ckpt_path", "last",
                           "--model.lr", "2e-5"]) == 0
    # a resume writes into its own folder by design: Lightning's "exists and is not empty" said nothing; nor did
    # Lightning's deprecated use of torch's pytree (LeafSpec), which no user can act on
    assert not [w for w in caught if "exists and is not empty" in str(w.message) or "LeafSpec" in str(w.message)]
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] == 6
    assert resumed["optimizer_states"][0]["param_groups"][0]["lr"] == 2e-5  # the config's, not the checkpoint's
    assert resumed["optimizer_states"][0]["state"]  # Adam moments carried over
    # the resumed fit logs to the same W&B run (a second offline folder with the same id, merged by `wandb sync`)
    runs = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(first_id in r.name for r in runs)  # a same-second restart adds "-1"
    assert resumed["paintguard_wandb_run_id"] == first_id
    # validating the checkpoint is a run of its own: its metrics (at global step 0) stay out of the training curves
    assert train_main(["validate", "--config", str(ci_config), "--ckpt_path", "last"]) == 0
    runs = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 3 and sum(first_id in r.name for r in runs) == 2


def test_cosine_decay_lowers_the_learning_rate_per_step_and_resumes(tmp_path, ci_config):
    decay = ["--model.lr", "1e-3", "--model.lr_decay_steps", "4", "--model.lr_final", "1e-5"]
    assert train_main(["fit", "--config", str(ci_config), "--trainer.max_steps", "2", *decay]) == 0
    last = tmp_path / "ckpt" / "last.ckpt"
    lr = torch.load(last, weights_only=True)["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # half way down the cosine after 2 of 4 steps
    # resumed from the config the run saved in its folder, which carries the schedule's options
    assert train_main(["fit", "--config", str(tmp_path / "runs" / "config.yaml"), "--trainer.max_steps", "6",
                       "--ckpt_path", "last"]) == 0
    resumed = torch.load(last, weights_only=True)
    assert resumed["lr_schedulers"][0]["last_epoch"] == 6  # the schedule went on from step 2, not from 0
    assert resumed["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-5)  # flat after step 4
    shutil.rmtree(tmp_path / "ckpt")  # a new run: a fit refuses to start beside another run's checkpoints
    with pytest.raises(ValueError, match=r"need lr_decay_steps >= 0 and 0 <= lr_final <= lr, got 0 and 0.002"):
        train_main(["fit", "--config", str(ci_config), "--model.lr_final", "2e-3"])


def test_export_gives_a_working_protector(tmp_path, ci_config):
    assert train_main(["fit", "--config", str(ci_config)]) == 0
    out = tmp_path / "g.safetensors"
    assert train_main(["export", "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt"), "--out", str(out)]) == 0
    protector = Protector.from_checkpoint(out)
    image, mask = torch.rand(1, 3, 20, 28), torch.zeros(1, 1, 20, 28)
    mask[..., 5:15, 8:20] = 1
    assert (protector.protect(image, mask) - image).abs().max() <= 0.025 + 1e-6


def test_export_of_a_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    from trainer.commands.cli import main

    junk = tmp_path / "junk.ckpt"
    junk.write_text("junk")
    out = tmp_path / "x.safetensors"
    assert main(["train", "export", "--ckpt_path", str(junk), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"paintguard: error: cannot read Lightning checkpoint '{junk}': not a PyTorch checkpoint, or a "
                   "damaged one (struct.error: unpack requires a buffer of 4 bytes)")
    assert not out.exists()
    assert main(["train", "export", "--ckpt_path", str(tmp_path), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"paintguard: error: '{tmp_path}' is a folder; give a checkpoint file, "
                                               "such as runs/NAME/checkpoints/last.ckpt")  # "no checkpoint" before


def test_help_lists_export_beside_lightning_s_subcommands(capsys):
    assert train_main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "{fit,validate}" in text and "'export --ckpt_path CKPT --out FILE.safetensors [--overwrite]'" in text


def test_teacher_cache_and_distillation(tmp_path, ci_config, tiny_inpainter):
    cache_path = build_teacher_cache(str(tmp_path / "inpainter.safetensors"), tmp_path / "cache.safetensors",
                                     count=4, size=32, steps=2, batch_size=2)
    cache = TeacherCache(cache_path)
    assert len(cache) == 4
    with pytest.raises(ValueError, match="does not exist; build it first: paintguard teacher-cache --out"):
        TeacherCache(tmp_path / "missing.safetensors")
    item = cache[0]
    assert item["teacher_noise"].abs().max() <= 0.025 + 1e-3 and item["has_teacher"] == 1
    assert (item["image"] * 255 - (item["image"] * 255).round()).abs().max() < 1e-4  # 8-bit crops

    fresh = [{"image": torch.zeros(3, 32, 32), "mask": torch.zeros(1, 32, 32)}] * 20
    mixed = WithTeacher(fresh, cache, fraction=0.5, seed=0)
    flags = [float(mixed[i]["has_teacher"]) for i in range(20)]
    assert 0 < sum(flags) < 20 and flags == [float(mixed[i]["has_teacher"]) for i in range(20)]

    assert train_main(["fit", "--config", str(ci_config), "--model.teacher_weight", "1.0",
                       "--data.teacher_cache", str(cache_path), "--data.teacher_fraction", "1.0"]) == 0
    run = read_offline_run(offline_run(tmp_path))
    assert any("train/distill" in row for row in run.history)


def test_an_interrupted_teacher_cache_leaves_the_old_one(tmp_path, ci_config, monkeypatch):
    """Minutes of optimising are written all or nothing: a failed write keeps the previous cache as it was."""
    import trainer.training.teacher_cache as teacher_cache

    cache_path = build_teacher_cache(str(tmp_path / "inpainter.safetensors"), tmp_path / "c.safetensors",
                                     count=2, size=32, steps=1, batch_size=2)
    before = cache_path.read_bytes()

    def half_then_fail(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(teacher_cache, "save_file", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        build_teacher_cache(str(tmp_path / "inpainter.safetensors"), cache_path, count=2, size=32, steps=1,
                            batch_size=2, seed=1)
    assert cache_path.read_bytes() == before and not list(tmp_path.glob(".*partial*"))


def test_teacher_cache_of_other_weights_is_refused(tmp_path, ci_config, tiny_inpainter):
    cache_path = build_teacher_cache(str(tmp_path / "inpainter.safetensors"), tmp_path / "c.safetensors",
                                     count=2, size=32, steps=1, batch_size=2)
    assert TeacherCache(cache_path).metadata["inpainter_fingerprint"] == load_inpainter(
        tmp_path / "inpainter.safetensors").fingerprint()
    other = build_inpainter(load_inpainter(tmp_path / "inpainter.safetensors").config, seed=1)
    save_inpainter(other, tmp_path / "inpainter.safetensors")  # same path, new weights: a retrained inpainter
    with pytest.raises(ValueError, match="was built against another inpainter .* rebuild it: paintguard teacher-cache"):
        train_main(["fit", "--config", str(ci_config), "--data.teacher_cache", str(cache_path)])


def test_bad_teacher_cache_size_is_reported(tmp_path, ci_config):
    cache_path = build_teacher_cache(str(tmp_path / "inpainter.safetensors"), tmp_path / "c.safetensors",
                                     count=2, size=48, steps=1, batch_size=2)
    with pytest.raises(ValueError, match="48 px crops but training uses 32 px"):
        train_main(["fit", "--config", str(ci_config), "--data.teacher_cache", str(cache_path)])


def test_ddp_two_cpu_processes_with_gloo(tmp_path, ci_config):
    """Two ranks on the CPU: Lightning relaunches the command, each rank trains, rank 0 checkpoints."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "trainer.commands.cli", "train", "fit", "--config", str(ci_config),
         "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**__import__("os").environ, "PL_TORCH_DISTRIBUTED_BACKEND": "gloo", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert "All distributed processes registered" in proc.stderr + proc.stdout
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_best_checkpoint_is_an_artifact_of_the_offline_run(tmp_path, ci_config):
    config = yaml.safe_load(ci_config.read_text())
    config["trainer"]["logger"]["init_args"]["log_model"] = True
    config["trainer"]["callbacks"][0]["init_args"].update(monitor="val/total_loss", mode="min")
    ci_config.write_text(yaml.safe_dump(config))
    assert train_main(["fit", "--config", str(ci_config)]) == 0
    artifacts = read_offline_run(offline_run(tmp_path)).artifacts
    assert any(a["type"] == "model" and "best" in a["aliases"] for a in artifacts), artifacts


def test_validation_keeps_the_bound_after_8bit_rounding(tmp_path, ci_config):
    assert train_main(["fit", "--config", str(ci_config)]) == 0
    run = read_offline_run(offline_run(tmp_path))
    linf = [row[k] for row in run.history for k in ("val/linf", "val/teacher_linf") if k in row]
    assert linf and max(linf) <= 0.025 + 1e-6


GENERATOR_CONFIGS = sorted(p.name for p in (ROOT / "configs" / "generator").glob("*.yaml"))


def config_chain(name: str) -> list[Path]:
    """The --config files of the first `paintguard train` command in a config's header that composes it, up to it
    (the file alone if none)."""
    path = ROOT / "configs" / "generator" / name
    for chain in header_chains(path, "paintguard train"):
        names = [p.name for p in chain]
        if name in names:
            return chain[:names.index(name) + 1]
    return [path]


def parse_generator_config(name: str, *extra: str):
    from trainer.training.generator_module import GeneratorModule
    from trainer.training.lightning_cli import make_cli
    from trainer.training.teacher_cache import ProtectionDataModule

    argv = [a for path in config_chain(name) for a in ("--config", str(path))]
    return make_cli(GeneratorModule, ProtectionDataModule, [*argv, "--trainer.accelerator", "cpu", "--trainer.devices",
                                                            "1", "--trainer.strategy", "auto", *extra], "test", "",
                    run=False)


@pytest.mark.parametrize("name", GENERATOR_CONFIGS)
def test_every_generator_config_parses(name):
    """Each config a user starts, composed as its header says, builds its model, data and trainer."""
    from trainer.training.generator_module import GeneratorModule

    cli = parse_generator_config(name, "--trainer.logger", "false")
    assert isinstance(cli.model, GeneratorModule) and cli.model.hparams.eps == 0.025
    assert config_chain(name)[-1].name == name  # an overlay's header composes the overlay itself


@pytest.mark.parametrize("value, batches", [("1", 1), ("1.0", 1.0), ("3", 3), ("0.5", 0.5)])
def test_one_batch_means_one_batch(value, batches):
    """--trainer.limit_val_batches 1 was read as 1.0, which Lightning takes for all of them (typing's union cache)."""
    cli = parse_generator_config("lama-tiny.yaml", "--trainer.logger", "false", "--trainer.limit_val_batches", value,
                                 "--trainer.limit_train_batches", value)
    for limit in (cli.trainer.limit_val_batches, cli.trainer.limit_train_batches):
        assert limit == batches and type(limit) is type(batches)


@pytest.mark.parametrize("name", GENERATOR_CONFIGS)
def test_every_overlay_writes_to_its_own_run_folder(name):
    """run_name names the checkpoint folder and the export: two variants never share a run folder."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from trainer.training.lightning_cli import ExportOnTrainEnd

    if name == "demo.yaml":
        pytest.skip("the demo run is a fixed, throwaway folder: runs/demo")
    cli = parse_generator_config(name)
    run_name = cli.config.run_name
    assert run_name == "generator-" + name.removesuffix(".yaml")
    dirs = {Path(c.dirpath).name for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)}
    parents = {Path(c.dirpath).parent.name for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)}
    assert dirs == {"checkpoints"} and parents == {run_name}
    exports = [c.path for c in cli.trainer.callbacks if isinstance(c, ExportOnTrainEnd)]
    assert exports == [f"runs/{run_name}/{run_name}.safetensors"]
    assert "${" not in str(cli.trainer.logger.save_dir) + str(cli.trainer.logger.name)


@pytest.mark.parametrize("name", GENERATOR_CONFIGS)
def test_last_checkpoint_is_the_newest_snapshot(name):
    """`--ckpt_path last` must resume from the frequent snapshots, not from the last best validation."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoints = [c for c in parse_generator_config(name).trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert [c._every_n_train_steps > 0 for c in checkpoints if c.save_last] == [True]


def test_the_readme_s_keep_every_snapshot_callback_builds_on_the_generator_configs():
    """The README's appended ModelCheckpoint must not clash with the configs' own 100-step snapshot."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    readme = " ".join((ROOT / "README.md").read_text().split())
    fragment = readme.split("append a checkpoint callback: `", 1)[1].split("`", 1)[0].split()
    checkpoints = [c for c in parse_generator_config("lama-tiny-256.yaml", *fragment).trainer.callbacks
                   if isinstance(c, ModelCheckpoint)]
    keep_all = [c for c in checkpoints if c.save_top_k == -1]
    assert len(keep_all) == 1 and keep_all[0]._every_n_train_steps == 100
    assert Path(keep_all[0].dirpath).parts[-3:] == ("runs", "RUN", "snapshots")
    assert len({c.state_key for c in checkpoints}) == len(checkpoints)


def test_teacher_cache_command_checks_its_options_and_out_before_running(tmp_path, inpainter_file, capsys):
    from trainer.commands.cli import main as cli_main

    out = tmp_path / "cache.safetensors"
    base = ["teacher-cache", "--inpainter", inpainter_file, "--count", "1", "--size", "16", "--batch-size", "1"]
    before = Path(inpainter_file).read_bytes()
    cases = {("--steps", "-1", "--out", str(out)): "--steps and --batch-size must be >= 1, got -1",
             ("--steps", "0", "--out", str(out)): "--steps and --batch-size must be >= 1, got 0",
             ("--steps", "1", "--out", str(tmp_path)): "is a folder; give the safetensors file to write",
             # 'runs/tc/' was written as a file named 'runs/tc'
             ("--steps", "1", "--out", f"{tmp_path}/new/"): f"--out must be a .safetensors file, got '{tmp_path}/new'",
             ("--steps", "1", "--out", inpainter_file): "exists and is not a teacher cache; refusing to replace it"}
    for args, message in cases.items():
        assert cli_main([*base, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    assert not out.exists() and Path(inpainter_file).read_bytes() == before  # the input is intact
    for _ in range(2):  # rebuilding a cache in place is what a stale cache's message asks for
        assert cli_main([*base, "--steps", "1", "--out", str(out)]) == 0
    assert len(TeacherCache(out)) == 1


def test_lightning_s_adverts_stay_out_of_the_training_logs(tmp_path, caplog, monkeypatch):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from trainer.training.lightning_cli import not_an_advert

    caplog.set_level(logging.INFO)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert not_an_advert in rank_zero.filters  # the import installed it
    said = []
    for filtered in (False, True):
        monkeypatch.setattr(rank_zero, "filters", [not_an_advert] if filtered else [])
        caplog.clear()
        L.Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", enable_progress_bar=False)
        said.append([record.getMessage() for record in caplog.records])
    assert any(line.startswith("💡 Tip") for line in said[0])  # what Lightning says unfiltered
    assert any("GPU available" in line for line in said[1]) and not any("Tip" in line for line in said[1]), said
