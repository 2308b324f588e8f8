"""``paintguard demo`` end to end, without its training and at a small size so that it takes seconds."""

from PIL import Image

from trainer.commands.cli import main

FAST = ["demo", "--train-minutes", "0", "--size", "48"]


def test_demo_compares_both_shipped_generators_with_the_optimiser(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main([*FAST, "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    rows = ["none", "generator (shipped)", "generator (shipped fast)", "optimiser (20 steps)"]
    for name in rows:
        assert f"| {name} |" in report
    assert "share" in report and "| generator (shipped fast) |" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("protected_*.png")) == [
        "protected_0_none.png", "protected_1_generator-shipped.png", "protected_2_generator-shipped-fast.png",
        "protected_3_optimiser-20-steps.png"]
    assert Image.open(out / "panel.png").size == (3 * 48, len(rows) * 48)


def test_demo_skips_the_fast_generator_when_asked(tmp_path):
    out = tmp_path / "demo"
    assert main([*FAST, "--fast-generator", "", "--out", str(out)]) == 0
    assert "shipped fast" not in (out / "report.md").read_text()


def test_demo_with_a_missing_generator_is_one_line(tmp_path, capsys):
    assert main([*FAST, "--fast-generator", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("paintguard: error: ") and "none.safetensors" in err
