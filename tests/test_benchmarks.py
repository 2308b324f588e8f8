"""Every benchmark script still imports and parses its arguments: they call the package's internals, which change.

The benchmarks themselves need photos and minutes (their figures are in the model card); ``--help`` runs a
script's imports and builds its argument parser, so a renamed or moved function fails here, not months later.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_every_benchmark_is_listed():
    assert len(SCRIPTS) >= 10 and "amortisation.py" in {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_imports_and_parses_help(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    monkeypatch.setattr(sys, "path", [str(script.parent), *sys.path])  # as `python benchmarks/X.py` runs it
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {script.name}")  # argparse names the script it parsed for
