"""What an exported ONNX model says about itself, and whether it still matches its checkpoint.

An exported generator carries, in its ONNX metadata properties, the noise bound
``eps``, the U-Net architecture (JSON, as in the safetensors checkpoint), the
source checkpoint's file name, whether it was a shipped one (in ``checkpoints/``)
and the SHA-256 of that file. An exported inpainter (the web page's editor view)
carries the same, less ``eps``, with its FFC-ResNet architecture. The fingerprint
is what makes a stale export impossible to use by mistake: whoever loads an ONNX
file next to its checkpoint compares the two and refuses a mismatch, telling an
export of another checkpoint (by its recorded name) from one of an older version.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from generator import checkpoint

FORMAT = "paintguard"
KIND = "generator-onnx"
INPUTS = ("image", "mask", "target")
OUTPUT = "noise"
INPAINTER_KIND = "inpainter-onnx"
INPAINTER_INPUTS = ("image", "mask")
INPAINTER_OUTPUT = "edited"  # LaMa's inference: the prediction in the mask, the image outside it
WHAT = {KIND: "generator", INPAINTER_KIND: "inpainter"}


class OnnxModelError(ValueError):
    """An ONNX file that is missing, unreadable, not a PaintGuard generator, or stale."""


def fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metadata_for(source: Path, config: dict[str, Any], exporter: str, kind: str = KIND) -> dict[str, str]:
    """The metadata properties written into an export (of ``kind``) of the checkpoint file ``source``."""
    bound = {"eps": repr(float(config["eps"]))} if kind == KIND else {}
    return {"format": FORMAT, "kind": kind, **bound, "config": json.dumps(config, sort_keys=True),
            "source": source.name, "source_shipped": str(_shipped(source)).lower(),
            "source_sha256": fingerprint(source), "exporter": exporter}


def _shipped(source: Path) -> bool:
    """Whether ``source`` is a checkpoint of the folder that names resolve in (``checkpoints/``)."""
    return source.resolve().parent == checkpoint.checkpoints_dir().resolve()


def check_metadata(meta: dict[str, str], where: str, kind: str = KIND) -> dict[str, Any]:
    """Validate the metadata properties of ``where``, an export of ``kind``, and decode them (``config`` as a dict,
    a generator's ``eps`` as a float)."""
    what = WHAT[kind]
    if meta.get("format") == FORMAT and meta.get("kind") in WHAT and meta["kind"] != kind:
        raise OnnxModelError(f"'{where}' is an export of {checkpoint.article(WHAT[meta['kind']])}, not of "
                             f"{checkpoint.article(what)}")
    if meta.get("format") != FORMAT or meta.get("kind") != kind:
        # read without onnx, a few bytes of text can parse as a model with no properties: do not call it one
        raise OnnxModelError(f"'{where}' is not a PaintGuard {what} export (no paintguard metadata); export "
                             "one with 'paintguard export-onnx'")
    try:
        decoded = {**meta, "config": json.loads(meta["config"])}
        if kind == KIND:
            decoded["eps"] = float(meta["eps"])
    except (KeyError, ValueError) as err:
        raise OnnxModelError(f"'{where}' has broken PaintGuard metadata: {err}") from None
    if kind == KIND and decoded["config"].get("eps") != decoded["eps"]:
        raise OnnxModelError(f"'{where}' has inconsistent metadata: eps {decoded['eps']} vs the architecture's "
                             f"{decoded['config'].get('eps')}")
    return decoded


def check_fresh(meta: dict[str, Any], where: str, source: str | os.PathLike | None = None,
                rebuild: str | None = None) -> None:
    """Refuse a stale export (one whose recorded fingerprint differs from its checkpoint's) or another's.

    ``source`` is the checkpoint the caller means; without it, an export of a shipped
    checkpoint is checked against the one of its recorded file name, when there is
    one (an export of a checkpoint that is not in ``checkpoints/``, such as a
    generator of one's own of the same name, cannot be checked and is taken as it is).
    ``rebuild`` is the command the error suggests for a stale export.
    """
    path = Path(source) if source is not None else checkpoint.checkpoints_dir() / str(meta.get("source", ""))
    # exports made before "source_shipped" was recorded were checked by name alone
    shipped = meta.get("source_shipped", "true") == "true"
    if source is None and not (shipped and meta.get("source") and path.is_file()):
        return
    recorded, actual = str(meta.get("source_sha256")), fingerprint(path)
    if recorded == actual:
        return
    if meta.get("source") and meta["source"] != path.name:
        # no rebuild hint: rebuilding would replace that generator's export with this one's
        raise OnnxModelError(f"'{where}' was exported from another checkpoint ('{meta['source']}'), not from "
                             f"'{path}'; use it with the checkpoint it was exported from")
    rebuild = rebuild or f"paintguard export-onnx {path} -o {where} --overwrite"
    raise OnnxModelError(f"'{where}' is stale: it was exported from an older version of '{path}' (sha256 "
                         f"{recorded[:12]}..., now {actual[:12]}...); rebuild it with '{rebuild}'")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message level; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated message")
        yield number, wire, value


METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {1: key, 2: value}


def read_metadata(path: str | os.PathLike, kind: str = KIND) -> dict[str, Any]:
    """The decoded PaintGuard metadata of an ONNX file, an export of ``kind``, read without onnx or onnxruntime.

    Walking the top level of the ModelProto is enough (the graph is skipped unread),
    so ``paintguard web`` can check a model's freshness with the base install.
    """
    try:
        data = Path(path).read_bytes()
        meta = {}
        for number, wire, value in _fields(data):
            if number == METADATA_PROPS and wire == 2:
                entry = {n: v for n, w, v in _fields(value) if w == 2}
                meta[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    except OSError as err:
        raise OnnxModelError(f"cannot read ONNX model '{path}': {err.strerror or err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise OnnxModelError(f"'{path}' is not an ONNX model: {err}") from None
    return check_metadata(meta, str(path), kind)
