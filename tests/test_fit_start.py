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
