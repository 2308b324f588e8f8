"""The 20-step teacher's validation metrics, kept per image so that each is optimised once.

Validation compares the generator with the optimiser on the same images, every validation of every run; the
optimiser's metrics do not change, so they are stored under a digest of everything they depend on (the 8-bit
pixels, the mask and a recipe string: the inpainters' weights and the optimiser's settings), in memory and, with
a path, in a safetensors file that later runs reuse.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from generator.save import atomic_write

Tensor = torch.Tensor


class TeacherMetrics:
    """Per-image metric rows keyed by image, mask and recipe; ``path`` (optional) persists them."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Tensor]] = {}
        self._loaded = False

    @staticmethod
    def keys(recipe: str, images: Tensor, masks: Tensor) -> list[str]:
        """Per image (B,3,H,W) and mask (B,1,H,W), a digest of the recipe, the 8-bit pixels and the mask."""
        keys = []
        for image, mask in zip(images, masks):
            digest = hashlib.sha256(recipe.encode())
            digest.update((image * 255).round().to(torch.uint8).cpu().numpy().tobytes())
            digest.update((mask > 0).cpu().numpy().tobytes())
            keys.append(digest.hexdigest()[:24])
        return keys

    def missing(self, keys: list[str], device: torch.device | str = "cpu") -> list[int]:
        """The indices of ``keys`` with no stored row (the file, if any, is read on first use)."""
        if not self._loaded and self.path and Path(self.path).is_file():
            for name, value in load_file(self.path).items():
                key, metric = name.split("/", 1)
                self.rows.setdefault(key, {})[metric] = value.to(device)
        self._loaded = True
        return [i for i, key in enumerate(keys) if key not in self.rows]

    def add(self, keys: list[str], metrics: dict[str, Tensor], save: bool = True) -> None:
        """Store row j of every metric (each (len(keys),)) under ``keys[j]``; ``save``: rewrite the file too."""
        for j, key in enumerate(keys):
            self.rows[key] = {name: value[j].detach() for name, value in metrics.items()}
        if save and self.path:
            flat = {f"{key}/{m}": v.cpu().contiguous() for key, row in self.rows.items() for m, v in row.items()}
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, lambda tmp: save_file(flat, str(tmp)))

    def stack(self, keys: list[str]) -> dict[str, Tensor]:
        """The stored rows of ``keys`` as one (len(keys),) tensor per metric."""
        rows = [self.rows[key] for key in keys]
        return {name: torch.stack([row[name] for row in rows]) for name in rows[0]}
