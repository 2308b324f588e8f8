"""What ``paintguard compare`` compares: the samples and the methods its configuration
(``trainer.evaluation.compare_config``) asks for."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from generator import checkpoint
from generator.io import find_image_mask_pairs, read_image, read_mask
from generator.messages import counted
from generator.precision import resolve_dtype
from generator.protector import FULL_MASK, Protector
from trainer.data.images import FixedCropDataset, list_images, sample_images
from trainer.evaluation.compare_config import SAMPLE_SETS, CompareConfig, ConfigError, GeneratorSpec, eot_from_config
from trainer.evaluation.scoring import (Method, autocast_method, generator_method, hybrid_method, iterative_method,
                                        no_protection, refine_method)
from trainer.inpainting.inpainter import Inpainter, load_inpainter
from trainer.objective.iterative import IterativeConfig

Tensor = torch.Tensor
EPS = IterativeConfig().eps
TRANSFER = "transfer"  # the condition name of the scores against the transfer inpainter

@dataclass
class Sample:
    name: str
    image: Tensor  # (3,H,W), 8-bit values
    mask: Tensor  # (1,H,W) in {0,1}


def load_samples(cfg: CompareConfig) -> list[Sample]:
    """The (image, mask) pairs to protect, images rounded to 8 bits (what a user's files hold)."""
    limit = cfg.max_samples or math.inf
    samples = []
    if cfg.masks.kind == "seeded":
        paths = sample_images(SAMPLE_SETS[cfg.images]) if cfg.images in SAMPLE_SETS else list_images(cfg.images)
        if not paths:
            raise ValueError(f"no images found in '{cfg.images}'")
        per = cfg.masks.per_image
        data = FixedCropDataset(paths, size=cfg.masks.size, masks_per_image=per, seed=cfg.masks.seed)
        for i in range(int(min(len(data), limit))):
            item = data[i]
            name = paths[i // per].stem + (f"#{i % per}" if per > 1 else "")
            samples.append(Sample(name, item["image"], item["mask"]))
    else:
        pairs = find_image_mask_pairs(cfg.images, cfg.masks.suffix)
        if not pairs:
            raise ValueError(f"no images found in '{cfg.images}'")
        missing = [path for path, masks in pairs if not masks]
        if missing:
            raise ValueError(f"image '{missing[0]}' has no mask '{missing[0].stem}{cfg.masks.suffix}*.png' beside it"
                             + (f" ({len(missing) - 1} more images lack one)" if len(missing) > 1 else ""))
        for path, mask_paths in pairs:
            image = read_image(path)
            for mask_path in mask_paths:
                if len(samples) < limit:
                    samples.append(Sample(mask_path.stem, image, read_mask(mask_path, size=tuple(image.shape[-2:]))))
    for s in samples:
        if not s.mask.any():
            raise ValueError(f"the mask of sample '{s.name}' is empty: nothing to protect")
        if s.mask.all():  # scored, its zero gain and unbounded PSNRs would be averaged into every figure
            raise ValueError(f"sample '{s.name}': {FULL_MASK}; nothing to compare")
        s.image = torch.round(s.image * 255) / 255
    return samples


class InpainterPool:
    """Inpainters by source, each loaded once on one device (the attacked one, targets and ensemble members)."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._loaded: dict[str, Inpainter] = {}
        self._recorded: dict[str, str] = {}  # fingerprints a generator's export recorded for its targets

    def __call__(self, source: str) -> Inpainter:
        if source not in self._loaded:
            self._loaded[source] = load_inpainter(source, device=self.device)
        return self._loaded[source]

    def fingerprint(self, source: str) -> str | None:
        """The weights' fingerprint: as a generator's export recorded it, else as loaded here; None for a source that
        cannot be loaded here (then only its name counts)."""
        if source in self._recorded:  # what the generator was trained against, whatever the path now names
            return self._recorded[source]
        try:
            return self(source).fingerprint()
        except (checkpoint.CheckpointError, OSError, ValueError):
            return None

    def remember(self, sources: list[str], fingerprints: list[str]) -> None:
        """The fingerprints an export recorded for ``sources``: a relative path typed where it was trained may
        not resolve here."""
        self._recorded.update(zip(sources, fingerprints))

    def same(self, a: str, b: str) -> bool:
        """Whether two sources are one inpainter: the same name, or the same weights under two names."""
        return a == b or (self.fingerprint(a) or "a") == (self.fingerprint(b) or "b")


@dataclass
class MethodSet:
    """The configured methods by display name, the optimiser's name (the reference, if any) and, per method, the
    inpainter sources its noise was made against ([] for no noise)."""

    methods: dict[str, Method]
    reference: str | None
    against: dict[str, list[str]]


def generator_inpainters(name_or_path: str, pool: InpainterPool | None = None) -> list[str]:
    """What a generator checkpoint was trained against, from its ``inpainter`` note (a comma list for an ensemble);
    with ``pool``, the targets' recorded fingerprints (``inpainter_sha``) are handed to it."""
    meta = checkpoint.read_metadata(checkpoint.resolve(name_or_path, "generator"))
    sources = [s for s in meta.get("inpainter", "").split(",") if s]
    recorded = [s for s in meta.get("inpainter_sha", "").split(",") if s]
    if pool is not None and len(recorded) == len(sources):
        pool.remember(sources, recorded)
    return sources


def generator_ensemble_mode(name_or_path: str) -> str:
    """How an ensemble generator met its models (``mean`` or ``random``, its ``ensemble`` note; older: mean)."""
    return checkpoint.read_metadata(checkpoint.resolve(name_or_path, "generator")).get("ensemble", "mean")


def build_methods(cfg: CompareConfig, inpainter: Inpainter, pool: InpainterPool | None = None) -> MethodSet:
    """The configured methods against ``inpainter`` (the ensembles against theirs, loaded through ``pool``)."""
    spec, device = cfg.methods, torch.device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    pool = pool or InpainterPool(device)

    @functools.cache  # one Protector per checkpoint, shared by the methods that use it
    def protector(name: str) -> Protector:
        return Protector.from_checkpoint(name, device=device, dtype=dtype)  # hybrid and refine: steps in dtype too

    def optimiser(inpainters: Inpainter | list[Inpainter], config: IterativeConfig) -> Method:
        """The optimiser with its convolutions in ``dtype``, as ``paintguard protect --dtype`` runs it."""
        return autocast_method(iterative_method(inpainters, config, seed=cfg.seed), dtype)

    methods: dict[str, Method] = {}
    against: dict[str, list[str]] = {}

    def add(name: str, method: Method, made_against: list[str]) -> None:
        if name in methods:
            raise ConfigError(f"two methods would both be called '{name}'; make them differ")
        methods[name], against[name] = method, made_against

    reference = None
    if spec.none is not None:
        add("none", no_protection(), [])
    if spec.optimiser is not None:
        reference = f"optimiser ({counted(spec.optimiser.steps, 'step')})"
        add(reference, optimiser(inpainter, IterativeConfig(steps=spec.optimiser.steps)), [cfg.inpainter])
    if spec.optimiser_eot is not None:
        eot = spec.optimiser_eot
        config = IterativeConfig(steps=eot.steps, eot=eot_from_config(eot.eot_config), eot_samples=eot.samples)
        add(f"optimiser EOT ({counted(eot.steps, 'step')} x {eot.samples})", optimiser(inpainter, config),
            [cfg.inpainter])
    for ens in spec.optimiser_ensemble or []:
        mode = "" if ens.mode == "mean" else f", {ens.mode} member per step"
        config = IterativeConfig(steps=ens.steps, ensemble=ens.mode)
        add(f"optimiser ensemble ({counted(ens.steps, 'step')}{mode}) [{'+'.join(ens.inpainters)}]",
            optimiser([pool(s) for s in ens.inpainters], config), list(ens.inpainters))
    plain = {"generator": spec.generator, "generator (robust)": spec.generator_robust,
             "generator (fast)": spec.generator_fast}
    for name, gen in plain.items():
        if gen is not None:
            add(name, generator_method(protector(gen.checkpoint)), generator_inpainters(gen.checkpoint, pool))
    for gen in spec.generator_ensemble or []:
        members = gen.inpainters if gen.inpainters is not None else generator_inpainters(gen.checkpoint, pool)
        mode = generator_ensemble_mode(gen.checkpoint)
        mode = "" if mode == "mean" else f" ({mode} member per batch)"
        add(f"generator ensemble{mode} [{'+'.join(members) or gen.checkpoint}]",
            generator_method(protector(gen.checkpoint)), list(members))
    for kind, steps, make in (("hybrid", spec.hybrid, hybrid_method), ("refine", spec.refine, refine_method)):
        if steps is not None:
            generator = steps.checkpoint or (spec.generator or GeneratorSpec()).checkpoint
            for k in steps.k:
                add(f"{kind} (k={k})", make(protector(generator), inpainter, k), [cfg.inpainter])
    return MethodSet(methods, reference, against)
