"""A new user's mistakes with ``paintguard train``: one line, exit code 2, and nothing written (no run folder, no
W&B run, no run config overwritten, no temporary file left)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from PIL import Image

from generator.checkpoint import save, torch_load
from trainer.commands.cli import main

from .conftest import ROOT, one_line_error


@pytest.fixture
def foreign_checkpoint(tmp_path):
    """A Lightning checkpoint of another command's model: the options an inpainter run saves."""
    path = tmp_path / "inpainter-run.ckpt"
    options = {"ngf": 8, "n_downsampling": 2, "n_blocks": 1, "disc_ndf": 8, "disc_n_layers": 2, "init_from": None}
    torch.save({"state_dict": {}, "hyper_parameters": {**options, "_instantiator": "x"}, "global_step": 2,
                "pytorch-lightning_version": "2.6.0"}, path)
    # and weights alone, as LaMa's models/best.ckpt holds: Lightning's restore would raise a KeyError
    torch.save({"state_dict": {}}, tmp_path / "weights-only.ckpt")
    return path


BAD_OPTIONS = [
    (["--trainer.max_steps", "-5"], "`max_steps` must be a non-negative integer or -1"),
    (["--trainer.devices", "0"], "`Trainer(devices='0')` value is not a valid input using cpu accelerator"),
    (["--ckpt_path", "missing.ckpt"], "--ckpt_path 'missing.ckpt' does not exist"),
    (["--ckpt_path", "."], "--ckpt_path '.' is a folder; give a checkpoint file such as last.ckpt"),
    (["--ckpt_path", "last"], "--ckpt_path last: no last.ckpt in '{tmp}/ckpt' to resume; leave out --ckpt_path"),
    (["--ckpt_path", "inpainter-run.ckpt"], "'inpainter-run.ckpt' holds another kind of model than this command "
                                            "trains (GeneratorModule): its options disc_n_layers, disc_ndf, "
                                            "n_blocks, ... are not this model's"),
    (["--ckpt_path", "weights-only.ckpt"], "'weights-only.ckpt' is not a Lightning checkpoint written by PaintGuard "
                                           "training"),
    (["--model.init_from", "inpainter.safetensors"], "'inpainter.safetensors' is an inpainter checkpoint, expected "
                                                     "a checkpoint of kind 'generator'"),  # after W&B had opened
    (["--model.inpainter", "nothere"], "no inpainter checkpoint 'nothere': not a file or a LaMa folder, and not a "
                                       "shipped name"),
    (["--model.inpainter", "empty"], "'empty' is not a LaMa model directory: missing config.yaml"),  # after W&B
    (["--model.init_from", "generator-lama-tiny"], "init_from 'generator-lama-tiny' is another architecture"),
    (["--data.train_dir", "nowhere"], "image folder 'nowhere' does not exist"),
    (["--data.val_dir", "empty"], "no images found in 'empty'"),
    (["--data.val_dir", "empty/notes.txt"], "image folder 'empty/notes.txt' is a file, not a folder"),
    (["--data.val_dir", "damaged"], "cannot read image 'damaged/cut.png'"),  # found at once, not when first drawn
    (["--data.val_dir", "tiny"], "image 'tiny/a.png' is 10x12: training images must be at least 16 px on a side"),
    (["--data.batch_size", "0"], "data.batch_size must be at least 1, got 0"),
    (["--data.size", "8"], "data.size must be at least 16, got 8"),
    (["--data.samples_per_epoch", "0"], "data.samples_per_epoch must be at least 1, got 0"),  # was one per image
    (["--data.teacher_cache", "none.safetensors"], "teacher cache 'none.safetensors' does not exist; build it first: "
                                                   "paintguard teacher-cache --out none.safetensors --count 64 --size 32"),
    (["--data.gradient_cache", "empty"], "gradient cache 'empty' does not exist or is empty; build it first: "
                                         "paintguard gradient-cache --out empty --count 1024 --size 32"),
]
# validate neither trains nor reads the train folder or a cache
TRAIN_ONLY = ("--trainer.max_steps", "--data.train_dir", "--data.teacher_cache", "--data.gradient_cache",
              "--model.init_from")


@pytest.mark.parametrize("subcommand, args, message", [("fit", *case) for case in BAD_OPTIONS]
                         + [("validate", *case) for case in BAD_OPTIONS if case[0][0] not in TRAIN_ONLY])
