"""``paintguard inpaint DIR -o OUTDIR``: a folder edited as the one-image command edits each file, bad files
reported."""

import csv
import re
import statistics

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.folder_scan import OUTPUT_MARKER
from trainer.commands import inpaint_csv
from trainer.commands.cli import main

from .conftest import ERROR, one_line_error, write_mask, write_rgb
from .test_inpaint_cli import PRINTED

LINE = re.compile(r"'(.+?)': (-?[\d.]+) dB against solid (\w+)(?:; on the original (-?[\d.]+) dB: attack loss "
                  r"([\d.]+) -> ([\d.]+) \(([-+][\d.]+)%\), (\d+) levels apart)?; wrote (.+)")
SUMMARY = re.compile(r"paintguard inpaint: (\d+) images? edited, (\d+) failed, [\d.]+ s(?:; \S+ fills score "
                     r"(-?[\d.]+) dB PSNR against their target colours on average \((\d+) of \d+ at 20 dB or more\)"
                     r"(?:; on the originals (-?[\d.]+) dB: the attack loss ([-+][\d.]+)% \(median; from "
                     r"([-+][\d.]+)% to ([-+][\d.]+)%\), the images at most (\d+) 8-bit levels from their "
                     r"originals)?)?")


@pytest.fixture
def photos(tmp_path):
    """photos/a.jpg, photos/b.png and photos/sub/c.png, each with NAME_mask.png (c with two masks)."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(["a", "b", "sub/c"]):
        pixels = write_rgb(root / f"{name}.png", 40, 52, seed=i)
        write_mask(root / f"{name}_mask.png", 40, 52, (8 + i, 10, 26, 36))
        if name == "a":  # a JPEG original: protect writes a.png from it
            (root / "a.png").unlink()
            Image.fromarray(pixels).save(root / "a.jpg", quality=95)
    write_mask(root / "sub/c_mask_2.png", 40, 52, (30, 40, 36, 50))
    return root


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(capsys, *args) -> tuple[int, list[re.Match], re.Match, str]:
    """``paintguard inpaint ARGS``: exit code, the image lines, the summary and stderr."""
    code = main(["inpaint", *map(str, args)])
    out, err = capsys.readouterr()
    lines = [LINE.fullmatch(line) for line in out.splitlines()[:-1]]
    assert all(lines), out
    summary = SUMMARY.fullmatch(re.sub(r"; the figures in \S+$", "", out.splitlines()[-1]))
    assert summary, out
    return code, lines, summary, err


def test_a_protected_folder_is_edited_as_each_image_is(tmp_path, photos, generator_path, inpainter_file, capsys):
    protected, edited = tmp_path / "protected", tmp_path / "edited"
    assert main(["protect", str(photos), "-o", str(protected), "--checkpoint", str(generator_path)]) == 0
    capsys.readouterr()
    code, lines, summary, err = run(capsys, protected, "--original", photos, "-o", edited, "--inpainter",
                                    inpainter_file, "--csv", tmp_path / "figures.csv")
    assert code == 0 and err == ""
    assert [m.group(1) for m in lines] == [str(protected / n) for n in ("a.png", "b.png", "sub/c.png")]
    assert summary.groups()[:2] == ("3", "0")
    rows = read_csv(tmp_path / "figures.csv")
    for found, r in zip(lines, rows, strict=True):  # the lines' figures, unrounded
        assert [r[k] for k in ("image", "status", "error", "target_colour", "output")] == [
            found.group(1), "edited", "", found.group(3), found.group(9)]
        for column, group, digits in [("fill_psnr_db", 2, 2), ("original_fill_psnr_db", 4, 2), ("attack_loss", 6, 4),
                                      ("original_attack_loss", 5, 4), ("attack_loss_change_percent", 7, 1),
                                      ("levels_from_original", 8, 0)]:
            assert f"{float(r[column]):.{digits}f}" == f"{float(found.group(group)):.{digits}f}", (column, r)
    assert rows[2]["masks"] == f"{photos / 'sub/c_mask.png'};{photos / 'sub/c_mask_2.png'}"
    assert rows[0]["original"] == str(photos / "a.jpg")
    for found, name, original in zip(lines, ["a", "b", "sub/c"], ["a.jpg", "b.png", "sub/c.png"]):
        assert found.group(9) == str(edited / f"{name}.png")
        # the one-image command on the same files, the masks of c merged as protect merged them
        masks = sorted(photos.glob(f"{name}_mask*.png"))
        mask = tmp_path / "merged.png"
        Image.fromarray(np.maximum.reduce([np.asarray(Image.open(m)) for m in masks])).save(mask)
        single = tmp_path / f"single-{name.replace('/', '-')}.png"
        assert main(["inpaint", str(protected / f"{name}.png"), "--mask", str(mask), "-o", str(single),
                     "--inpainter", inpainter_file, "--original", str(photos / original)]) == 0
        one = PRINTED.search(capsys.readouterr().out)
        assert (found.group(2), found.group(3)) == one.group(1, 2)
        assert found.group(4, 5, 6, 7, 8) == one.group(3, 4, 5, 6, 7)
        assert np.array_equal(np.asarray(Image.open(edited / f"{name}.png")), np.asarray(Image.open(single)))
    psnrs = [float(m.group(2)) for m in lines]
    assert float(summary.group(3)) == pytest.approx(statistics.fmean(psnrs), abs=0.011)  # each rounded, then the mean
    changes = [float(m.group(7)) for m in lines]
    assert float(summary.group(6)) == pytest.approx(statistics.median(changes), abs=0.051)
    assert (float(summary.group(7)), float(summary.group(8))) == (min(changes), max(changes))
    assert summary.group(9) == max((m.group(8) for m in lines), key=int) and 0 < int(summary.group(9)) <= 6  # eps 0.025
    assert (edited / OUTPUT_MARKER).is_file()
    assert sorted(p.name for p in photos.rglob("*")) == sorted(
        ["a.jpg", "a_mask.png", "b.png", "b_mask.png", "sub", "c.png", "c_mask.png", "c_mask_2.png"])

    # without originals: the masks beside the images, the target colour each image's own
    code, lines, summary, _ = run(capsys, photos, "-o", tmp_path / "plain", "--inpainter", inpainter_file)
    assert code == 0 and summary.group(6) is None and all(m.group(4) is None for m in lines)
    assert [m.group(1) for m in lines] == [str(photos / n) for n in ("a.jpg", "b.png", "sub/c.png")]
    # an editor's mask, drawn from each image's masks
    assert main(["inpaint", str(photos), "-o", str(tmp_path / "tighter"), "--inpainter", inpainter_file,
                 "--editor-mask", "mask-erode-9"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert LINE.fullmatch(said[0]).group(2) != lines[0].group(2)  # another region, another fill
    assert "fills of the mask drawn 4 px tighter (mask-erode-9) score" in said[-1]


def test_one_bad_file_does_not_stop_the_others(tmp_path, photos, inpainter_file, capsys):
    (photos / "broken.png").write_bytes(b"not an image")
    write_mask(photos / "broken_mask.png", 40, 52, (8, 10, 26, 36))
    write_rgb(photos / "small.png", 30, 30)
    write_mask(photos / "small_mask.png", 40, 52, (8, 10, 26, 36))  # the wrong size
    write_rgb(photos / "alone.png", 40, 52)  # no mask
    write_rgb(photos / "blank.png", 40, 52)
    write_mask(photos / "blank_mask.png", 40, 52, (0, 0, 0, 0))  # an empty mask
    out = tmp_path / "edited"
    out.mkdir()
    (out / "b.png").write_bytes(b"keep me")  # exists: not replaced without --overwrite
    code, lines, summary, err = run(capsys, photos, "-o", out, "--inpainter", inpainter_file, "--csv",
                                    tmp_path / "figures.csv")
    assert code == 1 and summary.groups()[:2] == ("2", "5")
    rows = {r["image"]: r for r in read_csv(tmp_path / "figures.csv")}
    failed = {Path(name).name: r for name, r in rows.items() if r["status"] == "failed"}
    assert sorted(failed) == ["alone.png", "b.png", "blank.png", "broken.png", "small.png"]
    assert all(r["error"] and r["output"] == r["fill_psnr_db"] == "" for r in failed.values())
    assert "cannot read" in failed["broken.png"]["error"] and rows[str(photos / "a.jpg")]["status"] == "edited"
    assert [m.group(1) for m in lines] == [str(photos / "a.jpg"), str(photos / "sub/c.png")]
    errors = err.strip().splitlines()
    assert len(errors) == 5 and all(e.startswith(ERROR) for e in errors), err
    for name, why in [("alone.png", "no mask"), ("b.png", "pass --overwrite"), ("blank.png", "is empty"),
                      ("broken.png", "cannot read"), ("small.png", "is 30x30")]:
        assert any(name in e and why in e for e in errors), (name, err)
    assert (out / "b.png").read_bytes() == b"keep me"
    assert sorted(p.name for p in out.rglob("*.png")) == ["a.png", "b.png", "c.png"]
    assert not list(out.rglob("*partial*"))
    code, _, summary, _ = run(capsys, photos, "-o", out, "--inpainter", inpainter_file, "--overwrite")
    assert code == 1 and summary.groups()[:2] == ("3", "4") and (out / "b.png").read_bytes() != b"keep me"
    write_rgb(photos / "broken.png", 40, 52)  # mended: a rerun edits it, and its row says so in its place
    assert main(["inpaint", str(photos), "-o", str(out), "--inpainter", inpainter_file, "--skip-existing", "--csv",
                 str(tmp_path / "figures.csv")]) == 1
    again = {r["image"]: r for r in read_csv(tmp_path / "figures.csv")}
    assert list(again) == list(rows) and again[str(photos / "broken.png")]["status"] == "edited"
    assert again[str(photos / "a.jpg")] == rows[str(photos / "a.jpg")]  # skipped: its row as it was
    capsys.readouterr()


def test_a_rerun_with_skip_existing_edits_only_what_is_left(tmp_path, photos, inpainter_file, capsys):
    out = tmp_path / "edited"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "c.png").write_bytes(b"done before")  # as a stopped run leaves a written edit
    code, lines, summary, err = run(capsys, photos, "-o", out, "--inpainter", inpainter_file, "--skip-existing")
    assert code == 0 and summary.groups()[:2] == ("2", "0")
    assert [m.group(1) for m in lines] == [str(photos / "a.jpg"), str(photos / "b.png")]
    assert err == "paintguard: note: 1 image skipped: its output exists (--skip-existing)\n"
    assert (out / "sub" / "c.png").read_bytes() == b"done before"
    assert main(["inpaint", str(photos), "-o", str(out), "--inpainter", inpainter_file, "--skip-existing"]) == 0
    assert capsys.readouterr().out == ""  # nothing left to do


def test_protected_images_are_found_by_their_originals_name(tmp_path, photos, inpainter_file, capsys):
    protected = tmp_path / "protected"
    (protected / "sub").mkdir(parents=True)
    write_rgb(protected / "a.webp", 40, 52)  # any suffix finds a.jpg
    write_rgb(protected / "b.png", 40, 50)  # the wrong size
    write_rgb(protected / "sub/c.png", 40, 52)
    write_rgb(protected / "sub/c.tif", 40, 52)  # c twice: one output each
    write_rgb(protected / "new.png", 40, 52)  # no original
    code, lines, summary, err = run(capsys, protected, "--original", photos, "-o", tmp_path / "e", "--inpainter",
                                    inpainter_file)
    assert code == 1 and summary.groups()[:2] == ("2", "3")
    assert [m.group(1) for m in lines] == [str(protected / "a.webp"), str(protected / "sub/c.png")]
    for why in ["--original '", "no original for '" + str(protected / "new.png"),
                "'" + str(protected / "sub/c.tif") + "' skipped"]:
        assert why in err, err


@pytest.mark.parametrize("case,pattern", [
    ("mask", "--mask is for one image"),
    ("original is a file", "is not a folder"),
    ("output is the input", "is the input folder"),
    ("output is the original", "is the --original folder"),
    ("output is a file", "is a file; a folder's edits go to a folder"),
    ("no images", "no images"),
    ("protected without originals", "give the folder they were protected from, --original PHOTOS"),
    ("a folder's original for one image", "is a folder but the image is one file"),
    ("skip and overwrite", "--skip-existing leaves the outputs that --overwrite replaces"),
    ("skip for one image", "--skip-existing is for a folder"),
    ("csv for one image", "--csv is for a folder"),
    ("csv exists", "exists; pass --overwrite to replace it (or --skip-existing to add to it)"),
    ("csv of something else", "is not a CSV of paintguard inpaint"),
    ("csv without its suffix", "give a file name ending in .csv"),
    ("csv in no folder", "folder '"),
    ("csv with a long row", "line 2 has 13 fields in its header but not in this row"),
])
def test_refused_before_any_work(tmp_path, photos, inpainter_file, capsys, case, pattern):
    out, kept = tmp_path / "out", "name,value\nkeep,me\n"
    args = [str(photos), "-o", str(out), "--inpainter", inpainter_file]
    if case == "mask":
        args += ["--mask", str(photos / "b_mask.png")]
    elif case == "original is a file":
        args += ["--original", str(photos / "b.png")]
    elif case == "output is the input":
        args[2] = str(photos)
    elif case == "output is the original":
        args[0], args[2] = str(tmp_path), str(photos)
        args += ["--original", str(photos)]
    elif case == "output is a file":
        out.write_bytes(b"keep me")
    elif case == "no images":
        (tmp_path / "empty").mkdir()
        args[0] = str(tmp_path / "empty")
    elif case == "protected without originals":
        protected = tmp_path / "protected"
        protected.mkdir()
        write_rgb(protected / "b.png", 40, 52)
        (protected / OUTPUT_MARKER).write_text("written by paintguard protect\n")
        args[0] = str(protected)
    elif case == "a folder's original for one image":
        args = [str(photos / "b.png"), "--mask", str(photos / "b_mask.png"), "-o", str(tmp_path / "e.png"),
                "--original", str(photos)]
    elif case == "skip and overwrite":
        args += ["--skip-existing", "--overwrite"]
    elif case == "skip for one image":
        args = [str(photos / "b.png"), "--mask", str(photos / "b_mask.png"), "-o", str(tmp_path / "e.png"),
                "--skip-existing"]
    elif case == "csv for one image":
        args = [str(photos / "b.png"), "--mask", str(photos / "b_mask.png"), "-o", str(tmp_path / "e.png"),
                "--csv", str(tmp_path / "r.csv")]
    elif case.startswith("csv"):
        table = {"csv exists": "r.csv", "csv of something else": "r.csv", "csv without its suffix": "r.txt",
                 "csv in no folder": "missing/r.csv", "csv with a long row": "r.csv"}[case]
        if case == "csv with a long row":  # the header right, a row with more fields: the write at the end failed
            kept = ",".join(inpaint_csv.COLUMNS) + "\n" + ",".join(["x"] * 15) + "\n"
            (tmp_path / table).write_text(kept)
        elif case != "csv in no folder":
            (tmp_path / table).write_text(kept)
        kept_too = case in ("csv of something else", "csv with a long row")
        args += ["--csv", str(tmp_path / table)] + (["--skip-existing"] if kept_too else [])
    assert main(["inpaint", *args]) == 2
    assert pattern in one_line_error(capsys)
    assert not out.exists() or out.read_bytes() == b"keep me"
    assert not (tmp_path / "r.csv").exists() or (tmp_path / "r.csv").read_text() == kept


def test_one_image_into_an_existing_folder_takes_its_name(tmp_path, photos, inpainter_file, capsys):
    out = tmp_path / "edits"
    out.mkdir()
    args = ["inpaint", str(photos / "a.jpg"), "--mask", str(photos / "a_mask.png"), "-o", str(out), "--inpainter",
            inpainter_file]
    assert main(args) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"; wrote {out / 'a.png'}")
    assert [p.name for p in out.iterdir()] == ["a.png"]
    assert main(args) == 2 and "pass --overwrite" in one_line_error(capsys)  # as for a file named in full


def test_a_stopped_run_says_how_to_finish(tmp_path, photos, inpainter_file, capsys, monkeypatch):
    import os
    import signal

    from trainer.commands import inpaint_folder

    real, calls = inpaint_folder.edit, []

    def edit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # during the second image, as from another terminal
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(inpaint_folder, "edit", edit)
    out, table = tmp_path / "edited", tmp_path / "edited" / "figures.csv"  # in the output folder, which it makes
    assert main(["inpaint", str(photos), "-o", str(out), "--inpainter", inpainter_file, "--csv", str(table)]) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "paintguard: error: terminated; 1 image edited; the same command with --skip-existing edits the rest")
    assert [p.name for p in out.rglob("*.png")] == ["a.png"] and not list(out.rglob("*partial*"))
    first = read_csv(table)
    assert [r["image"] for r in first] == [str(photos / "a.jpg")]  # the image done, written whole
    table.write_text("\ufeff" + table.read_text(), encoding="utf-8")  # as a spreadsheet saves it: still its CSV
    monkeypatch.setattr(inpaint_folder, "edit", real)
    main(["inpaint", str(photos), "-o", str(out), "--inpainter", inpainter_file, "--skip-existing", "--csv",
          str(table)])
    said = capsys.readouterr().out.splitlines()
    lines = [LINE.fullmatch(line) for line in said[:-1]]
    assert [m.group(1) for m in lines] == [str(photos / "b.png"), str(photos / "sub/c.png")]
    assert said[-1].endswith(f"; the figures in {table}") and SUMMARY.fullmatch(said[-1].split("; the figures")[0])
    rows = read_csv(table)  # finished: the first run's row kept, the rest added
    assert rows[0] == first[0] and [r["image"] for r in rows[1:]] == [m.group(1) for m in lines]
    for found, r in zip(lines, rows[1:]):
        assert (f"{float(r['fill_psnr_db']):.2f}", r["target_colour"]) == found.group(2, 3)


def test_a_file_where_a_sub_folder_goes_fails_its_images_only(tmp_path, photos, inpainter_file, capsys):
    out = tmp_path / "edited"
    out.mkdir()
    (out / "sub").write_bytes(b"keep me")  # sub/c.png cannot go there: c fails, a and b are edited
    code, lines, summary, err = run(capsys, photos, "-o", out, "--inpainter", inpainter_file)
    assert code == 1 and summary.groups()[:2] == ("2", "1") and len(lines) == 2
    assert err.count("\n") == 1 and f"'{out / 'sub'}' is a file" in err, err
    assert (out / "sub").read_bytes() == b"keep me"


def test_a_csv_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, photos, inpainter_file, capsys,
                                                                       monkeypatch):
    # root may write anywhere, so the check is made to see what a user's read-only folder shows it
    monkeypatch.setattr(inpaint_csv.os, "access", lambda path, mode: False)
    args = [str(photos), "-o", str(tmp_path / "out"), "--inpainter", inpainter_file, "--csv", str(tmp_path / "r.csv")]
    assert main(["inpaint", *args]) == 2
    assert f"--csv '{tmp_path / 'r.csv'}': its folder '{tmp_path}' is not writable" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()
