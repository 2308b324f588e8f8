"""The ``paintguard`` dispatcher: every subcommand reports a bad argument on one line with exit code 2."""

import pytest

from trainer.commands.cli import COMMANDS, main, one_line_warning

# (argv, a piece of the one-line message)
BAD_ARGUMENTS = [
    (["protect"], "the following arguments are required: input, -o/--output"),
    (["export-onnx"], "the following arguments are required: -o/--output"),
    (["web", "--port", "x"], "argument --port: invalid int value: 'x'"),
    (["optimize", "a.png"], "the following arguments are required: mask, -o/--output"),
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


@pytest.mark.parametrize("command", ["protect", "export-onnx", "web", "optimize", "demo", "compare"])
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


def test_running_out_of_memory_is_one_line(monkeypatch, capsys):
    import trainer.commands.optimize

    def allocate(argv):
        raise MemoryError

    monkeypatch.setattr(trainer.commands.optimize, "main", allocate)
    assert main(["optimize", "a.png", "m.png", "-o", "b.png"]) == 2
    assert capsys.readouterr().err.strip() == "paintguard: error: out of memory: try a smaller image, batch or size"