def test_bad_options_are_refused_before_the_run_folder_exists(tmp_path, ci_config, foreign_checkpoint, capsys,
                                                               subcommand, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no image here")
    for folder, size in (("damaged", (40, 40)), ("tiny", (10, 12))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", size, "red").save(tmp_path / folder / "a.png")
    cut = (tmp_path / "damaged" / "a.png").read_bytes()
    (tmp_path / "damaged" / "cut.png").write_bytes(cut[:len(cut) // 2])
    with contextlib.chdir(tmp_path):
        assert main(["train", subcommand, "--config", str(ci_config), *args]) == 2
    assert one_line_error(capsys, logs_before=True).startswith(message.format(tmp=tmp_path))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "ckpt").exists()  # no W&B run, no config.yaml


@pytest.mark.parametrize("content", [b"\x80\x04junk that is no pickle", b""])
def test_a_damaged_checkpoint_without_a_config_is_one_line(tmp_path, capsys, content):
    """Without --config Lightning reads the checkpoint's options itself: a damaged file was a traceback."""
    (tmp_path / "damaged.ckpt").write_bytes(content)
    with contextlib.chdir(tmp_path):
        assert main(["train", "validate", "--ckpt_path", "damaged.ckpt"]) == 2
    assert one_line_error(capsys, logs_before=True).startswith(
        "cannot read Lightning checkpoint 'damaged.ckpt': not a PyTorch")
    assert [p.name for p in tmp_path.iterdir()] == ["damaged.ckpt"]


def test_a_truncated_checkpoint_is_named_in_one_sentence(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"weights": torch.zeros(4096)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError) as err:
        torch_load(path, "Lightning checkpoint")
    assert str(err.value).endswith("(RuntimeError: PytorchStreamReader failed reading zip archive: failed finding "
                                   "central directory)")  # not torch's three sentences of advice, cut mid-word


@pytest.mark.parametrize("out, message", [
    ("folder.safetensors", "--out 'folder.safetensors' is a folder; give the .safetensors file to write"),
    ("file.safetensors/g.safetensors", "--out 'file.safetensors/g.safetensors' cannot be created: "
                                       "'file.safetensors' is a file"),
])
def test_export_refuses_an_out_it_cannot_write_before_reading_the_checkpoint(tmp_path, capsys, out, message):
    (tmp_path / "folder.safetensors").mkdir()
    (tmp_path / "file.safetensors").write_text("keep me")
    with contextlib.chdir(tmp_path):
        assert main(["train", "export", "--ckpt_path", "any.ckpt", "--out", out, "--overwrite"]) == 2
    assert one_line_error(capsys, logs_before=True) == message
    assert (tmp_path / "file.safetensors").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.safetensors", "folder.safetensors"]


def test_export_says_that_last_is_a_fit_s_word(tmp_path, capsys):
    with contextlib.chdir(tmp_path):
        assert main(["train", "export", "--ckpt_path", "last", "--out", "g.safetensors"]) == 2
    assert one_line_error(capsys, logs_before=True) == ("--ckpt_path last names a fit's own last.ckpt; give export "
                                                        "the file, such as runs/NAME/checkpoints/last.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_export_keeps_to_its_own_kind(tmp_path, ci_config, foreign_checkpoint, capsys):
    with contextlib.chdir(tmp_path):
        assert main(["train", "export", "--ckpt_path", "inpainter-run.ckpt", "--out", "g.safetensors"]) == 2
        assert one_line_error(capsys, logs_before=True) == (
            "'inpainter-run.ckpt' holds another kind of model than a GeneratorModule (its options disc_n_layers, "
            "disc_ndf, n_blocks, ...); export it with 'paintguard fit-inpainter export'")  # was a TypeError's words
        before = (tmp_path / "inpainter.safetensors").read_bytes()
        assert main(["train", "export", "--ckpt_path", "any.ckpt", "--out", "inpainter.safetensors",
                     "--overwrite"]) == 2
        assert one_line_error(capsys, logs_before=True) == (
            "'inpainter.safetensors' is an inpainter checkpoint; --overwrite replaces a generator export only: "
            "remove it first, or choose another --out")
    assert (tmp_path / "inpainter.safetensors").read_bytes() == before and not (tmp_path / "g.safetensors").exists()


def test_a_failed_checkpoint_write_leaves_no_temporary_file(tmp_path):
    (tmp_path / "taken.safetensors").mkdir()  # the rename onto a folder fails after the tensors are written
    with pytest.raises(OSError):
        save({"w": torch.zeros(2)}, tmp_path / "taken.safetensors", "generator", {})
    assert [p.name for p in tmp_path.iterdir()] == ["taken.safetensors"]
    with pytest.raises(OSError, match="cannot write '/proc/g.safetensors'"):  # safetensors' own error, as OSError
        save({"w": torch.zeros(2)}, "/proc/g.safetensors", "generator", {})


def test_fit_inpainter_refuses_a_lama_weights_file_as_ckpt_path(tmp_path, capsys):
    """LaMa's models/best.ckpt is weights, not a run to resume: it was a KeyError traceback after W&B had opened."""
    torch.save({"state_dict": {}}, tmp_path / "best.ckpt")
    config = ROOT / "configs" / "inpainter" / "ci.yaml"
    with contextlib.chdir(tmp_path):
        assert main(["fit-inpainter", "validate", "--config", str(config), "--ckpt_path", "best.ckpt"]) == 2
    assert one_line_error(capsys, logs_before=True) == ("'best.ckpt' is not a Lightning checkpoint written by "
                                                        "PaintGuard training")
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]


@pytest.mark.parametrize("content, got", [("", "an empty file"), ("# notes only\n", "'# notes only'"),
                                          ("- 1\n- 2\n", "'- 1 - 2'")])
def test_a_config_that_is_not_a_mapping_is_named_as_such(tmp_path, capsys, content, got):
    (tmp_path / "c.yaml").write_text(content)
    with contextlib.chdir(tmp_path):
        assert main(["train", "fit", "--config", "c.yaml"]) == 2
    assert one_line_error(capsys) == ("a --config file must hold a YAML mapping of options (model:, data:, trainer:, "
                                      f"...), got {got} (see 'paintguard train fit --help')")


@pytest.mark.parametrize("overlay, error", [
    ("model:\n  lerning_rate: 0.1\n", "Subcommand 'fit' does not accept option 'model.lerning_rate'"),
    ("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
     "      init_args:\n        every_n_steps: 3\n", "Option 'every_n_steps' is not accepted")])
def test_an_unknown_key_names_the_config_file_that_sets_it(tmp_path, capsys, overlay, error):
    """jsonargparse names the key alone: with several --config files a user had to search them for it."""
    (tmp_path / "typo.yaml").write_text(overlay)
    with contextlib.chdir(tmp_path):
        assert main(["train", "fit", "--config", str(ROOT / "configs" / "generator" / "demo.yaml"),
                     "--config", "typo.yaml"]) == 2
    assert one_line_error(capsys) == f"{error}, set in typo.yaml (see 'paintguard train --help')"
    assert [p.name for p in tmp_path.iterdir()] == ["typo.yaml"]


def test_ckpt_path_last_looks_in_the_run_s_own_folder(tmp_path, capsys):
    """The shipped configs name their folders by ``${run_name}``: it is filled in before ``last`` is looked for."""
    with contextlib.chdir(tmp_path):
        assert main(["train", "fit", "--config", str(ROOT / "configs" / "generator" / "lama-tiny.yaml"),
                     "--run_name", "mine", "--ckpt_path", "last"]) == 2
    assert one_line_error(capsys, logs_before=True).startswith("--ckpt_path last: no last.ckpt in "
                                                               "'runs/mine/checkpoints' to resume")
    assert list(tmp_path.iterdir()) == []


def test_a_fit_never_mixes_two_runs_in_one_folder(tmp_path, ci_config, capsys):
    """Lightning only warned: both runs' snapshots stayed side by side and ``last`` was picked between them by date;
    a resume without --config had none of the run's callbacks and wrote its checkpoints elsewhere."""
    (tmp_path / "ckpt").mkdir()
    torch.save({"state_dict": {}, "hyper_parameters": {}, "pytorch-lightning_version": "2.6.0"},
               tmp_path / "ckpt" / "last.ckpt")
    with contextlib.chdir(tmp_path):
        assert main(["train", "fit", "--config", str(ci_config)]) == 2
        assert one_line_error(capsys, logs_before=True) == (
            f"'{tmp_path}/ckpt' already holds the checkpoints of a run: resume it with --ckpt_path last, or start "
            "the new one after removing that folder")  # ci.yaml's folder is not named by --run_name
        assert main(["train", "fit", "--ckpt_path", "ckpt/last.ckpt"]) == 2
        assert one_line_error(capsys, logs_before=True).startswith(
            "resuming a fit needs the run's options: add the --config files it was started with")
    assert not (tmp_path / "runs").exists()  # no run folder, no W&B run
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["last.ckpt"]


def test_validate_without_a_config_runs_as_the_readme_says(tmp_path, ci_config):
    """The teacher's steps need gradients: it failed until --trainer.inference_mode false was added by hand."""
    with contextlib.chdir(tmp_path):
        assert main(["train", "fit", "--config", str(ci_config)]) == 0
        assert main(["train", "validate", "--ckpt_path", "ckpt/last.ckpt"]) == 0


def test_a_resume_against_another_inpainter_is_said(tmp_path, ci_config):
    """Allowed, as a later phase may change model options, but it was silent: the run's best-share checkpoint then
    compares scores against two targets."""
    (tmp_path / "other.safetensors").write_bytes((tmp_path / "inpainter.safetensors").read_bytes())
    with contextlib.chdir(tmp_path):
        assert main(["train", "fit", "--config", str(ci_config)]) == 0
        with pytest.warns(UserWarning, match=f"^resuming a run trained against inpainter '{tmp_path}/inpainter"
                                             r".safetensors' with 'other.safetensors': its best-share checkpoint"):
            assert main(["train", "fit", "--config", str(ci_config), "--ckpt_path", "last", "--trainer.max_steps",
                         "6", "--model.inpainter", "other.safetensors"]) == 0
