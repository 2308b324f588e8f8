"""The inpainter's response, paid for once: input gradients, and optionally k-step teacher noises, over many crops.

One forward and backward pass through the frozen inpainter gives the gradient g of the
paper's total loss with respect to the image at zero noise; ``-eps * sign(g)`` (one FGSM
step) already keeps about three quarters of the 20-step optimiser's gain. So g is the
cheapest dense description of what the generator must learn, and a supervised stage on
cached gradients needs no inpainter call per step (``GeneratorModule.gradient_weight``).
``teacher_steps > 0`` also runs the optimiser for that many steps and stores its noise.

A cache is a folder that grows: ``cache.json`` says what it was built from (inpainter and
its weight fingerprint, crop size, seed, photos, teacher steps) and each
``shard-NNNNN.safetensors`` holds ``shard_size`` entries: the 8-bit crop, its mask, the
target colour, the gradient divided by its mean absolute value (float16) with that
scale, the teacher noise if any, the head's field at layer k if asked (``field_layers``:
the gradient inside the inpainter that an encoder-gradient generator predicts, a far
denser target than the image gradient's signs), and per entry the photo and the sample key it came
from. ``field_teacher`` (an encoder-gradient generator) instead stores as the field that generator's own
field after ``field_steps`` optimiser steps on it (``trainer.objective.field_steps``; 10 steps keep about
0.97 of the 20-step optimiser's gain), negated like a gradient, and as the teacher noise the noise it
gives: a teacher in the generator's own coordinates, which its head turns into the noise exactly.
Entry i is a pure function of (photos, size, seed, i), so building again with a larger ``count``
appends, an interrupted build resumes at its last whole shard, and two caches with the same recipe
hold the same entries.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from generator.checkpoint import weights_fingerprint
from generator.save import atomic_write
from trainer.data.images import RandomCropDataset, images_or_samples
from trainer.data.masks import MaskGenerator
from trainer.inpainting.inpainter import Inpainter, load_inpainter
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.fgsm import head_field, input_gradient, layer_gradient
from trainer.objective.field_steps import FIELD_LR, has_field, stepped_field
from trainer.objective.losses import prepare_task

Tensor = torch.Tensor
META = "cache.json"
SHARDS = "shard-*.safetensors"  # each one whole: written atomically, shard_size entries
SHARD = "shard-{:05d}.safetensors"
# samples are addressed as (0, i) of one endless epoch, so entry i never depends on the count asked for
ENDLESS = 10**9


def _recipe(inpainter: str, fingerprint: str, size: int, seed: int, images: list[Path], teacher_steps: int,
            shard_size: int, field_layers: int, field_teacher: dict | None = None) -> dict:
    recipe = {"inpainter": inpainter, "inpainter_fingerprint": fingerprint, "size": size, "seed": seed,
              "images": [p.name for p in images], "teacher_steps": teacher_steps, "shard_size": shard_size}
    if field_layers:  # only then: caches built before fields existed keep their recipe
        recipe["field_layers"] = field_layers
    if field_teacher:
        recipe["field_teacher"] = field_teacher
    return recipe


def _compare(built: dict, recipe: dict, keys: list[str]) -> str:
    """``shard_size (64 there, 32 here), images (58 photos there, 40 photos here)``: what differs, as a resume
    needs it."""
    def shown(value: Any) -> str:
        if value is None:
            return "none"
        if isinstance(value, list):
            return f"{len(value)} photos"
        if isinstance(value, dict):  # a field teacher
            return str(value.get("generator", "set"))
        return str(value)[:16]  # a fingerprint in full says no more

    return ", ".join(f"{k} ({shown(built.get(k))} there, {shown(recipe.get(k))} here)" for k in keys)


def _store(tensors: dict[str, list[Tensor]], key: str, scale_key: str, value: Tensor) -> None:
    """Append ``value`` divided by each entry's mean absolute value (float16) under ``key``, and that value under
    ``scale_key``: how gradients and fields are kept."""
    scale = value.abs().mean(dim=(1, 2, 3)).clamp_min(1e-20)
    tensors[key].append((value / scale[:, None, None, None]).half().cpu().contiguous())
    tensors[scale_key].append(scale.float().cpu())


def shard_files(folder: Path) -> list[Path]:
    """The cache's whole shard files, in order."""
    return sorted(folder.glob(SHARDS))


