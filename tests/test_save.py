import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from generator.save import atomic_write, check_output_path, partial_path, quantize_within_bound, save_protected


def test_round_trip_keeps_the_bound_for_8bit_and_off_grid_originals(tmp_path):
    g = torch.Generator().manual_seed(0)
    for original in (torch.randint(0, 256, (3, 31, 17), generator=g) / 255,  # 8-bit source
                     torch.randint(0, 65536, (3, 31, 17), generator=g) / 65535):  # 16-bit source: off the grid
        noise = (torch.rand(original.shape, generator=g) * 2 - 1) * 0.025
        protected = (original + noise).clamp(0, 1)
        path = save_protected(protected, original, tmp_path / "p.png", eps=0.025)
        back = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).double() / 255
        assert (back - original.double()).abs().max() <= 0.025 + 1e-9
        # and it is the nearest 8-bit image wherever the bound allows
        assert (back - protected.double()).abs().max() <= 0.5 / 255 + 0.5 / 255


def test_plain_rounding_would_break_the_bound_off_grid():
    original = torch.full((3, 1, 1), 127.3 / 255)
    protected = original + 0.025
    q = quantize_within_bound(protected, original, 0.025)
    assert abs(q[0, 0, 0] / 255 - original[0, 0, 0].item()) <= 0.025
    assert round(protected[0, 0, 0].item() * 255) / 255 - original[0, 0, 0].item() > 0.025


def test_written_files_are_readable_as_the_umask_allows(tmp_path):
    """safetensors writes its files 0600: caches and checkpoints were unreadable to other users of a machine."""
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "x.safetensors", lambda tmp: save_file({"a": torch.zeros(1)}, str(tmp)))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_no_partial_file_is_left_when_writing_fails(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(ValueError):
        save_protected(torch.rand(3, 8, 8), torch.rand(3, 8, 8), target, eps=-1)
    assert list(tmp_path.iterdir()) == []


def test_output_path_checks(tmp_path):
    src = tmp_path / "in.png"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match="is the input file"):
        check_output_path(src, [src], overwrite=True)
    existing = tmp_path / "out.png"
    existing.write_bytes(b"x")
    with pytest.raises(ValueError, match="pass --overwrite"):
        check_output_path(existing, [src], overwrite=False)
    assert check_output_path(existing, [src], overwrite=True) == existing
    with pytest.raises(ValueError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "o.png", [src], overwrite=False)
    with pytest.raises(ValueError, match=r"'\.gif'; use \.png \(or .*\.webp\)"):
        check_output_path(tmp_path / "o.gif", [src], overwrite=False)


def test_the_longest_names_are_written_and_errors_name_the_output(tmp_path):
    """The temporary name added 13 characters: a 251-character output name failed with ENAMETOOLONG, in words
    about a hidden file the user never typed."""
    for name in ("x" * 247 + ".png", "é" * 123 + ".png"):  # 251 and 250 bytes
        target = save_protected(torch.rand(3, 8, 8), torch.rand(3, 8, 8), tmp_path / name, eps=0.025)
        assert target.is_file() and len(partial_path(target).name.encode()) <= 255
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x" * 247 + ".png", "é" * 123 + ".png"])
    with pytest.raises(FileNotFoundError, match=r"'.*/missing/out\.png'"):
        atomic_write(tmp_path / "missing" / "out.png", lambda tmp: tmp.write_bytes(b"x"))


def test_an_output_under_a_file_or_at_a_folder_is_refused_before_any_work(tmp_path):
    src = tmp_path / "a.png"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"output '.*a\.png/out\.png' cannot be created: '.*a\.png' is a file"):
        check_output_path(src / "out.png", [], overwrite=False)
    (tmp_path / "b.png").mkdir()
    with pytest.raises(ValueError, match=r"output '.*b\.png' is a folder"):
        check_output_path(tmp_path / "b.png", [], overwrite=True)
