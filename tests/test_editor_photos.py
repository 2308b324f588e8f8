"""The photo-gathering script for lama-tiny-ft's fine-tune (the download itself needs Debian's archive)."""

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))  # editor_photos imports debian_photos beside it, as when run as a script
spec = importlib.util.spec_from_file_location("editor_photos", SCRIPTS / "editor_photos.py")
editor_photos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(editor_photos)
import debian_photos  # noqa: E402


def _rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A format-3 Qt resource archive of one folder "a" holding ``files`` (name -> (bytes, compressed))."""
    names, data, nodes = b"", b"", []

    def name(text: str) -> int:
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offset

    nodes.append(struct.pack(">IHII", 0, 2, 1, 1) + bytes(8))                 # the root
    nodes.append(struct.pack(">IHII", name("a"), 2, len(files), 2) + bytes(8))
    for text, (payload, compressed) in files.items():
        if compressed:
            payload = struct.pack(">I", len(payload)) + zlib.compress(payload)
        nodes.append(struct.pack(">IHHHI", name(text), int(compressed), 0, 0, len(data)) + bytes(8))
        data += struct.pack(">I", len(payload)) + payload
    tree = 24
    return (struct.pack(">4sIIIII", b"qres", 3, tree, tree + 22 * len(nodes),
                        tree + 22 * len(nodes) + len(data), 0) + b"".join(nodes) + data + names)


def test_unpacks_a_qt_resource_archive(tmp_path):
    archive = tmp_path / "pkg" / "x.rcc"
    archive.parent.mkdir()
    archive.write_bytes(_rcc({"b.webp": (b"stored bytes", False), "c.webp": (b"zlib bytes" * 20, True)}))
    folder = editor_photos.source_folder(tmp_path / "pkg", "x.rcc/a", tmp_path)
    assert (folder / "b.webp").read_bytes() == b"stored bytes"
    assert (folder / "c.webp").read_bytes() == b"zlib bytes" * 20
    assert editor_photos.source_folder(tmp_path / "pkg", "usr/share", tmp_path) == tmp_path / "pkg" / "usr/share"


def test_refuses_an_existing_folder(tmp_path, capsys):
    assert editor_photos.main([str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_manifest_keeps_clear_of_lama_tiny_and_the_reserved_photos():
    from trainer.data.images import SAMPLE_VAL

    reserved = ("plasma-workspace-wallpapers", "skimage", "scikit-image", *debian_photos.MANIFEST)
    assert not [p for p in editor_photos.MANIFEST if any(p.startswith(r) for r in reserved)]
    names = [Path(n).stem.lower() for folders in editor_photos.MANIFEST.values()
             for files in folders.values() for n in files]
    lama_tiny = {Path(n).stem.lower() for folders in debian_photos.MANIFEST.values()
                 for files in folders.values() for n in files}
    assert len(set(names)) == len(names)  # one PNG each
    assert not set(names) & ({Path(n).stem for n in SAMPLE_VAL} | lama_tiny)
