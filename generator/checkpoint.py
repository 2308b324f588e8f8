"""PaintGuard's own checkpoint format and key-for-key state-dict loading.

A checkpoint is one safetensors file: the tensors, plus string metadata saying
what it is (``kind``: "inpainter" or "generator"), its architecture
(``config``, JSON) and free-form notes. Shipped checkpoints live in the
repository's ``checkpoints/`` folder (override with ``PAINTGUARD_CHECKPOINTS``)
and are loaded by name, e.g. ``lama-tiny``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from generator.messages import one_line
from generator.resources import project_path
from generator.save import atomic_write

FORMAT = "paintguard"
SUFFIX = ".safetensors"
# what turns a training checkpoint into a PaintGuard checkpoint of each kind (read_metadata's advice)
EXPORTED_BY = {
    "inpainter": "export a training checkpoint with 'paintguard fit-inpainter export --ckpt_path CKPT --out "
                 "FILE.safetensors', or give a LaMa checkpoint's folder (config.yaml + models/best.ckpt)",
    "generator": "export a training checkpoint with 'paintguard train export --ckpt_path CKPT --out FILE.safetensors'",
}


class CheckpointError(ValueError):
    """A checkpoint that is missing, of the wrong kind, or does not fit its architecture."""


def weights_fingerprint(module: nn.Module) -> str:
    """A short SHA-256 of a module's state: tells two sets of weights of the same architecture apart."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def checkpoints_dir() -> Path:
    """The folder searched for checkpoint names."""
    env = os.environ.get("PAINTGUARD_CHECKPOINTS")
    return Path(env) if env else project_path("checkpoints")


def available(kind: str | None = None) -> list[str]:
    """Names of the shipped checkpoints, optionally only those of one kind."""
    names = []
    # by name, not file name: "lama-tiny" (the default) before "lama-tiny-ft", whose file name sorts first ('-' < '.')
    for path in sorted(checkpoints_dir().glob(f"*{SUFFIX}"), key=lambda p: p.name.removesuffix(SUFFIX)):
        try:
            if kind is None or read_metadata(path).get("kind") == kind:
                names.append(path.name.removesuffix(SUFFIX))
        except CheckpointError:
            continue
    return names


def resolve(name_or_path: str | os.PathLike, kind: str) -> Path:
    """Turn a shipped name (with or without its suffix) or a file path into an existing checkpoint path."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"{article(kind)} checkpoint is a shipped name or a file path, got "
                        f"{type(name_or_path).__name__}")
    path = Path(name_or_path)
    if path.exists():
        return path
    named = checkpoints_dir() / f"{name_or_path}{SUFFIX}"
    if named.is_file():
        return named
    # the name as `ls checkpoints/` shows it, or as the configs write it from the clone (checkpoints/NAME.safetensors)
    shipped = checkpoints_dir() / path.name
    if path.suffix == SUFFIX and path.parts[:-1] in ((), ("checkpoints",)) and shipped.is_file():
        return shipped
    names = ", ".join(available(kind)) or "none"
    what = "a file or a LaMa folder" if kind == "inpainter" else "a file"
    hint = ""
    # the clone's habit outside the clone (an installed copy): an export into ./checkpoints named by its name
    local = Path("checkpoints") / (path.name if path.suffix == SUFFIX else f"{path.name}{SUFFIX}")
    if len(path.parts) == 1 and local.is_file():
        hint = f"; '{local}' is a file of the working folder: pass its path"
    raise CheckpointError(f"no {kind} checkpoint {str(name_or_path)!r}: not {what}, and not a shipped name "
                          f"({names}){hint}")


def article(word: str) -> str:
    """``word`` with its indefinite article: "an inpainter", "a generator"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _lama_folder_of(path: Path) -> Path | None:
    """The LaMa model folder (config.yaml + models/best.ckpt) that ``path`` is one of the two files of, or None."""
    if path.name == "config.yaml":
        folder = path.parent
    elif path.name == "best.ckpt" and path.parent.name == "models":
        folder = path.parent.parent
    else:
        return None
    return folder if (folder / "config.yaml").is_file() and (folder / "models" / "best.ckpt").is_file() else None


# the LightningModule attribute each kind's network is trained under (GeneratorModule.net, InpainterModule.generator;
# LaMa's own best.ckpt too): the first part of its weights' names in a training checkpoint
TRAINED_UNDER = {"net": "generator", "generator": "inpainter"}