def build_gradient_cache(out: str | os.PathLike, inpainter: str = "lama-tiny", images: str | None = "split:train",
                         count: int = 1024, size: int = 128, seed: int = 0, teacher_steps: int = 0,
                         shard_size: int = 64, batch_size: int = 8, device: str = "cpu", field_layers: int = 0,
                         field_teacher: str | None = None, field_steps: int = 10,
                         log: Callable[[str], None] = print) -> Path:
    """Grow the cache folder ``out`` to at least ``count`` entries (whole shards), resuming where it stopped.

    ``field_layers`` = k > 0 also stores, per entry, the field an encoder-gradient head carrying the inpainter's
    layers 1..k takes (``trainer.objective.fgsm.head_field``), normalised like the gradient. ``field_teacher`` (a
    generator name or file) stores that generator's field after ``field_steps`` steps on it instead, and its noise
    as the teacher noise.
    """
    if count < 1 or size < 16 or shard_size < 1 or teacher_steps < 0 or field_layers < 0:
        raise ValueError("count and shard_size must be >= 1, size >= 16, teacher_steps and field_layers >= 0")
    if field_teacher and (field_layers or teacher_steps or field_steps < 1):
        raise ValueError("field_teacher stores its own field and noise: it needs field_steps >= 1 and excludes "
                         "field_layers and teacher_steps")
    folder = Path(out)
    paths = images_or_samples(images, "train")
    model = load_inpainter(inpainter, device=device)
    teacher_net, teacher_recipe = None, None
    if field_teacher:
        from generator.protector import load_generator  # lazy: only this option needs a generator

        teacher_net = load_generator(field_teacher).to(device).eval()
        if not has_field(teacher_net):
            raise ValueError(f"field_teacher '{field_teacher}' has no field to step: it needs an encoder-gradient "
                             "generator (such as generator-lama-tiny)")
        if size % teacher_net.size_multiple:
            raise ValueError(f"field_teacher needs a crop size that is a multiple of {teacher_net.size_multiple}")
        teacher_recipe = {"generator": str(field_teacher), "weights": weights_fingerprint(teacher_net),
                          "steps": field_steps, "lr": FIELD_LR}
    recipe = _recipe(str(inpainter), model.fingerprint(), size, seed, paths, teacher_steps, shard_size,
                     field_layers, teacher_recipe)
    if (folder / META).is_file():
        built = json.loads((folder / META).read_text())["recipe"]
        differs = sorted(k for k in recipe.keys() | built.keys() if built.get(k) != recipe.get(k))
        if differs:
            raise ValueError(f"gradient cache '{folder}' was built with other {_compare(built, recipe, differs)}; "
                             "pass its options to extend it, or use a new folder to build a different cache")
    dataset = RandomCropDataset(paths, size=size, samples_per_epoch=ENDLESS, mask_generator=MaskGenerator(size),
                                seed=seed)
    config = IterativeConfig(steps=max(teacher_steps, 1))
    start, shard = time.perf_counter(), len(shard_files(folder))
    while shard * shard_size < count:
        first = shard * shard_size
        tensors: dict[str, list[Tensor]] = {k: [] for k in ("image", "mask", "target", "grad", "scale", "teacher",
                                                            "field", "field_scale")}
        for lo in range(first, first + shard_size, batch_size):
            keys = [(0, i) for i in range(lo, min(lo + batch_size, first + shard_size))]
            items = [dataset[k] for k in keys]
            # crops are stored, and the gradient taken, at 8 bits: what a saved photo holds
            image = torch.round(torch.stack([it["image"] for it in items]) * 255).div(255).to(device)
            mask = torch.stack([it["mask"] for it in items]).to(device)
            task = prepare_task(model, image, mask)
            if field_layers:
                _, _, grad, layer_grad = layer_gradient(model, task, field_layers)
                _store(tensors, "field", "field_scale", head_field(layer_grad, task))
            else:
                grad = input_gradient(model, task)
            tensors["image"].append((image * 255).round().to(torch.uint8).cpu())
            tensors["mask"].append(mask.to(torch.uint8).cpu())
            tensors["target"].append(task.target.reshape(-1, 3).float().cpu())
            _store(tensors, "grad", "scale", grad)
            if teacher_net is not None:
                field, noise = stepped_field(teacher_net, model, image, mask, field_steps, target=task.target)
                # negated: stored as a gradient is, so that field_cosine reads it as the others
                _store(tensors, "field", "field_scale", -field)
                tensors["teacher"].append(noise.half().cpu().contiguous())
            if teacher_steps:
                gen = torch.Generator(device=device).manual_seed(seed * ENDLESS + lo)
                result = protect_iterative(model, image, mask, config, generator=gen, task=task)
                tensors["teacher"].append(result.noise.half().cpu())
        data = {k: torch.cat(v) for k, v in tensors.items() if v}
        entries = [{"index": i, "photo": dataset.source((0, i)).name} for i in range(first, first + shard_size)]
        if not (folder / META).is_file():
            # the recipe goes with the first shard: a new cache that fails before it leaves nothing to refuse a
            # corrected command
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / META, lambda tmp: tmp.write_text(json.dumps({"recipe": recipe}, indent=1)))
        path = folder / SHARD.format(shard)
        atomic_write(path, lambda tmp: save_file(data, str(tmp), metadata={"entries": json.dumps(entries)}))
        shard += 1
        log(f"gradient cache {folder}: {shard * shard_size}/{count} entries, {time.perf_counter() - start:.0f} s")
    return folder


