"""Extra training photos for lama-tiny, taken from Debian packages that ship them.

    python scripts/debian_photos.py data/photos

Ten scikit-image photos (half of them textures or microscopy) were too few: lama-tiny learnt
to paint brick and grass into every hole. This gathers a fixed list of real photos from
Debian's own archive (the OpenCV sample data and the MATE and Lomiri wallpaper packages), downloaded with
``apt-get download`` and unpacked with ``dpkg-deb -x``, adds the embedded scikit-image
training split, and writes every image as an RGB PNG resized to a 384 px short side, the
largest crop lama-tiny's training takes at 256 px. None of the held-out photos is among
them. Run it once by hand before training; nothing in PaintGuard downloads at run time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from trainer.data.images import sample_images

SHORT_SIDE = 384

# package -> folder inside it -> files: photographs only, no logos, renders, text or calibration boards
MANIFEST: dict[str, dict[str, tuple[str, ...]]] = {
    "opencv-doc": {
        "usr/share/doc/opencv-doc/examples/data": (
            "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
            "box_in_scene.png", "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg",
            "fruits.jpg", "graf1.png", "home.jpg", "left.jpg", "leuvenA.jpg", "leuvenB.jpg",
            "messi5.jpg", "orange.jpg", "rubberwhale1.png", "squirrel_cls.jpg", "stuff.jpg",
        ),
    },
    "mate-backgrounds": {
        "usr/share/backgrounds/mate/nature": (
            "Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg",
            "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg",
        ),
    },
    "lomiri-wallpapers-16.04": {
        "usr/share/backgrounds": (
            "aitzgorri_by_Aitzol_Berasategi.jpg", "friends_by_Aitzol_Berasategi.jpg",
            "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
            "sunset_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
            "analogpattern_by_Peter_Nerlich.jpg", "free_by_Peter_Nerlich.jpg",
            "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
            "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg",
        ),
    },
    "lomiri-wallpapers-20.04": {
        "usr/share/backgrounds": ("Kleiber_by_Lukas_Baubkus.jpg",),
    },
}


def save_resized(source: Path, target: Path, short_side: int = SHORT_SIDE) -> None:
    """Write ``source`` as an RGB PNG whose short side is at most ``short_side`` px."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        ratio = short_side / min(image.size)
        if ratio < 1:
            size = tuple(max(short_side, round(s * ratio)) for s in image.size)
            image = image.resize(size, Image.Resampling.LANCZOS)
        image.save(target)


def fetch(package: str, workdir: Path) -> Path:
    """Download ``package`` from the configured Debian archive and unpack it; returns its root."""
    # captured: apt warns on stderr whenever root downloads unsandboxed, which is expected here
    done = subprocess.run(["apt-get", "download", "-q", package], cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise OSError(f"apt-get download {package} failed ({last}); run 'apt-get update' once first")
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise FileNotFoundError(f"apt-get download left no {package}_*.deb")
    deb = debs[-1]
    root = workdir / package
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def build(out: Path, fill: Callable[[Path, Path], None]) -> int:
    """Create the folder ``out`` all at once; returns the script's exit status.

    ``fill(staging, tmp)`` writes the photos into a staging folder beside ``out`` (``tmp`` is a scratch folder
    for downloads) and the staging folder becomes ``out`` only when it succeeds: no half-filled folder on failure.
    """
    if out.exists():
        print(f"error: {out} already exists", file=sys.stderr)
        return 1
    if shutil.which("apt-get") is None:
        print("error: needs Debian's apt-get and dpkg-deb", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{out.name}-", dir=out.parent.resolve()))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fill(staging, Path(tmp))
        staging.rename(out)
    except (OSError, subprocess.CalledProcessError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{len(list(out.glob('*.png')))} photos in {out}")
    return 0


def gather(staging: Path, tmp: Path) -> None:
    """Write the manifest's photos and the scikit-image training split into ``staging``."""
    for package, folders in MANIFEST.items():
        root = fetch(package, tmp)
        for folder, names in folders.items():
            for name in names:
                save_resized(root / folder / name, staging / f"{Path(name).stem}.png")
    for path in sample_images("train"):
        save_resized(path, staging / f"skimage-{path.stem}.png")


def command(doc: str, fill: Callable[[Path, Path], None], argv: list[str] | None = None) -> int:
    """A photo script's command line: ``OUT``, a folder that :func:`build` creates with ``fill``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to create (must not exist)")
    return build(parser.parse_args(argv).out, fill)


def main(argv: list[str] | None = None) -> int:
    return command(__doc__, gather, argv)


if __name__ == "__main__":
    sys.exit(main())
