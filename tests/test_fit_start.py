"""What a fit refuses before it opens its run folder and W&B run."""

from __future__ import annotations

import contextlib

import pytest

from trainer.commands import cli

from .conftest import ROOT, one_line_error


@pytest.mark.parametrize("command, config, kind", [
    ("train", ROOT / "configs" / "ci.yaml", "generator"),
    ("fit-inpainter", ROOT / "configs" / "inpainter" / "ci.yaml", "inpainter"),
])
def test_a_missing_init_from_is_refused_before_the_run_folder_exists(tmp_path, capsys, command, config, kind):
    with contextlib.chdir(tmp_path):  # both configs log to W&B offline under runs/
        code = cli.main([command, "fit", "--config", str(config), "--model.init_from", "no-such-file.safetensors"])
    assert code == 2
    assert one_line_error(capsys, logs_before=True).startswith(f"no {kind} checkpoint 'no-such-file.safetensors'")
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, no offline W&B run


@pytest.mark.parametrize("argv, example", [(["train"], "configs/generator/lama-tiny.yaml"),
                                           (["fit-inpainter", "fit"], "configs/inpainter/lama-tiny.yaml")])
def test_a_bare_train_asks_for_a_config(tmp_path, capsys, argv, example):
    """It started a fit with Lightning's defaults: 1000 epochs of 256 px crops, seven minutes before its first step.
    fit-inpainter was pointed to the generator's config, which it refuses."""
    with contextlib.chdir(tmp_path):
        assert cli.main(argv) == 2
    assert one_line_error(capsys, logs_before=True).startswith(f"a fit needs --config: a model's YAML such as {example}")
    assert list(tmp_path.iterdir()) == []


def test_a_resume_whose_weights_do_not_fit_is_refused_before_anything_opens(tmp_path, ci_config, capsys):
    """Lightning found it out after reopening the W&B run and rewriting config.yaml, so that the run's own
    config.yaml then failed the same way; its message was cut before the detail."""
    assert cli.main(["train", "fit", "--config", str(ci_config)]) == 0
    opened = lambda: (sorted((tmp_path / "runs" / "wandb").glob("offline-run-*")),  # noqa: E731
                      {p: p.read_text() for p in tmp_path.rglob("config.yaml")})
    before = opened()
    capsys.readouterr()
    assert cli.main(["train", "fit", "--config", str(ci_config), "--ckpt_path", "last", "--model.widths",
                     "[8, 32]", "--trainer.max_steps", "6"]) == 2
    error = one_line_error(capsys, logs_before=True)
    assert "last.ckpt' does not fit this model (" in error and "model.widths [8, 16] there, [8, 32] here" in error
    assert opened() == before
    # a finished run resumed with its own max_steps stopped at once, having opened all of that
    assert cli.main(["train", "fit", "--config", str(ci_config), "--ckpt_path", "last"]) == 2
    assert one_line_error(capsys, logs_before=True).endswith("last.ckpt' is at step 4, and --trainer.max_steps is 4: "
                                                             "raise it to train on")
    assert opened() == before


def test_a_fit_from_another_run_s_checkpoint_is_a_w_and_b_run_of_its_own(tmp_path, ci_config):
    """Its curves went into the other run's W&B run, from another folder."""
    import torch
    import yaml

    assert cli.main(["train", "fit", "--config", str(ci_config)]) == 0
    first = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["paintguard_wandb_run_id"]
    branch = yaml.safe_load(ci_config.read_text())
    branch["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "branch")
    (tmp_path / "branch.yaml").write_text(yaml.safe_dump(branch))
    assert cli.main(["train", "fit", "--config", str(tmp_path / "branch.yaml"), "--trainer.max_steps", "6",
                     "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")]) == 0
    branched = torch.load(tmp_path / "branch" / "last.ckpt", weights_only=True)
    assert branched["global_step"] == 6 and branched["paintguard_wandb_run_id"] != first
