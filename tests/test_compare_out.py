"""``paintguard compare``'s --out: nothing lands there until a run succeeds, a rerun replaces its own files, and
an --out that cannot be this run's folder is one line before anything runs."""

from pathlib import Path

import yaml

from trainer.commands.cli import main as cli_main

from .conftest import write_rgb


def quick_config(tmp_path: Path, **changes) -> Path:
    """A one-sample, one-step comparison (seconds), written to a file."""
    config = {"images": "sample-val", "masks": {"size": 32}, "max_samples": 1, "transforms": ["png"],
              "methods": {"none": None, "optimiser": {"steps": 1}}, "figure_rows": 1, **changes}
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_config_that_is_a_folder_or_not_text_is_one_line(tmp_path, capsys):
    (tmp_path / "binary.yaml").write_bytes(b"\xee\xff\x00")
    for name, message in (("", "is a folder, not a YAML file"), ("binary.yaml", "is not valid YAML")):
        assert cli_main(["compare", "--config", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("paintguard: error: config '") and message in err
    assert not (tmp_path / "out").exists()


def test_an_out_inside_the_images_folder_is_refused(tmp_path, checkpoints, capsys):
    """The image folder is read recursively: a second run would take the first one's figures for photos."""
    images = tmp_path / "images"
    images.mkdir()
    write_rgb(images / "a.png", 40, 40, seed=1)
    path = quick_config(tmp_path, images=str(images))
    for out in (images / "report", images):
        assert cli_main(["compare", "--config", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "lies within the images folder" in err
    assert sorted(p.name for p in images.iterdir()) == ["a.png"]


def test_a_rerun_replaces_the_previous_report_and_a_failed_run_writes_nothing(tmp_path, checkpoints, capsys,
                                                                              monkeypatch):
    import trainer.commands.compare as compare

    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    old = (f"{compare.REPORT_TITLE}\n\n![grid-old](figures/grid-old.png)\n"
           "![transfer-matrix](figures/transfer-matrix.png)\n")
    (out / "report.md").write_text(old)
    for name in ("figures/grid-old.png", "figures/transfer-matrix.png", "figures/mine.png", "transfer_per_image.csv"):
        (out / name).write_bytes(b"old")
    path = quick_config(tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("the machine ran out of patience")

    with monkeypatch.context() as patch:
        patch.setattr(compare, "run_method", boom)
        assert cli_main(["compare", "--config", str(path), "--out", str(out)]) == 2
        assert cli_main(["compare", "--config", str(path), "--out", str(tmp_path / "new")]) == 2
    assert capsys.readouterr().err.strip().endswith("paintguard: error: the machine ran out of patience")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".paintguard-compare-*"))
    assert (out / "report.md").read_text() == old and not list(out.glob(".paintguard-compare-*"))

    assert cli_main(["compare", "--config", str(path), "--out", str(out)]) == 0
    assert "| optimiser (1 step) |" in (out / "report.md").read_text()
    # the previous run's files are gone, not mixed with this run's; a file it did not write stays
    assert sorted(p.name for p in out.iterdir()) == ["figures", "per_image.csv", "report.md"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "grid-none.png", "grid-optimiser-1-step.png", "mine.png", "speed-vs-strength.png"]


def test_an_out_with_a_report_compare_did_not_write_or_under_a_file_is_refused(tmp_path, capsys):
    path = quick_config(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "report.md").write_text("# my notes\n")
    (tmp_path / "file").write_text("x")
    cases = {"notes": "holds a report.md that paintguard compare did not write", "file": "is a file, not a folder",
             "file/sub": "cannot be created: '"}
    for out, message in cases.items():
        assert cli_main(["compare", "--config", str(path), "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err
    assert (tmp_path / "notes" / "report.md").read_text() == "# my notes\n"


def test_running_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    import trainer.commands.compare as compare

    def huge(cfg):
        raise MemoryError
    monkeypatch.setattr(compare, "load_samples", huge)
    assert cli_main(["compare", "--config", str(quick_config(tmp_path)), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().startswith("paintguard: error: out of memory: lower masks.size")
    assert not (tmp_path / "out").exists()
