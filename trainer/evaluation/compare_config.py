"""``paintguard compare``'s YAML configuration, checked field by field into dataclasses.

Every option is documented in configs/compare/lama-tiny.yaml, the transfer options in configs/compare/transfer.yaml;
a bad field is one ``ConfigError`` line naming the file.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import torch
import yaml

from generator.messages import one_line
from generator.precision import CHOICES
from trainer.evaluation.editor_masks import EDITOR_MASKS
from trainer.objective.ensemble import ENSEMBLE_MODES
from trainer.objective.eot import EOTConfig
from trainer.objective.transforms import TRANSFORMS

# a 16384 px crop is 268 M pixels, far past what the optimiser fits in memory: a larger size is a typo, and numpy's
# words for it ("Maximum allowed dimension exceeded") name no key
MAX_SIZE = 16384
SAMPLE_SETS = {"sample-val": "val", "sample-train": "train", "sample-all": "all"}


# --- configuration --------------------------------------------------------------------------

class ConfigError(ValueError):
    """A compare configuration that is malformed or asks for something impossible."""


@dataclass
class MaskConfig:
    """kind "seeded": LaMa-style masks from ``seeded_masks`` on ``size`` px centre crops;
    kind "files": the masks beside each image, LaMa's ``NAME{suffix}*.png``, at the image's own size."""

    kind: str = "seeded"
    size: int = 256
    seed: int = 0
    per_image: int = 1
    suffix: str = "_mask"


@dataclass
class NoneSpec:
    """No noise: the row every gain is measured from."""


@dataclass
class OptimiserSpec:
    steps: int = 20


@dataclass
class OptimiserEOTSpec:
    """The optimiser averaging its loss over ``samples`` random transformations per step (the fair baseline of a
    robust generator); the transformations are ``model.eot`` of the generator training config ``eot_config``."""

    steps: int = 20
    samples: int = 4
    eot_config: str = "configs/generator/lama-tiny-robust.yaml"


@dataclass
class GeneratorSpec:
    checkpoint: str = "generator-lama-tiny"


@dataclass
class RobustGeneratorSpec:
    checkpoint: str = "generator-lama-tiny-robust"


@dataclass
class FastGeneratorSpec:
    checkpoint: str = "generator-lama-tiny-fast"


@dataclass
class OptimiserEnsembleSpec:
    """The optimiser against several inpainters at once (trainer/objective/ensemble.py): each step on the mean of
    their losses (mode "mean") or on one drawn per step ("random")."""

    inpainters: list[str] = field(default_factory=list)
    steps: int = 20
    mode: str = "mean"


@dataclass
class GeneratorEnsembleSpec:
    """A generator trained against several inpainters. ``inpainters``: what it was trained against (its row of the
    transfer matrix, and which targets it has never seen); None: the list its checkpoint's metadata records."""

    checkpoint: str = ""
    inpainters: list[str] | None = None


@dataclass
class HybridSpec:
    k: list[int] = field(default_factory=lambda: [2, 5])
    checkpoint: str | None = None  # None: the generator method's checkpoint


@dataclass
class RefineSpec:
    k: list[int] = field(default_factory=lambda: [1, 2])  # optimiser steps on the generator's field
    checkpoint: str | None = None  # None: the generator method's checkpoint (an encoder-gradient generator)


@dataclass
class MethodsConfig:
    """The methods to run; a listed method with no options (``none:``) runs with its defaults."""

    none: NoneSpec | None = None
    optimiser: OptimiserSpec | None = None
    optimiser_eot: OptimiserEOTSpec | None = None
    generator: GeneratorSpec | None = None
    generator_robust: RobustGeneratorSpec | None = None
    generator_fast: FastGeneratorSpec | None = None
    hybrid: HybridSpec | None = None
    refine: RefineSpec | None = None
    # lists, for leave-one-out (one entry per left-out inpainter); a single mapping is one entry
    optimiser_ensemble: list[OptimiserEnsembleSpec] | None = None
    generator_ensemble: list[GeneratorEnsembleSpec] | None = None


