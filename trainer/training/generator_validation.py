"""Validation of the generator under training: its protection metrics next to the 20-step optimiser's.

Validation judges what a user has and saves (8-bit originals, 8-bit protected PNGs), and scores the teacher on the
same images, so the amortisation gap (``val/share_of_attack_gain``) is in every run, with the training time so far
(``val/train_minutes``) for the curve of held-out share against time.
"""

from __future__ import annotations

import torch

from trainer.objective.ensemble import EnsembleTask, ensemble_losses, prepare_ensemble_task
from trainer.objective.iterative import IterativeConfig, protect_iterative
from trainer.objective.metrics import protection_metrics, share_of_gain
from trainer.objective.transforms import round_to_8bit
from trainer.training.teacher_metrics import TeacherMetrics

Tensor = torch.Tensor


class GeneratorValidation:
    """The validation hooks of ``GeneratorModule`` (a mixin: it reads the module's inpainters, loss weights,
    hyperparameters and ``_protect``)."""

    def on_validation_epoch_start(self) -> None:
        self._val_rows = []

    def _teacher(self, task: EnsembleTask) -> dict[str, Tensor]:
        """The 20-step optimiser's metrics on these validation images, computed once per image and kept
        (trainer/training/teacher_metrics.py; with ``val_teacher_cache`` in a file that later runs reuse)."""
        if self._teacher_recipe is None:  # the frozen weights and the recipe do not change: hash them once
            hp = self.hparams
            self._teacher_recipe = repr([[m.fingerprint() for m in self.inpainters], hp.teacher_steps, hp.eps,
                                         hp.dilation, list(vars(self.weights).values()), hp.val_jpeg_quality,
                                         hp.ensemble])
        keys = TeacherMetrics.keys(self._teacher_recipe, task.image, task.mask)
        missing = self._teacher_val.missing(keys, self.device)
        if missing:
            sub = task.select(missing)
            config = IterativeConfig(steps=self.hparams.teacher_steps, eps=self.hparams.eps,
                                     dilation=self.hparams.dilation, weights=self.weights)
            gen = torch.Generator(device=self.device).manual_seed(0)
            with torch.enable_grad():
                result = protect_iterative(self.inpainters, sub.image, sub.mask, config, generator=gen, task=sub)
            teacher = round_to_8bit(result.protected, straight_through=False)
            losses = ensemble_losses(self.inpainters, teacher, sub, self.weights)
            metrics = protection_metrics(losses, teacher - sub.image)
            if self.val_jpeg is not None:
                metrics.update(self._jpeg_metrics(teacher, sub))
            self._teacher_val.add([keys[i] for i in missing], metrics, save=self.global_rank == 0)
        return self._teacher_val.stack(keys)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if torch.is_inference_mode_enabled():
            raise RuntimeError("generator validation runs the optimiser (its teacher) and needs gradients: "
                               "set trainer.inference_mode=false")
        # validation judges what a user has and saves: 8-bit originals, 8-bit protected PNGs (so |saved - x| <= eps)
        image = round_to_8bit(batch["image"], straight_through=False)
        task = prepare_ensemble_task(self.inpainters, image, batch["mask"], dilation=self.hparams.dilation)
        protected, noise, _ = self._protect(task, straight_through=False)
        clean = ensemble_losses(self.inpainters, task.image, task, self.weights)
        ours = protection_metrics(ensemble_losses(self.inpainters, protected, task, self.weights),
                                  protected - task.image, clean)
        teacher = self._teacher(task)
        row = dict(ours)
        row.update({f"teacher_{k}": v for k, v in teacher.items()})
        row["teacher_attack_gain"] = clean["attack"] - teacher["attack_loss"]
        row["teacher_total_gain"] = clean["total"] - teacher["total_loss"]
        row["clean_attack_psnr"] = protection_metrics(clean, torch.zeros_like(noise))["attack_psnr"]
        if self.val_jpeg is not None:
            row.update(self._jpeg_metrics(protected, task))
        self._val_rows.append(row)
        if batch_idx == 0:
            self._log_panel("val/panel", task, protected, noise)

    def _jpeg_metrics(self, protected: Tensor, task: EnsembleTask) -> dict[str, Tensor]:
        """Attack, success and hide after the fixed validation JPEG (hide against the clean image's JPEG edit)."""
        q = self.hparams.val_jpeg_quality
        # ensemble_losses applies the JPEG to the protected image and, per model, makes the hide reference of the
        # clean image's JPEG (transform_task)
        losses = ensemble_losses(self.inpainters, protected, task, self.weights, transform=self.val_jpeg)
        metrics = protection_metrics(losses, protected - task.image)
        return {f"jpeg{q}_{k}": metrics[k] for k in ("attack_psnr", "success", "hide_psnr")}

    def on_validation_epoch_end(self) -> None:
        if not self._val_rows:
            return
        rows = {k: torch.cat([r[k] for r in self._val_rows]) for k in self._val_rows[0]}
        if self.trainer.world_size > 1:
            rows = {k: self.all_gather(v).flatten() for k, v in rows.items()}
        metrics = {f"val/{k}": v.float().mean() for k, v in rows.items()}
        metrics["val/share_of_attack_gain"] = torch.tensor(share_of_gain(rows["attack_gain"],
                                                                         rows["teacher_attack_gain"]))
        metrics["val/share_of_total_gain"] = torch.tensor(share_of_gain(rows["total_gain"],
                                                                        rows["teacher_total_gain"]))
        metrics["val/train_minutes"] = torch.tensor(self._elapsed() / 60)
        self.log_dict(metrics, sync_dist=False)
