"""Training the amortised protector against a frozen inpainter.

Per batch: noise = G(x, m, t); x' = clip(x + noise) (8-bit rounded, straight through); the attack/incp/hide
losses of the 20-step optimiser on x', plus optional supervised terms: towards a cached optimiser noise for the
same (image, mask) pair (the teacher cache), a cached input gradient's direction (one FGSM step is
``d = -eps * sign(g)``) or a cached field. Those need no inpainter call: with ``e2e_weight: 0`` training is
supervised only (a pretraining stage); with both, they regularise the end-to-end loss. The sign terms are a hinge
on the pre-tanh output, weighted per pixel by |g| (why a hinge: trainer/training/supervised_terms.py).
Validation (trainer/training/generator_validation.py) reports the protection metrics next to the teacher's on the
same images. Every option is explained in ``GeneratorModule``'s Args, which ``paintguard train fit --help`` shows.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch

from generator import checkpoint
from generator.checkpoint import CheckpointError
from generator.protector import KIND, save_generator
from generator.target import target_colour
from generator.unet import NoiseUNet, UNetConfig
from generator.widen import start_from
from trainer.inpainting.inpainter import KIND as INPAINTER
from trainer.inpainting.inpainter import Inpainter, load_inpainter
from trainer.objective.ensemble import (ENSEMBLE_MODES, EnsembleTask, draw_member, ensemble_losses,
                                       prepare_ensemble_task)
from trainer.objective.eot import EOTConfig, FixedTransform, RandomTransforms
from trainer.objective.field_steps import has_field
from trainer.objective.losses import LossWeights, reference_fills
from trainer.objective.mask_family import check_family_p, draw_family
from trainer.objective.transforms import jpeg, round_to_8bit
from trainer.training.field_gradient import check_field_gradient, reshape_field_gradient
from trainer.training.generator_teacher import GeneratorTeacher
from trainer.training.generator_validation import GeneratorValidation
from trainer.training.lr_schedule import adamw, check_decay
from trainer.training.supervised_terms import field_cosine, over_entries, supervised_term
from trainer.training.teacher_metrics import TeacherMetrics

Tensor = torch.Tensor
TEACHER_LOSSES = ("mse", "sign")


class GeneratorModule(GeneratorValidation, L.LightningModule):
    """A noise U-Net trained with the protection losses through a frozen inpainter.

    Args:
        inpainter: the frozen inpainter attacked: a shipped name (lama-tiny), an inpainter checkpoint or a big-lama
            folder
        inpainters: several inpainters attacked at once (the mean of their losses, each with its own hide
            reference); null: the one inpainter
        ensemble: with inpainters, mean (every model every batch) or random (one model per batch)
        widths: the U-Net's channels per level (null: 16, 32, 64, 128)
        blocks_per_level: residual blocks per U-Net level
        groups: GroupNorm groups
        eps: the L_inf bound of the noise, on [0, 1] pixels
        lr: AdamW's learning rate
        weight_decay: AdamW's weight decay
        lr_decay_steps: > 0: the rate decays to lr_final on half a cosine over this many steps
        lr_final: the rate at the end of the decay
        attack_weight: weight of the attack loss (the fill of m towards the target colour)
        incp_weight: weight of the incp loss (the same for the mask dilated by dilation)
        hide_weight: weight of the hide loss (an edit of the ring E(m) - m stays as on the clean image)
        dilation: the side of the square that dilates m, in pixels
        teacher_weight: weight of distillation towards the teacher's noise (a teacher cache in the data, or
            teacher_generator)
        quantize: round the protected image to 8 bits in training (straight through), as a saved PNG is
        teacher_steps: the validation teacher's optimiser steps
        panel_every_n_steps: log a picture panel to W&B every this many training steps (0: never)
        eot: expectation over transformation: probabilities and ranges of the random JPEG, resize, blur, noise,
            shift and colour jitter applied between the protected image and the inpainter in training (EOTConfig
            in trainer/objective/eot.py); validation stays untransformed
        val_jpeg_quality: also score validation, ours and the teacher's, after a real JPEG of this quality
        e2e_weight: weight of the end-to-end loss through the inpainter; 0: supervised terms only, no inpainter
            call
        gradient_weight: weight of the hinge towards the signs of a cached input gradient (a gradient cache)
        teacher_loss: how teacher_weight compares with the teacher's noise: mse, or sign (a hinge towards its
            signs)
        global_context: none, or fourier (a spectral block at the U-Net's bottleneck)
        init_from: start from these weights (a generator checkpoint or a shipped generator's name), widened
            where the U-Net is wider
        supervised_margin: the hinge's margin on the pre-tanh output
        val_teacher_cache: a .safetensors file that keeps the validation teacher's metrics across runs
        head: direct (the U-Net emits the noise) or stem-gradient (it predicts a field at the inpainter's layer
            head_layers, which frozen copies of its first layers map to the image)
        stem_channels: the inpainter's first layer's width, for the stem-gradient head
        stem_kernel: the inpainter's first layer's kernel, for the stem-gradient head
        head_layers: how many of the inpainter's encoder layers the stem-gradient head carries
        head_rank: below 1, the head keeps that share of the rank of the inpainter's layers 2..head_layers
        field_weight: weight of 1 - cos between the predicted field and a cached true field (a gradient cache
            built with --field-layers)
        encoder_features: the U-Net also reads the inpainter's own activations at layer head_layers
        bottleneck_blocks: with encoder_features, also read the inpainter's bottleneck after this many of its
            residual blocks (0: off)
        output_weight: weight of output distillation: the fills of the protected image pulled towards those of
            the cached teacher's (needs e2e_weight > 0 and no eot)
        field_gradient: how the loss's gradient reaches the U-Net at its field: loss (as it is), sample (one size
            per image) or sign (trainer/training/field_gradient.py)
        teacher_generator: a generator file whose noise for every training crop is the teacher of
            teacher_weight (a small student taught by a larger one)
        family_p: per image, the probability that the edits are of a mask near m (2 px tighter, 6 px looser or 4 px
            off) while the generator reads m
    """

    EXAMPLE_CONFIG = "configs/generator/lama-tiny.yaml"  # what a fit without --config is pointed to

    def __init__(
        self,
        inpainter: str = "lama-tiny",
        inpainters: list[str] | None = None,
        ensemble: str = "mean",
        widths: list[int] | None = None,
        blocks_per_level: int = 1,
        groups: int = 8,
        eps: float = 0.025,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_decay_steps: int = 0,
        lr_final: float = 0.0,
        attack_weight: float = 1.0,
        incp_weight: float = 1.0,
        hide_weight: float = 2.0,
        dilation: int = 17,
        teacher_weight: float = 0.0,
        quantize: bool = True,
        teacher_steps: int = 20,
        panel_every_n_steps: int = 200,
        eot: dict[str, Any] | None = None,
        val_jpeg_quality: int | None = None,
        e2e_weight: float = 1.0,
        gradient_weight: float = 0.0,
        teacher_loss: str = "mse",
        global_context: str = "none",
        init_from: str | None = None,
        supervised_margin: float = 2.0,
        val_teacher_cache: str | None = None,
        head: str = "direct",
        stem_channels: int = 32,
        stem_kernel: int = 7,
        head_layers: int = 1,
        head_rank: float = 1.0,
        field_weight: float = 0.0,
        encoder_features: bool = False,
        bottleneck_blocks: int = 0,
        output_weight: float = 0.0,
        field_gradient: str = "loss",
        teacher_generator: str | None = None,
        family_p: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if teacher_loss not in TEACHER_LOSSES:
            raise ValueError(f"teacher_loss must be one of {', '.join(TEACHER_LOSSES)}, got {teacher_loss!r}")
        if inpainters is not None and not inpainters:
            raise ValueError("inpainters must list at least one inpainter (or be null: the one inpainter)")
        if ensemble not in ENSEMBLE_MODES:
            raise ValueError(f"ensemble must be one of {', '.join(ENSEMBLE_MODES)}, got {ensemble!r}")
        check_decay(lr, lr_decay_steps, lr_final)
        check_family_p(family_p)
        if output_weight > 0 and (e2e_weight <= 0 or eot):
            raise ValueError("output_weight compares the fills of the end-to-end pass: it needs e2e_weight > 0 "
                             "and no eot")
        self.net = NoiseUNet(self.unet_config(self.hparams))
        check_field_gradient(field_gradient, has_field=has_field(self.net))
        self.weights = LossWeights(attack_weight, incp_weight, hide_weight)
        # training only: validation and the teacher see the images as saved
        eot_config = EOTConfig.coerce(eot)
        self.eot = RandomTransforms(eot_config) if eot_config is not None and eot_config.enabled else None
        if val_jpeg_quality is not None and not 1 <= val_jpeg_quality <= 100:
            raise ValueError(f"val_jpeg_quality must be in [1, 100], got {val_jpeg_quality}")
        self.val_jpeg = None if val_jpeg_quality is None else FixedTransform(partial(jpeg, quality=val_jpeg_quality))
        # held in a list so that nn.Module does not register it: frozen, and kept out of checkpoints
        self._frozen: list[Inpainter] = []
        self._teacher_net = [GeneratorTeacher(teacher_generator, eps, teacher_weight)] if teacher_generator else []
        self._teacher_val = TeacherMetrics(val_teacher_cache)
        self._teacher_recipe: str | None = None
        self._val_rows: list[dict[str, Tensor]] = []
        self.train_seconds = 0.0  # wall time spent in fit so far, across resumes (saved in checkpoints)
        self._fit_started: float | None = None

    # --- the frozen inpainter -------------------------------------------------------------
    @property
    def sources(self) -> list[str]:
        """What the generator is trained against: ``inpainters``, or the one ``inpainter``."""
        return list(self.hparams.inpainters or [self.hparams.inpainter])

    @property
    def inpainters(self) -> list[Inpainter]:
        if not self._frozen:
            self._frozen.extend(load_inpainter(source) for source in self.sources)
        for inpainter in self._frozen:
            if next(inpainter.parameters()).device != self.device:
                inpainter.to(self.device)
        return self._frozen

    @property
    def inpainter(self) -> Inpainter:
        """The first inpainter (the only one without an ensemble): the panels' inpainter."""
        return self.inpainters[0]

    @staticmethod
    def unet_config(options: Any) -> UNetConfig:
        """The U-Net these model options (the module's hyperparameters, or a parsed ``model`` config) make."""
        names = ("eps", "blocks_per_level", "groups", "global_context", "head", "stem_channels", "stem_kernel",
                 "head_layers", "head_rank", "encoder_features", "bottleneck_blocks")
        widths = options.get("widths")
        return UNetConfig(**{n: options[n] for n in names if options.get(n) is not None},
                          **({} if widths is None else {"widths": list(widths)}))

    @staticmethod
    def check_init_from(source: str, model: Any) -> None:
        """Refuse an ``init_from`` that is no generator checkpoint or shipped name, or that cannot start the U-Net
        of these options (tried on a throwaway copy: the generator is small)."""
        checkpoint.check_kind(source, KIND)
        start_from(NoiseUNet(GeneratorModule.unet_config(model)), source)

    @staticmethod
    def check_inpainters(model: Any) -> None:
        """Refuse an ``inpainter`` or ``inpainters`` entry that is no LaMa folder, inpainter checkpoint or name; a
        LaMa folder is loaded whole (its layout, config and weights), as the fit will load it again."""
        for source in [model.get("inpainter"), *(model.get("inpainters") or [])]:
            if source and Path(str(source)).is_dir():
                load_inpainter(source)
            elif source:
                checkpoint.check_kind(source, INPAINTER)

    def setup(self, stage: str) -> None:
        # before Lightning restores a resumed fit's checkpoint, which then wins over these weights
        if stage == "fit" and self.net.target_head is not None:
            # the head runs the (first) target's own first layers backwards: a frozen copy of them
            self.net.target_head.copy_layers(self.inpainter.encoder_layers(self.net.config.head_layers))
        if stage == "fit" and self.net.target_blocks is not None:  # and the first blocks of its bottleneck
            self.net.target_blocks.load_state_dict(self.inpainter.bottleneck_blocks(len(self.net.target_blocks)))
        if stage == "fit" and self.hparams.init_from:
            start_from(self.net, self.hparams.init_from)

    def on_fit_start(self) -> None:
        # a teacher cache optimised against other weights would distil noises that steer nothing
        cache = getattr(self.trainer.datamodule, "cache", None)
        if cache is not None:
            if len(self.sources) > 1:  # its noises and gradients were computed against one inpainter
                raise ValueError("a teacher or gradient cache is built against one inpainter; "
                                 "train an ensemble without one")
            cache.check_inpainter(self.inpainter)

    def forward(self, image: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        return self.net(image, mask, target)

    def _noise(self, image: Tensor, mask: Tensor, target: Tensor, with_field: bool
               ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The noise, its pre-tanh value and, ``with_field``, the encoder-gradient head's field (else None)."""
        if with_field:
            field, raw = self.net.field_and_raw(image, mask, target)
            return self.net.bounded(raw, mask), raw, field
        noise, raw = self.net.noise_and_raw(image, mask, target)
        return noise, raw, None

    def _protect(self, task: EnsembleTask, straight_through: bool, with_field: bool = False,
                 mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """The protected images of ``mask`` (default: the task's, the edited one)."""
        mask = task.mask if mask is None else (mask > 0).to(task.image.dtype)
        noise, _, field = self._noise(task.image, mask, task.target, with_field)
        protected = (task.image + noise).clamp(0, 1)
        if self.hparams.quantize or not straight_through:
            protected = round_to_8bit(protected, straight_through)
        return protected, noise, field

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        hp, b = self.hparams, batch["image"].shape[0]
        for teacher in self._teacher_net:
            batch = teacher(batch)
        loss = torch.zeros((), device=self.device)
        raw = None
        with_field = hp.field_weight > 0 and "field" in batch
        if hp.e2e_weight > 0:
            edited = draw_family(batch["mask"], hp.family_p)  # m itself unless family_p > 0
            task = prepare_ensemble_task(self.inpainters, batch["image"], edited, dilation=hp.dilation)
            reshape = hp.field_gradient != "loss"  # the U-Net learns from a reshaped gradient at its field
            protected, noise, field = self._protect(task, straight_through=True, with_field=with_field or reshape,
                                                    mask=batch["mask"])
            if reshape:
                reshape_field_gradient(field, hp.field_gradient)
            # "random": one model per batch, drawn from torch's generator (seeded by seed_everything)
            members = [draw_member(len(self.sources))] if hp.ensemble == "random" else None
            reference = None
            cached = batch["has_teacher"].nonzero()[:, 0] if hp.output_weight > 0 and "teacher_noise" in batch else []
            if len(cached):  # the teacher's own fills as targets, made for the cached entries only
                teacher = round_to_8bit((task.image[cached] + batch["teacher_noise"][cached]).clamp(0, 1),
                                        straight_through=False)
                fills = reference_fills(self.inpainter, teacher, task.select(cached).tasks[0])
                # fresh crops keep zeros: over_entries gives their rows no weight
                reference = tuple(torch.zeros_like(task.image).index_copy(0, cached, f) for f in fills)
            losses = ensemble_losses(self.inpainters, protected, task, self.weights, transform=self.eot,
                                     members=members, reference=reference)
            loss = loss + hp.e2e_weight * losses["total"].mean()
            if reference is not None:
                output = over_entries(losses.pop("output"), batch["has_teacher"])
                loss = loss + hp.output_weight * output
                self.log("train/output_distill", output, batch_size=b)
            for name, value in losses.items():
                self.log(f"train/{name}", value.mean(), batch_size=b, prog_bar=name == "total")
            every = hp.panel_every_n_steps
            if every and self.global_step % every == 0:
                self._log_panel("train/panel", task, protected.detach(), noise.detach())
        else:  # supervised only: no inpainter call at all
            mask = (batch["mask"] > 0).to(batch["image"].dtype)
            noise, raw, field = self._noise(batch["image"], mask, target_colour(batch["image"]), with_field)
        if raw is None and (hp.teacher_weight > 0 or hp.gradient_weight > 0):
            # the pre-tanh value of the noise just made (exact up to float rounding, short of saturation)
            raw = torch.atanh((noise / hp.eps).clamp(-1 + 1e-6, 1 - 1e-6))
        if hp.teacher_weight > 0 and "teacher_noise" in batch:
            distill = self._supervised(noise, raw, batch["teacher_noise"], batch["has_teacher"], hp.teacher_loss)
            loss = loss + hp.teacher_weight * distill
            self.log("train/distill", distill, batch_size=b, prog_bar=hp.e2e_weight == 0)
        if hp.gradient_weight > 0 and "grad" in batch:
            hinge = self._supervised(noise, raw, batch["grad"], batch["has_grad"], "gradient")
            loss = loss + hp.gradient_weight * hinge
            with torch.no_grad():
                linear = self._supervised(noise, raw, batch["grad"], batch["has_grad"], "linearised")
            self.log("train/gradient_hinge", hinge, batch_size=b)
            self.log("train/linearised", linear, batch_size=b, prog_bar=hp.e2e_weight == 0)
        if with_field:
            cosine = field_cosine(field, batch["field"], batch["has_field"])
            loss = loss + hp.field_weight * (1 - cosine)
            self.log("train/field_cosine", cosine, batch_size=b, prog_bar=hp.e2e_weight == 0)
        return loss

    def _supervised(self, noise: Tensor, raw: Tensor | None, reference: Tensor, has: Tensor, kind: str) -> Tensor:
        return supervised_term(noise, raw, reference, has, kind, self.hparams.eps, self.hparams.supervised_margin)

    # --- training time, for the curve of held-out share against time ------------------------
    def on_train_start(self) -> None:
        self._fit_started = time.perf_counter()

    def _elapsed(self) -> float:
        return self.train_seconds + (time.perf_counter() - self._fit_started if self._fit_started else 0.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["paintguard_train_seconds"] = self._elapsed()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.train_seconds = float(checkpoint.get("paintguard_train_seconds", 0.0))

    def configure_optimizers(self):
        hp = self.hparams
        return adamw(self.net.parameters(), hp.lr, hp.weight_decay, hp.lr_decay_steps, hp.lr_final)

    # --- pictures and export ----------------------------------------------------------------
    @torch.no_grad()
    def _log_panel(self, key: str, task: EnsembleTask, protected: Tensor, noise: Tensor) -> None:
        log_image = getattr(self.logger, "log_image", None)
        if log_image is None or self.global_rank != 0:
            return
        x, m = task.image[:1], task.mask[:1]
        clean_fill = self.inpainter(x, m)
        protected_fill = self.inpainter(protected[:1], m)
        target = task.target[:1].expand_as(x)
        tiles = [x, protected[:1], (noise[:1] * 20 + 0.5).clamp(0, 1), clean_fill, protected_fill, target]
        panel = torch.cat([t[0] for t in tiles], dim=-1)
        caption = "original | protected | noise x20 | clean inpainting | protected inpainting | target"
        log_image(key=key, images=[panel.float().cpu()], caption=[caption], step=self.global_step)

    def export(self, path: str | Path, **notes: str) -> Path:
        """Write the generator alone as a PaintGuard safetensors checkpoint."""
        # paintguard compare reads what a generator was made against (a comma list) and, for an ensemble, how
        mode = {"ensemble": self.hparams.ensemble} if len(self.sources) > 1 else {}
        try:  # and their weights, which name a target wherever its path as typed no longer resolves
            mode["inpainter_sha"] = ",".join(inpainter.fingerprint() for inpainter in self.inpainters)
        except (CheckpointError, OSError, ValueError):  # an export made where the targets are not at hand
            pass
        return save_generator(self.net, path, inpainter=",".join(self.sources), **{**mode, **notes})
