"""``paintguard compare --unset KEY``: an option taken out of the config, as if the file left it out, in order
with ``--set``; a key the config does not have is one line before anything runs."""

import pytest

from trainer.commands.cli import main as cli_main
from trainer.evaluation.compare_config import Unset, load_config

from .test_compare import CI_CONFIG
from .test_compare_out import quick_config


def test_unset_takes_an_option_out_in_the_order_given():
    cfg = load_config(CI_CONFIG, [Unset("methods.hybrid"), "masks.size=48", Unset("masks.size"), "max_samples=3"])
    assert cfg.methods.hybrid is None and cfg.methods.optimiser.steps == 2  # the other methods kept
    assert cfg.masks.size == 256 and cfg.masks.seed == 0 and cfg.max_samples == 3  # back to the default, not 48
    assert load_config(CI_CONFIG, [Unset("methods.hybrid"), "methods.hybrid.k=[3]"]).methods.hybrid.k == [3]


@pytest.mark.parametrize("key,why", [
    ("methods.refine", "--unset 'methods.refine': no 'methods.refine' to take out (methods has generator, hybrid, "
                       "none, optimiser)"),
    ("mask.size", "--unset 'mask.size': no 'mask' to take out (the file has batch_size, device,"),
    ("methods.none.steps", "--unset 'methods.none.steps': no 'methods.none.steps' to take out (methods.none has no "
                           "keys)"),
])
def test_a_key_the_config_does_not_have_is_one_line_and_exit_2(tmp_path, capsys, key, why):
    assert cli_main(["compare", "--config", str(CI_CONFIG), "--out", str(tmp_path / "out"), "--unset", key]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"paintguard: error: config '{CI_CONFIG}': {why}"), err
    assert not (tmp_path / "out").exists()


def test_the_report_names_the_key_taken_out_and_runs_without_it(tmp_path, capsys):
    config, out = quick_config(tmp_path), tmp_path / "out"
    assert cli_main(["compare", "--config", str(config), "--out", str(out), "--set", "masks.size=40", "--unset",
                     "methods.none"]) == 0
    report = (out / "report.md").read_text()
    assert f"Config `{config} --set masks.size=40 --unset methods.none`: 1 sample" in report
    rows = [line.split(" | ")[0] for line in report.splitlines() if line.startswith("| ")]
    assert "| optimiser (1 step)" in rows and "| none" not in rows
