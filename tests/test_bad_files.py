"""One bad file never stops a folder: corrupt, truncated, empty, random files, wrong-size masks, a bomb, fuzz."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from generator.io import ImageReadError, read_image, read_mask
from generator.folder_scan import OUTPUT_MARKER
from trainer.commands.cli import main

EPS = 0.025
FORMATS = {"png": {}, "jpg": {"quality": 90}, "webp": {"quality": 80}}  # every format a folder is scanned for


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format={"jpg": "JPEG"}.get(fmt, fmt.upper()), **FORMATS[fmt])
    return buffer.getvalue()


def mask_png(h: int, w: int) -> bytes:
    m = np.zeros((h, w), np.uint8)
    m[h // 4: h // 2, w // 4: 3 * w // 4] = 255
    buffer = io.BytesIO()
    Image.fromarray(m).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(side: int = 30000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: about 110 kB that would decode to 900 MP."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def new_user_folder(folder, bomb: bool) -> tuple[list[str], list[str]]:
    """The issue's folder: 20 images in PNG, JPEG and WebP, of which 8 are bad; returns (good, bad) stems."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    good, bad = [], []
    for i in range(20):
        fmt = list(FORMATS)[i % 3]
        h, w = 36 + i, 50 - i
        data = encode(rng.integers(0, 256, (h, w, 3), np.uint8), fmt)
        mask = mask_png(h, w)
        kind = ["ok", "truncated", "flipped", "empty", "random", "wrong-mask", "ok", "ok", "ok", "ok"][i % 10]
        if kind == "truncated":
            data = data[: len(data) // 2]
        elif kind == "flipped":  # the format's magic bytes: nothing can identify the file any more
            data = bytes(b ^ 0xFF if k < 4 else b for k, b in enumerate(data))
        elif kind == "empty":
            data = b""
        elif kind == "random":
            data = rng.bytes(len(data))
        elif kind == "wrong-mask":
            mask = mask_png(h + 3, w)
        stem = f"{i:02d}-{kind}"
        (folder / f"{stem}.{fmt}").write_bytes(data)
        (folder / f"{stem}_mask.png").write_bytes(mask)
        (good if kind == "ok" else bad).append(stem)
    if bomb:
        (folder / "bomb.png").write_bytes(bomb_png())
        (folder / "bomb_mask.png").write_bytes(mask_png(40, 40))
        bad.append("bomb")
    return good, bad


@pytest.mark.parametrize("backend,bomb", [("torch", False), ("torch", True), ("onnx", True)])
def test_a_new_users_folder(tmp_path, generator_path, capsys, backend, bomb):
    src, dst = tmp_path / "in", tmp_path / "out"
    good, bad = new_user_folder(src, bomb)
    assert main(["protect", str(src), "-o", str(dst), "--checkpoint", str(generator_path),
                 "--backend", backend]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("paintguard: error:")]
    assert "Traceback" not in captured.err
    assert len(errors) == len(bad), captured.err
    for stem in bad:  # each bad file on its own line, by name
        assert sum(f"{stem}." in line for line in errors) == 1, (stem, errors)
    if bomb:
        assert any("bomb.png' exceeds Pillow's decompression-bomb limit" in line for line in errors)
    assert f"{len(good)} images written, {len(bad)} failed" in captured.out
    assert sorted(p.stem for p in dst.iterdir()) == sorted([OUTPUT_MARKER, *good])  # no partial files
    for stem in good:
        source = next(src.glob(f"{stem}.*"))
        moved = (read_image(dst / f"{stem}.png").double() - read_image(source).double()).abs().max()
        assert moved <= EPS + 1e-9


def test_a_single_bomb_is_one_line_and_writes_nothing(tmp_path, generator_path, capsys):
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    (tmp_path / "m.png").write_bytes(mask_png(40, 40))
    out = tmp_path / "out.png"
    assert main(["protect", str(tmp_path / "bomb.png"), "--mask", str(tmp_path / "m.png"), "-o", str(out),
                 "--checkpoint", str(generator_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "decompression-bomb limit" in err and "bomb.png" in err
    assert not out.exists()


def mutations(data: bytes, rng: np.random.Generator) -> dict[str, bytes]:
    """Seeded damage to one encoded file: truncations, flipped bytes in the header and the body, junk."""
    n = len(data)
    out = {"empty": b"", "one-byte": data[:1], "random": rng.bytes(n)}
    for k, cut in enumerate(sorted(rng.integers(1, n, 3))):
        out[f"truncated{k}"] = data[:cut]
    for k in range(4):
        damaged = bytearray(data)
        region = 32 if k < 2 else n  # half in the header, half anywhere
        for pos in rng.integers(0, min(region, n), 1 + k):
            damaged[pos] ^= int(rng.integers(1, 256))
        out[f"flipped{k}"] = bytes(damaged)
    out["appended"] = data + rng.bytes(64)
    return out


def test_seeded_fuzz_over_every_format(tmp_path, generator_path, capsys):
    """Each damaged file is either protected within the bound or reported on one line; the run always ends."""
    rng = np.random.default_rng(1234)
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    names = []
    for fmt in FORMATS:
        h, w = 40, 56
        data = encode(rng.integers(0, 256, (h, w, 3), np.uint8), fmt)
        for label, damaged in mutations(data, rng).items():
            stem = f"{fmt}-{label}"
            (src / f"{stem}.{fmt}").write_bytes(damaged)
            (src / f"{stem}_mask.png").write_bytes(mask_png(h, w))
            names.append(stem)
            # the reader alone: a clean result or a one-line ImageReadError, nothing else
            try:
                read_image(src / f"{stem}.{fmt}")
            except ImageReadError as err:
                assert "\n" not in str(err) and f"{stem}.{fmt}" in str(err)
        (src / f"{fmt}-wrongmask.{fmt}").write_bytes(data)  # an intact image with a mask of another size
        (src / f"{fmt}-wrongmask_mask.png").write_bytes(mask_png(h, w + 1))
        names.append(f"{fmt}-wrongmask")
        with pytest.raises(ImageReadError, match="is 57x40 but the image is 56x40"):
            read_mask(src / f"{fmt}-wrongmask_mask.png", size=(h, w))
    code = main(["protect", str(src), "-o", str(dst), "--checkpoint", str(generator_path)])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("paintguard: error:")]
    written = sorted(p.stem for p in dst.iterdir() if p.name != OUTPUT_MARKER)
    failed = [n for n in names if any(f"{n}." in line or f"{n}_mask" in line for line in errors)]
    assert sorted(written + failed) == sorted(names)  # every file accounted for, exactly once
    assert len(errors) == len(failed)
    assert f"{len(written)} images written" in captured.out and f"{len(failed)} failed" in captured.out
    for stem in written:
        source = next(src.glob(f"{stem}.[pjw]*[gp]"))
        moved = (read_image(dst / f"{stem}.png").double() - read_image(source).double()).abs().max()
        assert moved <= EPS + 1e-9
    assert {f"{fmt}-empty" for fmt in FORMATS} | {f"{fmt}-wrongmask" for fmt in FORMATS} <= set(failed)
