"""SIGINT and SIGTERM stop every command in one line with the shell's status (130, 143) and leave no output behind,
also inside Lightning's loops, which turned SIGINT into exit status 1, swallowed SIGTERM in a prediction (a folder
run went on to the end) and ended a fit on SIGTERM with status 0."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
import types

import pytest
import torch

from generator.protect_folder import FolderData
from generator.protector import Protector, save_generator
from generator.signals import leave_signals_to_the_main_process, stops_on_signals
from generator.unet import NoiseUNet, UNetConfig
from trainer.commands import cli
from trainer.commands.cli import main

from .conftest import write_mask, write_rgb


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    save_generator(NoiseUNet(UNetConfig(widths=[8, 16], groups=4)), tmp_path / "g.safetensors")
    (tmp_path / "in").mkdir()
    for i in range(3):
        write_rgb(tmp_path / "in" / f"im{i}.png", 24, 24, seed=i)
        write_mask(tmp_path / "in" / f"im{i}_mask.png", 24, 24, (4, 4, 12, 12))
    return tmp_path


@pytest.fixture
def interactive():
    """SIGINT as a terminal leaves it: a run started in the background (nohup, make ... &) inherits it ignored, and
    the command rightly leaves an ignored signal ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def signal_on_first_batch(monkeypatch, signum: int) -> None:
    real = Protector.protect_batch

    def protect_batch(self, *args, **kwargs):
        os.kill(os.getpid(), signum)  # delivered here, in the middle of the run, as from another terminal
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Protector, "protect_batch", protect_batch)


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_a_signal_stops_a_folder_run(folder, interactive, monkeypatch, capsys, signum, code, said):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal_on_first_batch(monkeypatch, signum)
    assert main(["protect", str(folder / "in"), "-o", str(folder / "out"), "--checkpoint",
                 str(folder / "g.safetensors"), "--batch-size", "1"]) == code
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"paintguard: error: {said}; 0 images written; the same command with --skip-existing protects the rest")
    assert not (folder / "out").exists()  # no image, no temporary file, no folder left holding only its marker
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the caller's handlers are back


def test_sigterm_ends_a_fit_with_its_status_not_zero(ci_config, interactive, monkeypatch, capsys):
    from trainer.training.generator_module import GeneratorModule

    real = GeneratorModule.training_step

    def training_step(self, *args, **kwargs):
        if self.global_step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GeneratorModule, "training_step", training_step)
    assert main(["train", "fit", "--config", str(ci_config)]) == 143
    last = ci_config.parent / "ckpt" / "last.ckpt"
    # the step is saved, so that --ckpt_path last loses nothing: before, no checkpoint was left before step 100
    assert capsys.readouterr().err.strip().splitlines()[-2:] == [
        f"paintguard: note: stopped at step 1, saved in {last}; resume with --ckpt_path last",
        "paintguard: error: terminated"]
    assert torch.load(last, weights_only=True)["global_step"] == 1
    monkeypatch.setattr(GeneratorModule, "training_step", real)
    assert main(["train", "fit", "--config", str(ci_config), "--ckpt_path", "last"]) == 0  # and goes on from it


def test_a_command_run_from_another_thread_still_runs(capsys):
    """Signal handlers can only be set in the main thread: a command called from a worker thread runs without them."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(main, ["protect", "--help"]).result() == 0
    assert "usage: paintguard protect" in capsys.readouterr().out


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_while_the_command_loads_is_one_line(tmp_path, monkeypatch, capsys, interactive, signum, code, word):
    """A subcommand's imports (torch, Lightning) take seconds, and ran before the handlers: Ctrl-C then printed
    a 57-line traceback."""
    (tmp_path / "slow_to_load.py").write_text(f"import os\nos.kill(os.getpid(), {int(signum)})\n"
                                              "def main(argv):\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "slow", ("slow_to_load", "a command whose imports are interrupted"))
    assert main(["slow"]) == code
    assert capsys.readouterr().err == f"paintguard: error: {word}\n"


def test_the_command_starts_without_torch():
    """``paintguard --help`` took two seconds to load torch it does not use; the handlers come before torch."""
    done = subprocess.run([sys.executable, "-c", "import sys, trainer.commands.cli, generator, trainer; "
                           "print('torch' in sys.modules, 'lightning' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def _a_worker_told_to_stop() -> None:
    leave_signals_to_the_main_process()
    os.kill(os.getpid(), signal.SIGINT)  # the terminal signals the whole process group: ignored here
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)  # the loader ending its workers: quietly
    time.sleep(10)


def test_loader_workers_leave_signals_to_the_main_process(interactive):
    """Forked DataLoader workers inherited the command's handler: Ctrl-C printed a traceback from each worker."""
    with stops_on_signals():
        worker = multiprocessing.get_context("fork").Process(target=_a_worker_told_to_stop)
        worker.start()
        worker.join(30)
    assert worker.exitcode == -signal.SIGTERM
    data = FolderData([], 1e9, False, 1)
    data.trainer = types.SimpleNamespace(global_rank=0, world_size=1)
    assert data.predict_dataloader().worker_init_fn is leave_signals_to_the_main_process


def test_an_interrupted_cache_build_says_what_it_kept(tmp_path, monkeypatch, capsys, interactive, inpainter_file):
    """Both said only "interrupted": a gradient cache keeps its whole shards and goes on; a teacher cache is written
    at the end or not at all."""
    from trainer.commands import teacher_cache
    from trainer.training import gradient_cache

    (tmp_path / "photos").mkdir()
    for i in range(2):
        write_rgb(tmp_path / "photos" / f"p{i}.png", 40, 40, seed=i)
    real = gradient_cache.atomic_write

    def write_then_stop(path, write):
        out = real(path, write)
        if path.name.startswith("shard-"):
            os.kill(os.getpid(), signal.SIGINT)  # after the first shard, as a Ctrl-C then would
        return out

    monkeypatch.setattr(gradient_cache, "atomic_write", write_then_stop)
    argv = ["gradient-cache", "--out", str(tmp_path / "gc"), "--inpainter", inpainter_file, "--images",
            str(tmp_path / "photos"), "--count", "8", "--size", "32", "--shard-size", "4", "--batch-size", "4"]
    assert main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"paintguard: error: interrupted; 1 whole shard(s) of 4 entries kept in '{tmp_path / 'gc'}'; the same "
        "command goes on from there")

    def stopped(*args):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(teacher_cache, "build_teacher_cache", stopped)
    out = tmp_path / "tc.safetensors"
    assert main(["teacher-cache", "--out", str(out)]) == 143
    assert capsys.readouterr().err == f"paintguard: error: terminated; '{out}' was not written\n"