class GradientCache(Dataset):
    """The entries of a gradient cache folder: image, mask, normalised gradient (and teacher noise, if built)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.check_exists(folder)
        self.folder = Path(folder)
        shards = shard_files(self.folder)
        self.recipe = json.loads((self.folder / META).read_text())["recipe"]
        parts = [load_file(str(p)) for p in shards]
        self.data = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        self.entries = []
        for path in shards:
            with safe_open(str(path), "pt") as f:
                self.entries += json.loads((f.metadata() or {}).get("entries", "[]"))

    @staticmethod
    def check_exists(folder: str | os.PathLike, size: int = 128) -> None:
        """Refuse a cache folder without a recipe or shards, with the command that builds one of ``size`` px crops."""
        if not (Path(folder) / META).is_file() or not shard_files(Path(folder)):
            raise ValueError(f"gradient cache '{folder}' does not exist or is empty; build it first: "
                             f"paintguard gradient-cache --out {folder} --count 1024 --size {size}")

    @property
    def size(self) -> int:
        return int(self.recipe["size"])

    def check_inpainter(self, inpainter: Inpainter) -> None:
        """Refuse gradients taken through other weights (e.g. an older lama-tiny)."""
        built, current = self.recipe.get("inpainter_fingerprint"), inpainter.fingerprint()
        if built != current:
            raise ValueError(f"gradient cache '{self.folder}' was built against another inpainter "
                             f"(weights {built}, training uses {current}); build a new one")

    def __len__(self) -> int:
        return len(self.data["image"])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        d = self.data
        item = {"image": d["image"][i].float() / 255, "mask": d["mask"][i].float(), "grad": d["grad"][i].float(),
                "has_grad": torch.tensor(1.0)}
        if "teacher" in d:
            item.update(teacher_noise=d["teacher"][i].float(), has_teacher=torch.tensor(1.0))
        else:
            item.update(teacher_noise=torch.zeros_like(item["image"]), has_teacher=torch.tensor(0.0))
        if "field" in d:
            item.update(field=d["field"][i].float(), has_field=torch.tensor(1.0))
        return item
