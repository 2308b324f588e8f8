"""A shipped one-pass generator as a distillation teacher, made on the fly for every training crop.

The teacher cache holds the 20-step optimiser's noises for a few thousand crops; a generator
answers any crop in one pass, so a smaller student can be distilled towards a larger one on
every batch (``model.teacher_generator``), with the same ``teacher_weight`` / ``teacher_loss``
terms the cache feeds.
"""

from __future__ import annotations

import os

import torch

from generator.protector import Protector

Tensor = torch.Tensor


class GeneratorTeacher:
    """Adds ``teacher_noise`` (the frozen generator's noise) and ``has_teacher`` (all ones) to a batch."""

    def __init__(self, source: str | os.PathLike, eps: float, weight: float) -> None:
        if weight <= 0:
            raise ValueError("model.teacher_generator is distilled towards with model.teacher_weight: set it above 0")
        self.protector = Protector.from_checkpoint(source)
        if abs(self.protector.eps - eps) > 1e-9:
            raise ValueError(f"the teacher generator '{source}' makes noise within {self.protector.eps}, "
                             f"the student within {eps}: distil between equal bounds")

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if "teacher_noise" in batch:
            raise ValueError("a batch from a teacher cache already carries teacher noises: "
                             "use data.teacher_cache or model.teacher_generator, not both")
        image = batch["image"]
        # Protector.noise runs in inference mode; a clone made outside it can enter the student's autograd graph
        noise = self.protector.to(image.device, image.dtype).noise(image, batch["mask"]).clone()
        ones = torch.ones(image.shape[0], dtype=image.dtype, device=image.device)
        return {**batch, "teacher_noise": noise, "has_teacher": ones}
