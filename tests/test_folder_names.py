"""Folder mode's naming, as a user's folder has it: images whose names hold the mask suffix, masks saved in the
wrong format (also for one image), what a file without a mask is told it lacks, and what else real folders hold."""

from __future__ import annotations

import os

from PIL import Image

from generator.io import find_image_mask_pairs, unpaired_masks
from generator.folder_scan import OUTPUT_MARKER
from trainer.commands.cli import main

from .conftest import write_mask, write_rgb


def test_an_image_with_the_suffix_in_its_name_is_an_image_and_a_jpeg_mask_is_named(tmp_path, generator_path,
                                                                                     capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "gas_mask.jpg", 20, 24)  # a photo of a gas mask: no image "gas" beside it
    write_mask(src / "gas_mask_mask.png", 20, 24, (2, 2, 8, 8))
    write_rgb(src / "a.png", 20, 24)
    Image.open(src / "gas_mask_mask.png").convert("RGB").save(src / "a_mask.jpg")  # a mask in a lossy format
    assert find_image_mask_pairs(src) == [(src / "a.png", []), (src / "gas_mask.jpg", [src / "gas_mask_mask.png"])]
    assert unpaired_masks(src, find_image_mask_pairs(src)) == [src / "a_mask.jpg"]

    assert main(["protect", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(generator_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"paintguard: warning: mask '{src}/a_mask.jpg' is not a PNG file (masks are NAME_mask*.png); "
                   "skipped",
                   f"paintguard: error: no mask for '{src}/a.png' (no 'a_mask*.png' beside it)"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [OUTPUT_MARKER, "gas_mask.png"]


def test_tiff_photos_are_scanned(tmp_path, generator_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "e.png", 20, 24)
    Image.open(src / "e.png").save(src / "scan.tif")
    (src / "e.png").unlink()
    write_mask(src / "scan_mask.png", 20, 24, (2, 2, 8, 8))  # it was "has no image beside it"
    assert main(["protect", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(generator_path)]) == 0
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [OUTPUT_MARKER, "scan.png"]


def test_an_earlier_run_s_output_folder_inside_the_input_is_not_read_again(tmp_path, generator_path, capsys):
    """Its protected images have no masks: a second run to another folder reported each one as an error and
    exited 1 (and would protect them twice if their masks were copied)."""
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png", 20, 24)
    write_mask(src / "a_mask.png", 20, 24, (2, 2, 8, 8))
    args = ["--checkpoint", str(generator_path)]
    assert main(["protect", str(src), "-o", str(src / "v1"), *args]) == 0
    assert main(["protect", str(src), "-o", str(src / "v2"), *args]) == 0
    assert capsys.readouterr().err == f"paintguard: note: skipping '{src}/v1': the output folder of an earlier run\n"
    assert sorted(p.name for p in (src / "v2").iterdir()) == [OUTPUT_MARKER, "a.png"]
    # given as the input itself, an output folder is read (its images have no masks: one error each)
    assert main(["protect", str(src / "v1"), "-o", str(tmp_path / "again"), *args]) == 1
    assert "no mask for" in capsys.readouterr().err


def test_the_output_folder_is_known_however_it_is_spelled_and_no_input_is_overwritten(tmp_path, generator_path,
                                                                                       capsys, monkeypatch):
    """Given as an absolute path or with '..', the output folder inside the input was read as input, and an
    image in it was protected and then replaced by another image's output."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "in"
    (src / "o").mkdir(parents=True)
    for image in (src / "x.png", src / "o" / "x.png"):
        write_rgb(image, 20, 24, seed=len(image.parts))
        write_mask(image.with_name("x_mask.png"), 20, 24, (2, 2, 8, 8))
    kept = (src / "o" / "x.png").read_bytes()
    args = ["--checkpoint", str(generator_path), "--overwrite"]
    assert main(["protect", "in", "-o", "in/../in/o", *args]) == 0
    assert capsys.readouterr().err == "paintguard: note: skipping 'in/../in/o': it is this run's output folder, " \
                                      "not an input\n"
    assert main(["protect", "in", "-o", str(src / "o"), *args]) == 0  # marked now: skipped without a word
    assert capsys.readouterr().err == ""
    assert (src / "o" / "x.png").read_bytes() != kept  # written as the output of in/x.png, as asked
    assert sorted(p.name for p in (src / "o").iterdir()) == [OUTPUT_MARKER, "x.png", "x_mask.png"]


def test_a_pipe_named_as_an_image_is_one_failed_file(tmp_path, generator_path, capsys):
    """The scan opened it and waited for a writer for ever: no image of the folder was written."""
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png", 20, 24)
    write_mask(src / "a_mask.png", 20, 24, (2, 2, 8, 8))
    os.mkfifo(src / "pipe.png")
    write_mask(src / "pipe_mask.png", 20, 24, (2, 2, 8, 8))
    assert main(["protect", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(generator_path)]) == 1
    assert capsys.readouterr().err == (f"paintguard: error: cannot read image '{src}/pipe.png': not a regular file "
                                       "(a pipe, socket or device)\n")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [OUTPUT_MARKER, "a.png"]


def test_a_jpeg_mask_for_one_image_is_warned_of(tmp_path, generator_path, capsys):
    """Folder mode skips JPEG masks with a warning; one image took it silently, its edges moved by compression."""
    write_rgb(tmp_path / "a.png", 20, 24)
    write_mask(tmp_path / "m.png", 20, 24, (2, 2, 8, 8))
    Image.open(tmp_path / "m.png").convert("RGB").save(tmp_path / "m.jpg", quality=75)
    assert main(["protect", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.jpg"), "-o", str(tmp_path / "o.png"),
                 "--checkpoint", str(generator_path)]) == 0
    assert capsys.readouterr().err == (f"paintguard: warning: mask '{tmp_path}/m.jpg' is a JPEG: its compression "
                                       "moves the mask's edges (any non-zero pixel is protected); save masks as PNG\n")


def test_a_warning_from_inside_the_folder_loop_is_a_note_of_the_command(tmp_path, generator_path, capsys,
                                                                         printed_warnings):
    """Raised under Lightning's and torch's frames, it was printed as a Python warning from torch's fetch.py."""
    src = tmp_path / "in"
    src.mkdir()
    frames = [Image.new("RGB", (24, 20), (60 * i, 0, 0)) for i in range(3)]
    frames[0].save(src / "x.webp", save_all=True, append_images=frames[1:], lossless=True)
    write_mask(src / "x_mask.png", 20, 24, (2, 2, 8, 8))
    assert main(["protect", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(generator_path)]) == 0
    assert capsys.readouterr().err == (f"paintguard: warning: image '{src}/x.webp' is an animation of 3 frames; "
                                       "only the first is read\n")


def test_no_output_folder_is_made_for_images_that_failed_the_scan(tmp_path, generator_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_rgb(src / "sub" / "lonely.png", 20, 24)  # no mask
    assert main(["protect", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(generator_path)]) == 1
    assert "no mask for" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # an empty out/sub was made


def test_an_output_folder_whose_images_all_fail_to_decode_is_removed_again(tmp_path, generator_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub" / "deeper").mkdir(parents=True)
    write_rgb(src / "good.png", 20, 24)
    write_mask(src / "good_mask.png", 20, 24, (4, 4, 12, 12))
    (src / "sub" / "deeper" / "bad.png").write_bytes(b"not a png")  # passes the scan, fails at decoding
    write_mask(src / "sub" / "deeper" / "bad_mask.png", 20, 24, (4, 4, 12, 12))
    (out / "kept").mkdir(parents=True)  # the user's own empty folder is not ours to remove
    assert main(["protect", str(src), "-o", str(out), "--checkpoint", str(generator_path)]) == 1
    assert "bad.png" in capsys.readouterr().err
    assert (out / "good.png").is_file() and (out / "kept").is_dir()
    assert not (out / "sub").exists()  # out/sub/deeper stayed, empty


def test_a_real_folder_s_clutter_links_and_look_alike_names(tmp_path, generator_path, capsys):
    """macOS's ._ files and a NAS's @eaDir thumbnails failed as images, a linked album was left out without a word,
    and a photo named beach_masked.png was read as a second mask of beach.png."""
    src, album = tmp_path / "in", tmp_path / "album"
    for folder in (src / "@eaDir", src / ".thumbnails", album):
        folder.mkdir(parents=True)
    for name in ("beach.png", "beach_masked.png", "@eaDir/beach.png", ".thumbnails/t.png", "._beach.png"):
        write_rgb(src / name, 20, 24)
    for name in ("beach_mask.png", "beach_masked_mask.png", "@eaDir/beach_mask.png"):
        write_mask(src / name, 20, 24, (2, 2, 8, 8))
    (src / "._beach_mask.png").write_bytes(b"\0\5\26\7 AppleDouble")
    write_rgb(album / "pic.png", 20, 24)
    write_mask(album / "pic_mask1.png", 20, 24, (2, 2, 8, 8))
    os.symlink(album, src / "album")
    os.symlink(src, album / "loop")  # a link back up: each real folder is read once
    assert find_image_mask_pairs(src) == [(src / "album" / "pic.png", [src / "album" / "pic_mask1.png"]),
                                          (src / "beach.png", [src / "beach_mask.png"]),
                                          (src / "beach_masked.png", [src / "beach_masked_mask.png"])]
    out = tmp_path / "out"
    assert main(["protect", str(src), "-o", str(out), "--checkpoint", str(generator_path)]) == 0
    assert capsys.readouterr().err == ""
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["album/pic.png", "beach.png", "beach_masked.png"]


def test_two_images_for_one_output_say_which_one_is_written(tmp_path, generator_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for suffix in (".jpg", ".png"):
        write_rgb(src / f"dup{suffix}", 20, 24)
    write_mask(src / "dup_mask.png", 20, 24, (2, 2, 8, 8))
    assert main(["protect", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(generator_path)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"paintguard: error: '{src}/dup.png' skipped: '{src}/dup.jpg' is written to '{tmp_path}/out/dup.png' "
        "(rename one of them, or protect them into two folders)")


def test_an_output_folder_under_a_file_and_one_whose_images_all_fail(tmp_path, generator_path, capsys):
    """The first was errno 20 from makedirs, the second left a folder holding only the run's marker."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_rgb(src / "sub" / "a.png", 20, 24)
    write_mask(src / "sub" / "a_mask.png", 20, 24, (2, 2, 8, 8))
    (tmp_path / "afile").write_text("keep")
    run = ["protect", str(src), "--checkpoint", str(generator_path)]
    assert main([*run, "-o", str(tmp_path / "afile" / "x")]) == 2
    assert capsys.readouterr().err == (f"paintguard: error: -o '{tmp_path}/afile/x' cannot be created: "
                                       f"'{tmp_path}/afile' is a file\n")
    assert main([*run, "-o", str(tmp_path / "out"), "--max-pixels", "100"]) == 1
    assert "24x20 = 0.00048 MP, above --max-pixels 0.0001 MP" in capsys.readouterr().err  # it said 0.0 MP
    assert not (tmp_path / "out").exists()


def test_a_rerun_with_skip_existing_finishes_a_stopped_run(tmp_path, generator_path, capsys):
    """A rerun refused every image already written ("exists; pass --overwrite") and failed; --overwrite redid all."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a", "b", "c"):
        write_rgb(src / f"{name}.png", 20, 24)
        write_mask(src / f"{name}_mask.png", 20, 24, (2, 2, 8, 8))
    run = ["protect", str(src), "-o", str(out), "--checkpoint", str(generator_path)]
    assert main(run) == 0
    kept = (out / "a.png").read_bytes()
    (out / "b.png").unlink()  # as a stopped run leaves it
    capsys.readouterr()
    assert main([*run, "--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "paintguard: note: 2 images skipped: their output exists (--skip-existing)\n"
    assert captured.out.startswith("paintguard protect: 1 image written, 0 failed")
    assert (out / "b.png").is_file() and (out / "a.png").read_bytes() == kept
    assert main([*run, "--skip-existing"]) == 0 and "3 images skipped" in capsys.readouterr().err
    assert main([*run, "--skip-existing", "--overwrite"]) == 2
    assert "--skip-existing leaves the outputs that --overwrite replaces" in capsys.readouterr().err
    assert main(["protect", str(src / "a.png"), "--mask", str(src / "a_mask.png"), "-o", str(tmp_path / "x.png"),
                 "--skip-existing"]) == 2
    assert "--skip-existing is for a folder" in capsys.readouterr().err
