"""The ``paintguard`` dispatcher: every subcommand reports a bad argument on one line with exit code 2."""

import re

import pytest

from trainer.commands.cli import COMMANDS, main, one_line_warning

# (argv, a piece of the one-line message)
BAD_ARGUMENTS = [
    (["protect"], "the following arguments are required: input, -o/--output"),
    (["export-onnx"], "the following arguments are required: -o/--output"),
    (["web", "--port", "x"], "argument --port: invalid int value: 'x'"),
    (["optimize", "a.png"], "the following arguments are required: mask, -o/--output"),
    (["inpaint", "a.png", "-o", "b.png"], "the following arguments are required for one image: --mask"),
    (["inpaint", "d", "-o", "o", "--mask-suffix", ""], "argument --mask-suffix: must not be empty"),
    (["protect", "d", "-o", "o", "--mask-suffix", "m/"], "argument --mask-suffix: 'm/' names a folder"),
    (["demo", "--train-minutes", "soon"], "argument --train-minutes: invalid float value: 'soon'"),
    (["teacher-cache", "--out", "x.safetensors", "--count", "many"], "argument --count: invalid int value"),
    (["gradient-cache", "--out", "gc", "--teacher-steps", "all"], "argument --teacher-steps: invalid int value"),
    (["evaluate-inpainter"], "the following arguments are required: source"),
    (["compare", "--config", "c.yaml"], "the following arguments are required: --out"),
    (["train", "export", "--out", "g.safetensors"], "the following arguments are required: --ckpt_path"),
    (["train", "fit", "--model.lr", "fast"], 'Parser key "model.lr"'),
    (["fit-inpainter", "fit", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["fit-inpainter"], "expected a subcommand, one of fit, validate, export"),  # export is no LightningCLI command
    (["fit-inpainter", "fitt"], "expected a subcommand, one of fit, validate, export, got 'fitt'"),
]


def test_every_command_is_covered():
    assert {argv[0] for argv, _ in BAD_ARGUMENTS} == set(COMMANDS)


@pytest.mark.parametrize("argv,message", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("paintguard: error: ") and message in err
    assert f"(see 'paintguard {' '.join(a for a in argv[:2] if a in COMMANDS or a in ('fit', 'export'))} --help')" in err
    assert captured.out == ""


def test_help_exits_0(capsys):
    assert main(["compare", "--help"]) == 0
    assert "--config" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["protect", "export-onnx", "web", "optimize", "inpaint", "demo", "compare"])
def test_help_is_plain_text(command, capsys):
    """The module docstrings that describe the commands showed their reStructuredText quotes: ``paintguard protect``."""
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and f"paintguard {command}" in out


def test_unknown_command_names_the_choices(capsys):
    assert main(["protec"]) == 2
    assert capsys.readouterr().err.strip() == f"paintguard: error: unknown command 'protec'; choose from {', '.join(COMMANDS)}"


def test_paintguard_warnings_are_one_line_and_a_librarys_keep_their_format():
    import lightning
    import generator.save

    def fallback(message, category, filename, lineno, line=None):
        return f"{filename}:{lineno}: {category.__name__}: {message}\n"

    own, library = generator.save.__file__, lightning.__file__
    assert one_line_warning("lossy:\n  prefer PNG", UserWarning, own, 7, fallback=fallback) == (
        "paintguard: warning: lossy: prefer PNG\n")
    assert one_line_warning("deprecated", UserWarning, library, 3, fallback=fallback) == (
        f"{library}:3: UserWarning: deprecated\n")


def test_version_says_which_paintguard_runs_and_where_its_shipped_files_are(capsys):
    from .conftest import ROOT

    for flag in ("--version", "-V"):
        assert main([flag]) == 0
        version = re.search(r'(?m)^version = "(.+)"', (ROOT / "pyproject.toml").read_text()).group(1)
        assert capsys.readouterr().out == f"paintguard {version} ({ROOT})\n"


def test_running_out_of_memory_is_one_line(monkeypatch, capsys):
    import trainer.commands.optimize

    def allocate(argv):
        raise MemoryError

    monkeypatch.setattr(trainer.commands.optimize, "main", allocate)
    assert main(["optimize", "a.png", "m.png", "-o", "b.png"]) == 2
    assert capsys.readouterr().err.strip() == "paintguard: error: out of memory: try a smaller image, batch or size"


def test_debug_shows_the_traceback_and_keeps_the_line_and_the_exit_status(monkeypatch, capsys, tmp_path):
    argv = ["protect", str(tmp_path / "none.png"), "--mask", str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png")]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip()
    monkeypatch.setenv("PAINTGUARD_DEBUG", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):" and err[-1] == line


@pytest.mark.parametrize("command", ["train", "fit-inpainter"])
def test_every_model_and_data_option_explains_itself(command, capsys):
    """``--model.*`` options showed only their type: the modules' docstrings had no Args section for jsonargparse."""
    import re

    assert main([command, "fit", "--help"]) == 0
    out = capsys.readouterr().out
    blocks = re.split(r"\n(?=  --)", "  --model." + out.split("\n  --model.", 1)[1])
    # argparse: "  --model.lr LR  text" or "  --model.groups GROUPS\n  text"; then "(type: ..., default: ...)"
    texts = {block.split()[0]: re.split(r" {2,}|\n", block.strip(), maxsplit=1)[-1] for block in blocks}
    ours = {name: text for name, text in texts.items() if name.startswith(("--model.", "--data."))}
    assert len(ours) > 20
    assert [name for name, text in ours.items() if text.split("(type:")[0].strip() == ""] == []


def _options_without_help(path) -> list[str]:
    import ast

    from generator.cli_parser import COMMON_HELP

    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args
                and isinstance(node.args[-1], ast.Constant)):  # not the parser's own forwarding call
            name = node.args[-1].value
            documented = any(k.arg == "help" for k in node.keywords)
            if not documented and name.lstrip("-").replace("-", "_") not in COMMON_HELP:
                missing.append(f"{path.name} {name}")
    return missing


def test_every_option_of_every_command_and_benchmark_has_help():
    """Many options of optimize, the caches and the benchmarks showed only their name in --help."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [*root.glob("generator/*.py"), *root.glob("trainer/commands/*.py"), *root.glob("benchmarks/*.py")]
    assert len(files) > 40 and [m for path in files for m in _options_without_help(path)] == []


def test_help_shows_defaults_where_the_text_does_not(capsys):
    assert main(["teacher-cache", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--seed SEED the random seed (crops, masks and noise starts) (default: 0)" in out  # 0 is not "unset"
    assert "--train-dir TRAIN_DIR image folder (default: the embedded sample images)" in out  # said once
    assert "--count COUNT number of (crop, mask) pairs (default: 128)" in out


def test_list_defaults_show_as_typed_and_empty_ones_not_at_all():
    from generator.cli_parser import ArgumentParser

    parser = ArgumentParser(prog="p")
    parser.add_argument("--pool", type=int, nargs="+", default=[4, 8], help="block sides")
    parser.add_argument("--heads", nargs="+", default=["one field", "no gate"], help="heads")
    parser.add_argument("--ranks", type=float, nargs="*", default=[], help="ranks")
    parser.add_argument("--share", type=float, default=0.5, help="a 50%% share")  # argparse formats help: % is written %%
    parser.add_argument("--name", default="im-%d.png", help="names")
    text = " ".join(parser.format_help().split())
    assert "names (default: im-%d.png)" in text
    assert "block sides (default: 4 8)" in text and "heads (default: 'one field' 'no gate')" in text
    assert "ranks --share" in text and "a 50% share (default: 0.5)" in text  # [] is no default
