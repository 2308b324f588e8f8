"""The photo-gathering script for lama-tiny's training set (the download itself needs Debian's archive)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "debian_photos.py"
spec = importlib.util.spec_from_file_location("debian_photos", SCRIPT)
debian_photos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(debian_photos)


@pytest.mark.parametrize(("size", "mode", "expected"), [
    ((1000, 500), "L", (768, 384)),    # grey becomes RGB, short side down to 384
    ((500, 1200), "RGBA", (384, 922)),
    ((300, 200), "RGB", (300, 200)),    # never upscaled
])
def test_save_resized(tmp_path, size, mode, expected):
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(source)
    debian_photos.save_resized(source, target)
    with Image.open(target) as out:
        assert out.mode == "RGB" and out.size == expected


def test_refuses_an_existing_folder(tmp_path, capsys):
    assert debian_photos.main([str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_manifest_holds_no_held_out_photo():
    from trainer.data.images import SAMPLE_VAL

    names = {Path(n).stem.lower() for folders in debian_photos.MANIFEST.values()
             for files in folders.values() for n in files}
    assert len(names) == sum(len(f) for folders in debian_photos.MANIFEST.values() for f in folders.values())
    assert not names & {Path(n).stem for n in SAMPLE_VAL}
