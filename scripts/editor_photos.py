"""An editor's own photos, of another kind than lama-tiny's, taken from Debian packages that ship them.

    python scripts/editor_photos.py data/editor-photos

lama-tiny-ft (configs/inpainter/lama-tiny-ft.yaml) is lama-tiny fine-tuned as an editor might fine-tune it on
their own photos. lama-tiny learnt mostly on nature, objects and street scenes (scripts/debian_photos.py); these
are people and musicians (indoors and out), buildings and monuments, animals and one food photo, from packages
that scripts/debian_photos.py does not use: GCompris's activity photos (packed in Qt resource files, unpacked
here), Palapeli's puzzle photos, scikit-learn's and Matplotlib's sample photos. Nothing from scikit-image, and
never anything from Debian's plasma-workspace-wallpapers, which is kept for independent held-out checks.
Downloaded with ``apt-get download``, unpacked with ``dpkg-deb -x`` and written, like ``make photos``, as RGB
PNGs resized to a 384 px short side. Run it once by hand before the fine-tune; nothing downloads at run time.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

from PIL import Image

from debian_photos import SHORT_SIDE, command, fetch, save_resized

# GCompris's activity photos lie inside Qt resource archives: a folder "x.rcc/inner" is "inner" inside x.rcc
_GC = "usr/share/gcompris-qt/rcc"
_ACT = "gcompris/src/activities"

# package -> folder inside it -> files: photographs only, no logos, renders, paintings, drawings or text
MANIFEST: dict[str, dict[str, tuple[str, ...]]] = {
    "gcompris-qt-data": {
        # musicians and audiences, indoors and out, and instruments
        f"{_GC}/explore_world_music.rcc/{_ACT}/explore_world_music/resource/music": (
            "africa.webp", "america.webp", "australia.webp", "ireland.webp", "italy.webp", "japan.webp",
            "mexico.webp", "middleeast.webp", "orchestra.webp",
        ),
        # buildings and monuments
        f"{_GC}/explore_monuments.rcc/{_ACT}/explore_monuments/resource": (
            "france/arlesAmphitheater.webp", "france/chateaudeChambord.webp", "france/citedeCarcassonne.webp",
            "france/eiffelTower.webp", "france/palaisdesPapes.webp", "france/reimsCathedral.webp",
            "germany/aulaPalatina.webp", "germany/berlinCathedral.webp", "germany/brandenburgGate.webp",
            "germany/wormsCathedral.webp", "india/charminar.webp", "india/gatewayofIndia.webp",
            "india/hawaMahal.webp", "india/mysorePalace.webp", "usa/lincolnMemorial.webp",
            "wonders/colosseum.webp", "wonders/petra.webp", "wonders/tajMahal.webp",
        ),
        # animals: farm and pets, wild ones
        f"{_GC}/explore_farm_animals.rcc/{_ACT}/explore_farm_animals/resource/animals": (
            "cat.webp", "chicken.webp", "cow.webp", "dog.webp", "duck.webp", "horse.webp", "owl.webp", "pig.webp",
            "sheep.webp",
        ),
        f"{_GC}/explore_world_animals.rcc/{_ACT}/explore_world_animals/resource/animals": (
            "jaguar.webp", "koala.webp", "lemur.webp", "panda.webp", "polar_bear.webp", "scarlet_macaw.webp",
        ),
        f"{_GC}/erase.rcc/{_ACT}/erase/resource": (
            "alpaca.webp", "gorilla.webp", "kitten.webp", "meerkats.webp", "penguin.webp", "red_panda.webp",
        ),
    },
    "palapeli-data": {
        "usr/share/palapeli/collection": (
            "castle-maintenon.jpg", "cincinnati-bridge.jpg", "citrus-fruits.jpg", "european-honey-bee.jpg",
            "panther-chameleon-female.jpg",
        ),
    },
    "python3-sklearn": {
        "usr/lib/python3/dist-packages/sklearn/datasets/images": ("china.jpg",),
    },
    "python-matplotlib-data": {
        "usr/share/matplotlib/mpl-data/sample_data": ("grace_hopper.jpg",),
    },
}


def unpack_rcc(archive: Path, dest: Path) -> Path:
    """Write every file of a Qt resource archive (``rcc`` format 1 to 3, stored or zlib) under ``dest``.

    The layout: a header (magic, version, offsets of the node tree, the data and the names), then the tree
    of fixed-size nodes (directories list a run of child nodes; files point at a length-prefixed payload).
    """
    blob = archive.read_bytes()
    magic, version, tree, data, names = struct.unpack_from(">4sIIII", blob)
    if magic != b"qres" or not 1 <= version <= 3:
        raise OSError(f"{archive} is not a Qt resource archive of format 1 to 3")
    node_size = 14 if version == 1 else 22  # format 2 on adds a last-modified time

    def name(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6  # length, then a hash
        return blob[start:start + 2 * length].decode("utf-16-be")

    def walk(index: int, folder: Path) -> None:
        base = tree + index * node_size
        name_offset, flags = struct.unpack_from(">IH", blob, base)
        path = folder / name(name_offset) if index else folder
        if flags & 2:  # a directory
            count, first = struct.unpack_from(">II", blob, base + 6)
            for child in range(first, first + count):
                walk(child, path)
            return
        if not path.resolve().is_relative_to(dest.resolve()):
            raise OSError(f"{archive} holds a file outside itself: {path}")
        (offset,) = struct.unpack_from(">I", blob, base + 10)
        (size,) = struct.unpack_from(">I", blob, data + offset)
        payload = blob[data + offset + 4:data + offset + 4 + size]
        if flags & 4:
            raise OSError(f"{archive}: zstd-compressed {path.name} is not supported")
        if flags & 1:  # qCompress: the uncompressed size, then a zlib stream
            payload = zlib.decompress(payload[4:])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)

    walk(0, dest)
    return dest


def source_folder(root: Path, folder: str, tmp: Path) -> Path:
    """The unpacked ``folder`` of a package: a folder inside a ``.rcc`` archive is unpacked first."""
    archive, rcc, inner = folder.partition(".rcc/")
    if not rcc:
        return root / folder
    unpacked = tmp / f"{root.name}-rcc" / Path(archive).name
    if not unpacked.exists():
        unpack_rcc(root / f"{archive}.rcc", unpacked)
    return unpacked / inner


def gather(staging: Path, tmp: Path) -> None:
    """Write the manifest's photos into ``staging``, each checked to have a short side of 384 px."""
    for package, folders in MANIFEST.items():
        root = fetch(package, tmp)
        for folder, names in folders.items():
            base = source_folder(root, folder, tmp)
            for name in names:
                target = staging / f"{Path(name).stem}.png"
                if target.exists():
                    raise FileExistsError(f"two photos named {target.name}")
                save_resized(base / name, target)
                with Image.open(target) as image:
                    if min(image.size) != SHORT_SIDE:
                        raise OSError(f"{package}: {name} is under {SHORT_SIDE} px on its short side")


def main(argv: list[str] | None = None) -> int:
    return command(__doc__, gather, argv)


if __name__ == "__main__":
    sys.exit(main())