@dataclass
class CompareConfig:
    images: str = "sample-val"  # sample-val | sample-train | sample-all (the embedded photos) or a folder
    masks: MaskConfig = field(default_factory=MaskConfig)
    max_samples: int | None = None
    inpainter: str = "lama-tiny"
    transfer: str | None = None
    # the transfer matrix: every method's saved images scored against each of these inpainters, and the white-box
    # optimiser run against each of them for its share of gain (trainer/evaluation/transfer.py)
    targets: list[str] = field(default_factory=list)
    methods: MethodsConfig = field(default_factory=lambda: MethodsConfig(
        none=NoneSpec(), optimiser=OptimiserSpec(), generator=GeneratorSpec(), hybrid=HybridSpec()))
    transforms: list[str] = field(default_factory=lambda: list(TRANSFORMS))
    editor_masks: list[str] = field(default_factory=list)  # trainer/evaluation/editor_masks.py: none by default
    batch_size: int = 1
    repeats: int = 1
    device: str = "cpu"
    dtype: str = "float32"  # the networks' precision in every method, as ``paintguard protect --dtype``
    seed: int = 0
    figure_rows: int = 4
    wandb: bool = False


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _build(cls: type, data: object, where: str) -> typing.Any:
    """An instance of dataclass ``cls`` from a YAML mapping, refusing unknown keys and values of the wrong type."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the file'} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key '{_join(where, key)}'; expected one of {', '.join(known)}")
    return cls(**{key: _value(hints[key], value, _join(where, key)) for key, value in data.items()})


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _value(tp: typing.Any, value: object, where: str) -> typing.Any:
    args = typing.get_args(tp)
    if type(None) in args:  # X | None
        inner = next(a for a in args if a is not type(None))
        if value is None:
            return _build(inner, {}, where) if is_dataclass(inner) else None
        return _value(inner, value, where)
    if is_dataclass(tp):
        return _build(tp, value, where)
    if typing.get_origin(tp) is list:
        if isinstance(value, dict) and is_dataclass(args[0]):
            value = [value]  # a list of method entries may be written as its single entry
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {_TYPE_NAMES[tp]}, got {value!r}")
    return value


def _check(cfg: CompareConfig) -> None:
    """Value checks that the types alone do not cover."""
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(cfg.images in SAMPLE_SETS or Path(cfg.images).is_dir(),
            f"images must be one of {', '.join(SAMPLE_SETS)} or an existing folder, got '{cfg.images}'")
    require(cfg.masks.kind in ("seeded", "files"), f"masks.kind must be 'seeded' or 'files', got '{cfg.masks.kind}'")
    require(cfg.masks.kind == "seeded" or cfg.images not in SAMPLE_SETS,
            "masks.kind 'files' needs images to be a folder holding the mask files")
    require(16 <= cfg.masks.size <= MAX_SIZE, f"masks.size must be between 16 and {MAX_SIZE}, got {cfg.masks.size}")
    require(cfg.masks.per_image >= 1, f"masks.per_image must be >= 1, got {cfg.masks.per_image}")
    require(cfg.max_samples is None or cfg.max_samples >= 1, f"max_samples must be >= 1, got {cfg.max_samples}")
    methods = cfg.methods
    require(any(getattr(methods, f.name) is not None for f in fields(methods)),
            f"methods lists no method; choose from {', '.join(f.name for f in fields(methods))}")
    require(methods.optimiser is None or methods.optimiser.steps >= 1,
            f"methods.optimiser.steps must be >= 1, got {methods.optimiser and methods.optimiser.steps}")
    if methods.optimiser_eot is not None:
        spec = methods.optimiser_eot
        require(spec.steps >= 1 and spec.samples >= 1,
                f"methods.optimiser_eot.steps and .samples must be >= 1, got {spec.steps} and {spec.samples}")
        eot_from_config(spec.eot_config)  # a missing file or an EOT-less config is an error now, not after an hour
    require(methods.hybrid is None or (bool(methods.hybrid.k) and min(methods.hybrid.k) >= 1),
            f"methods.hybrid.k must be a non-empty list of steps >= 1, got {methods.hybrid and methods.hybrid.k}")
    require(methods.refine is None or (bool(methods.refine.k) and min(methods.refine.k) >= 1),
            f"methods.refine.k must be a non-empty list of steps >= 1, got {methods.refine and methods.refine.k}")
    for i, ens in enumerate(methods.optimiser_ensemble or []):
        where = f"methods.optimiser_ensemble[{i}]"
        require(len(ens.inpainters) >= 2 and all(ens.inpainters),
                f"{where}.inpainters must list at least two inpainters, got {ens.inpainters}")
        require(ens.steps >= 1, f"{where}.steps must be >= 1, got {ens.steps}")
        require(ens.mode in ENSEMBLE_MODES,
                f"{where}.mode must be one of {', '.join(ENSEMBLE_MODES)}, got '{ens.mode}'")
    for i, gen in enumerate(methods.generator_ensemble or []):
        require(bool(gen.checkpoint), f"methods.generator_ensemble[{i}].checkpoint is missing")
    require(len(set(cfg.targets)) == len(cfg.targets) and all(cfg.targets),
            f"targets must be distinct, non-empty inpainter names, got {cfg.targets}")
    for name in cfg.transforms:
        require(name in TRANSFORMS, f"unknown transform '{name}'; choose from {', '.join(TRANSFORMS)}")
    for name in cfg.editor_masks:
        require(name in EDITOR_MASKS, f"unknown editor mask '{name}'; choose from {', '.join(EDITOR_MASKS)}")
    require(cfg.batch_size >= 1 and cfg.repeats >= 1, "batch_size and repeats must be >= 1")
    require(cfg.dtype in CHOICES, f"dtype must be one of {', '.join(CHOICES)}, got '{cfg.dtype}'")
    require(cfg.figure_rows >= 0, f"figure_rows must be >= 0, got {cfg.figure_rows}")
    try:
        device = torch.device(cfg.device)
    except RuntimeError:
        raise ConfigError(f"device '{cfg.device}' is not a torch device (cpu, cuda, cuda:1, ...)") from None
    require(device.type != "cuda" or torch.cuda.is_available(), f"device '{cfg.device}' is not available here")


def eot_from_config(path: str) -> EOTConfig:
    """``model.eot`` of a generator training YAML: the transformations a robust generator was trained under."""
    if not Path(path).is_file():
        raise ConfigError(f"methods.optimiser_eot.eot_config '{path}' does not exist")
    try:
        eot = ((yaml.safe_load(Path(path).read_text()) or {}).get("model") or {}).get("eot")
        config = EOTConfig.coerce(eot)
    except (yaml.YAMLError, AttributeError, TypeError, ValueError) as err:
        raise ConfigError(f"methods.optimiser_eot.eot_config '{path}': {one_line(err)}") from None
    if config is None:
        raise ConfigError(f"methods.optimiser_eot.eot_config '{path}' has no model.eot section")
    return config


class Unset(str):
    """An ``--unset KEY`` among the settings: the dotted key taken out of the config, as if the file left it out
    (a method not run, an option back to its default)."""


def remove(data: object, key: str) -> dict:
    """``data`` without the dotted ``key``, which it must have."""
    *sections, last = key.split(".")
    node = data
    for i, name in enumerate([*sections, last]):
        where = ".".join(sections[:i])
        has = sorted(node) if isinstance(node, dict) else []
        if name not in has:
            held = f"{where or 'the file'} has {', '.join(has)}" if has else f"{where or 'the file'} has no keys"
            raise ConfigError(f"--unset '{key}': no '{'.'.join([*sections[:i], name])}' to take out ({held})")
        if i < len(sections):
            node = node[name]
    del node[last]
    return data


def override(data: object, setting: str) -> dict:
    """``data`` (a config's YAML mapping) with one ``KEY.SUB=VALUE`` of ``--set`` applied; VALUE is read as YAML
    (``384``, ``null``, ``[png, jpeg90]``), and sections on the way are made if the file leaves them out. An
    ``Unset`` setting takes its key out instead."""
    if isinstance(setting, Unset):
        return remove(data, setting.strip())
    key, equals, text = setting.partition("=")
    if not equals or not key.strip():
        raise ConfigError(f"--set '{setting}' is not KEY=VALUE (e.g. masks.size=384)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set '{setting}': the value is not valid YAML: {one_line(err)}") from None
    data = {} if data is None else data
    *sections, last = key.strip().split(".")
    node = data
    for i in range(len(sections) + 1):
        if not isinstance(node, dict):
            raise ConfigError(f"--set '{setting}': '{'.'.join(sections[:i]) or 'the file'}' is not a section")
        if i < len(sections):
            if node.get(sections[i]) is None:  # left out, or written empty (as `none:` is)
                node[sections[i]] = {}
            node = node[sections[i]]
    node[last] = value
    return data


def load_config(path: str | os.PathLike, settings: typing.Sequence[str] = ()) -> CompareConfig:
    """Read and check a compare YAML file, with ``--set KEY=VALUE`` (and ``Unset``) ``settings`` applied over it in
    order; every problem is one ConfigError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config '{path}' " + ("is a folder, not a YAML file" if path.is_dir() else "does not exist"))
    try:
        data = yaml.safe_load(path.read_text())
        for setting in settings:
            data = override(data, setting)
        cfg = _build(CompareConfig, data, "")
        _check(cfg)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config '{path}' is not valid YAML: {one_line(err)}") from None
    except ConfigError as err:
        raise ConfigError(f"config '{path}': {err}") from None
    return cfg