def trained_kind(path: str | os.PathLike) -> str | None:
    """The kind of network a training checkpoint (a ``torch.save`` file) holds, told by its weights' names; None
    when it cannot be read safely or its names say neither."""
    try:  # mmap: only the names are wanted, not gigabytes of weights read in
        blob = torch_load(path, mmap=True)
    except CheckpointError:
        return None
    state = blob.get("state_dict") if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        return None
    kinds = {TRAINED_UNDER.get(str(name).split(".")[0]) for name in state} - {None}
    return kinds.pop() if len(kinds) == 1 else None


def read_metadata(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """The metadata of a PaintGuard safetensors file, with ``config`` decoded from JSON.

    ``kind`` (what the caller expects) only shapes the error for an ONNX export or a PyTorch file given as one.
    """
    if Path(path).is_dir():  # safetensors said "No such device (os error 19)"
        raise CheckpointError(f"'{path}' is a folder, not a checkpoint file")
    lama = _lama_folder_of(Path(path))
    if lama is not None:  # a file inside a LaMa folder: the folder is what loads
        raise CheckpointError(f"'{path}' is part of the LaMa model folder '{lama}': give the folder itself")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        if Path(path).suffix.lower() == ".onnx" and Path(path).is_file():
            # safetensors reads an ONNX file's first bytes as a header length ("header too large"): say what it is
            hint = "; pass --backend onnx to run it" if kind == "generator" else ""
            raise CheckpointError(f"'{path}' is an ONNX export, not a safetensors checkpoint{hint}") from None
        if Path(path).is_file() and zipfile.is_zipfile(path):
            # torch.save's zip (a training run's last.ckpt, LaMa's best.ckpt): "header too large" says nothing of it
            trained = trained_kind(path)
            if kind and trained and trained != kind:  # the other model's run: its export would be refused here too
                raise CheckpointError(f"'{path}' is a training checkpoint of {article(trained)}, not of "
                                      f"{article(kind)}") from None
            raise CheckpointError(f"'{path}' is a PyTorch checkpoint, not a PaintGuard .safetensors one: "
                                  f"{EXPORTED_BY.get(str(trained or kind), 'export it first')}") from None
        if isinstance(err, SafetensorError):  # its own words ("header too large") do not say what the file is
            raise CheckpointError(f"cannot read checkpoint '{path}': not a safetensors file, or a damaged one "
                                  f"({one_line(str(err))})") from None
        raise CheckpointError(f"cannot read checkpoint '{path}': {err}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is a safetensors file but not a PaintGuard checkpoint (no format metadata)")
    meta["config"] = json.loads(meta.get("config", "{}"))
    return meta


def save(state: dict[str, torch.Tensor], path: str | os.PathLike, kind: str, config: dict[str, Any],
         **notes: str) -> Path:
    """Write tensors and architecture to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    for name, value in notes.items():  # safetensors' metadata maps str to str; "format" is the format's own
        if not isinstance(value, str) or name == "format":
            raise TypeError(f"checkpoint notes are strings, under any name but 'format'; got {name}={value!r}")
    if path.is_dir():
        raise IsADirectoryError(f"'{path}' is a folder; give the checkpoint file's name")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "kind": kind, "config": json.dumps(config, sort_keys=True), **notes}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}

    try:  # atomic_write gives it an ordinary file's mode (safetensors creates it owner-only, 0600)
        return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    except SafetensorError as err:  # safetensors' own type for an I/O failure (a full disk, no such folder)
        raise OSError(f"cannot write '{path}': {err}") from None


def check_kind(name_or_path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """The metadata of the checkpoint a file path or shipped name gives, one of ``kind`` (only its header is read),
    or a CheckpointError."""
    path = resolve(name_or_path, kind)
    meta = read_metadata(path, kind)
    if meta.get("kind") != kind:
        raise CheckpointError(f"'{path}' is {article(str(meta.get('kind', 'unknown')))} checkpoint, "
                              f"expected a checkpoint of kind '{kind}'")
    return meta


def load(path: str | os.PathLike, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint of the expected kind; returns (state dict, metadata)."""
    meta = check_kind(path, kind)
    return load_file(str(path)), meta


def torch_load(path: str | os.PathLike, what: str = "checkpoint", allowed: list[Any] | tuple = (),
               **kwargs: Any) -> Any:
    """``torch.load`` with ``weights_only=True`` (no code from the file runs) onto the CPU; ``allowed``: extra
    ``safe_globals``. Any failure is a one-line CheckpointError naming the file and the ``what`` it should be."""
    try:
        with torch.serialization.safe_globals(list(allowed)), warnings.catch_warnings():
            # torch warns (two lines) about a pickle protocol it did not write, mostly for files that then fail
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except OSError as err:
        raise CheckpointError(f"cannot read {what} '{path}': {err.strerror or one_line(err)}") from None
    except Exception as err:  # a damaged file trips the unpickler anywhere: KeyError, struct.error, EOFError, ...
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        refused = next((line for line in lines if "Unsupported global" in line), None)
        if refused:  # a pickled object, or text whose first byte reads as the pickle's "import" opcode
            name = re.search(r"GLOBAL (.+?) was not an allowed global", refused)
            code = f"'{name.group(1)}'" if name else "a class or function"
            # not torch's advice, which is to allow the code to run
            raise CheckpointError(f"cannot read {what} '{path}' safely: it refers to code, {one_line(code, 80)}, "
                                  "which a weights-only load never runs (or the file is damaged)") from None
        # "Weights only load failed" heads every unpickler error, with advice to drop weights_only: skip to the cause
        cause = next((line for line in lines if line.startswith("Unsupported")), lines[0] if lines else "")
        cause = cause.split(". ", 1)[0]  # the first sentence: a damaged zip's error goes on with three of advice
        module = type(err).__module__.lstrip("_")
        label = type(err).__name__ if module == "builtins" else f"{module}.{type(err).__name__}"  # struct.error
        detail = f"{label}: {cause}" if cause else label
        raise CheckpointError(f"cannot read {what} '{path}': not a PyTorch checkpoint, or a damaged one "
                              f"({one_line(detail, 200)})") from None


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``module`` key-for-key, checking every shape; errors name the offending keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch (file vs architecture)", mismatched)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            problems.append(f"{label}: {', '.join(keys[:3])}{more}")
    if problems:
        raise CheckpointError(f"weights in '{source}' do not fit the architecture: {'; '.join(problems)}")
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(state[k])


# options that change only the frozen copy of the target's layers (buffers the module already holds, made by
# copy_layers from the target itself): a network may start from one with another value
FROZEN_COPY = {"head_rank": "target_encoder."}

# options that add a block which starts as the identity (zero output): a network without it (the option at its
# "off" value) can start one with it. option -> (the block's key prefix, the option's off value)
GROWN_BLOCKS = {"encoder_features": (("feature_proj.",), False), "global_context": (("context.",), "none"),
                "bottleneck_blocks": (("bottleneck_proj.", "target_blocks."), 0)}


def copy_weights(module: nn.Module, config: Any, source_net: nn.Module, source_config: Any, source: str) -> None:
    """Start ``module`` (built from dataclass ``config``) from a loaded network's weights.

    Every architecture option must match, also those that change no tensor shape (an
    output activation, a ratio that rounds alike), except that an option of ``GROWN_BLOCKS``
    may be switched on; then the weights are copied key for key with every shape checked.
    Errors name the options that differ.
    """
    grown = [f.name for f in fields(config) if f.name in GROWN_BLOCKS
             and getattr(config, f.name) != GROWN_BLOCKS[f.name][1]
             and getattr(source_config, f.name, GROWN_BLOCKS[f.name][1]) == GROWN_BLOCKS[f.name][1]]
    recopied = [f.name for f in fields(config) if f.name in FROZEN_COPY
                and getattr(config, f.name) != getattr(source_config, f.name, None)]
    differ = [f"{f.name} {getattr(source_config, f.name)!r} (this model: {getattr(config, f.name)!r})"
              for f in fields(config) if getattr(config, f.name) != getattr(source_config, f.name)
              and f.name not in grown + recopied]
    if differ:
        raise CheckpointError(f"init_from '{source}' is another architecture: {', '.join(differ)}; "
                              "set the model's options to match it")
    state = dict(source_net.state_dict())
    # a block that starts as the identity keeps its initial weights, and so does a frozen copy made for another
    # option value (from the target itself); every other tensor still comes from the source
    new = sum((GROWN_BLOCKS[g][0] for g in grown), ()) + tuple(FROZEN_COPY[r] for r in recopied)
    state = {k: v for k, v in state.items() if not k.startswith(new)}
    state.update({k: v for k, v in module.state_dict().items() if k.startswith(new)})
    load_state_strict(module, state, str(source))
