"""Training an FFC-ResNet inpainter (lama-tiny) with LaMa's recipe, minus the perceptual loss.

Per batch, as LaMa's ``DefaultInpaintingTrainingModule``: the generator sees
``cat([image * (1 - mask), mask])`` and predicts the whole image; it is trained
with the masked L1 (hole and known weights), a high-frequency term standing in
for LaMa's ResNet perceptual loss (see :mod:`trainer.training.inpainter_losses`), the
non-saturating adversarial loss and discriminator feature matching. Then the
PatchGAN discriminator takes one step with R1 and "mask as fake target".

Validation reports hole L1/PSNR next to the mean-colour fill on the same
batch, and every few epochs probes how attackable the current generator is
(:mod:`trainer.evaluation.attackability`): a lama-tiny that PaintGuard cannot steer, or
that anything steers, would be a poor stand-in for LaMa.

``init_from`` starts a fit from a saved inpainter (a shipped name such as
``lama-tiny``, a PaintGuard safetensors file or a LaMa folder) instead of random
weights: the fine-tune an editor would run on their own photos
(``configs/inpainter/lama-tiny-ft.yaml``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from generator.checkpoint import copy_weights
from trainer.evaluation.attackability import protection_strength, steering_gain
from trainer.inpainting.discriminator import NLayerDiscriminator
from trainer.inpainting.ffc import FFCResNetConfig, FFCResNetGenerator
from trainer.inpainting.inpainter import Inpainter, lama_predict, load_inpainter, save_inpainter
from trainer.objective.iterative import IterativeConfig
from trainer.objective.losses import masked_mse, psnr_from_mse
from trainer.training.inpainter_losses import (
    amplitude_spectrum_loss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    hole_l1,
    masked_l1_loss,
    mean_colour_fill,
)
from trainer.training.lightning_cli import ExportOnTrainEnd

Tensor = torch.Tensor
PANEL_CAPTION = "masked input | prediction | composited | original"


def make_panel(image: Tensor, mask: Tensor, prediction: Tensor, composited: Tensor) -> Tensor:
    """(B,3,H,4W): masked input | raw prediction | composited result | original, side by side."""
    # the hole is shown mid-grey rather than black, which would vanish in dark photos
    shown = image * (1 - mask) + 0.5 * mask
    return torch.cat([shown, prediction, composited, image], dim=-1).clamp(0, 1)


class InpainterModule(L.LightningModule):
    """An FFC-ResNet generator and, when the adversarial weight is > 0, an n-layer PatchGAN.

    Architecture defaults give lama-tiny (ngf 32, 3 downsamplings, 6 FFC blocks:
    4.8 M parameters, 19 MB). Loss weights: ``l1_missing``/``l1_known`` weight
    the masked L1 on the raw prediction; ``highfreq`` the amplitude-spectrum term
    on the composited image; ``adversarial``, ``feature_matching`` and ``gp_coef``
    (R1, on the discriminator) as in LaMa. Optimisation is manual: the generator
    then the discriminator, each Adam, each with its gradient norm clipped to
    ``gradient_clip_val`` (LaMa clips at 1). ``trainer.global_step`` counts
    batches (generator updates), so ``max_steps`` and checkpoint intervals are in
    batches. ``attack_eval_every_n_epochs`` = 0 turns the attackability probe off.
    ``init_from``: an inpainter source whose weights the generator starts a fit from
    (architecture options must match it; the discriminator starts afresh).

    Args:
        ngf: the FFC-ResNet's channels at full resolution
        n_downsampling: its downsamplings before the residual blocks
        n_blocks: its FFC residual blocks at the bottleneck
        resnet_ratio: the share of each block's channels in its global (Fourier) branch
        max_features: the cap on the channels per layer
        init_from: start from these weights: a shipped inpainter's name, an inpainter checkpoint or a LaMa folder
        disc_ndf: the PatchGAN discriminator's channels in its first layer
        disc_n_layers: the discriminator's strided layers
        l1_missing: weight of the L1 inside the hole
        l1_known: weight of the L1 outside the hole
        highfreq: weight of the amplitude-spectrum term (the stand-in for the perceptual loss)
        highfreq_patch: the side of that term's patches, in pixels
        adversarial: weight of the adversarial loss; 0: no discriminator
        feature_matching: weight of discriminator feature matching
        gp_coef: the discriminator's R1 penalty
        mask_as_fake_target: the discriminator learns the hole as fake, as in LaMa
        lr_generator: the generator's Adam rate
        lr_discriminator: the discriminator's Adam rate
        gradient_clip_val: the gradient norm each optimiser step is clipped to
        image_log_every_n_steps: log training panels to W&B every this many steps (0: never)
        panel_images: images per panel
        attack_eval_every_n_epochs: probe how attackable the inpainter is every this many epochs (0: never)
        attack_eval_images: validation images the probe protects
        attack_eval_steps: the probe optimiser's steps
    """

    EXAMPLE_CONFIG = "configs/inpainter/lama-tiny.yaml"  # what a fit without --config is pointed to

    def __init__(
        self,
        # generator: LaMa's FFC-ResNet
        ngf: int = 32,
        n_downsampling: int = 3,
        n_blocks: int = 6,
        resnet_ratio: float = 0.75,
        max_features: int = 1024,
        init_from: str | None = None,
        # discriminator: pix2pixHD n-layer PatchGAN
        disc_ndf: int = 32,
        disc_n_layers: int = 3,
        # loss weights
        l1_missing: float = 1.0,
        l1_known: float = 10.0,
        highfreq: float = 3.0,
        highfreq_patch: int = 32,
        adversarial: float = 10.0,
        feature_matching: float = 100.0,
        gp_coef: float = 0.001,
        mask_as_fake_target: bool = True,
        # optimisation
        lr_generator: float = 1e-3,
        lr_discriminator: float = 1e-4,
        gradient_clip_val: float = 1.0,
        # monitoring
        image_log_every_n_steps: int = 200,
        panel_images: int = 4,
        attack_eval_every_n_epochs: int = 1,
        attack_eval_images: int = 4,
        attack_eval_steps: int = 20,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = FFCResNetGenerator(self.generator_config(self.hparams))
        self.discriminator = NLayerDiscriminator(3, disc_ndf, disc_n_layers) if adversarial > 0 else None
        # as lama_predict's input; measured on lama-tiny's 256 px fine-tune: 3.27 -> 3.13 s per step (the
        # convolutions gain 30%, the rest of the GAN step, R1 penalty and spectrum loss included, does not)
        self.to(memory_format=torch.channels_last)
        if self.discriminator is None and feature_matching > 0:
            rank_zero_warn("feature matching needs the discriminator, which adversarial=0 turns off: ignoring it")
        self._probe_batch: tuple[Tensor, Tensor] | None = None
        self._probed_epoch = -1

    # --- starting weights -----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        # Here rather than in __init__: export and validate rebuild the module from its hyperparameters and
        # need no source file; and Lightning restores a resumed fit's checkpoint after setup, so a resumed
        # fine-tune keeps its own weights (these are loaded, then replaced).
        if stage == "fit" and self.hparams.init_from:
            self.load_generator_from(self.hparams.init_from)

    @staticmethod
    def generator_config(options: Any) -> FFCResNetConfig:
        """The FFC-ResNet these model options (the module's hyperparameters, or a parsed ``model`` config) make."""
        ratio = options["resnet_ratio"]
        return FFCResNetConfig(ngf=options["ngf"], n_downsampling=options["n_downsampling"],
                               n_blocks=options["n_blocks"], max_features=options["max_features"],
                               resnet_ratio_gin=ratio, resnet_ratio_gout=ratio, add_out_act="sigmoid")

    @staticmethod
    def check_init_from(source: str, model: Any) -> None:
        """Refuse an ``init_from`` that is neither a LaMa folder, an inpainter checkpoint nor a shipped inpainter's
        name, or whose weights do not fit the network of these options (copied into a throwaway one, as a fit
        copies them at setup)."""
        net = FFCResNetGenerator(InpainterModule.generator_config(model))
        source_net = load_inpainter(source).net
        copy_weights(net, net.config, source_net, source_net.config, source)

    def load_generator_from(self, source: str) -> None:
        """Copy a saved inpainter's weights into the generator, key for key with every shape checked."""
        net = load_inpainter(source).net
        copy_weights(self.generator, self.generator.config, net, net.config, source)

    # --- inference ----------------------------------------------------------------------------

    def predict(self, image: Tensor, mask: Tensor) -> Tensor:
        """The generator's raw output for the whole image, from LaMa's input ``cat([x * (1 - m), m])``."""
        return lama_predict(self.generator, image, mask)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """The inpainted image: the prediction inside the hole, the input outside."""
        mask = (mask > 0).to(image.dtype)
        return mask * self.predict(image, mask) + (1 - mask) * image

    def export(self, path: str | Path, **notes: str) -> Path:
        """Write the generator alone as a PaintGuard inpainter checkpoint (safetensors)."""
        return save_inpainter(self.generator, path, **{"global_step": str(self.global_step), **notes})

    # --- training -----------------------------------------------------------------------------

    def configure_optimizers(self):
        hp = self.hparams
        # LaMa: Adam with default betas, the discriminator 10x slower than the generator
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp.lr_generator)
        if self.discriminator is None:
            return opt_g
        return [opt_g, torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_discriminator)]

    def on_fit_start(self) -> None:
        if self.discriminator is not None and "16-mixed" in str(self.trainer.precision):
            # the discriminator steps its raw optimiser (see training_step), which skips the grad scaler
            raise ValueError("precision 16-mixed is not supported with the discriminator; use 32 or bf16-mixed")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        hp = self.hparams
        image = batch["image"]
        mask = (batch["mask"] > 0).to(image.dtype)
        optimisers = self.optimizers()
        opt_g, opt_d = optimisers if isinstance(optimisers, list) else (optimisers, None)
        step = self.global_step

        # generator
        prediction = self.predict(image, mask)
        composited = mask * prediction + (1 - mask) * image
        logs = {"l1": masked_l1_loss(prediction, image, mask, hp.l1_missing, hp.l1_known)}
        total = logs["l1"]
        if hp.highfreq > 0:
            logs["highfreq"] = amplitude_spectrum_loss(composited, image, mask, hp.highfreq_patch)
            total = total + hp.highfreq * logs["highfreq"]
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)
            # LaMa shows the discriminator the raw prediction, not the composite
            fake_logits, fake_features = self.discriminator(prediction)
            logs["adv"] = generator_adversarial_loss(fake_logits)
            total = total + hp.adversarial * logs["adv"]
            if hp.feature_matching > 0:
                with torch.no_grad():
                    _, real_features = self.discriminator(image)
                logs["fm"] = feature_matching_loss(fake_features, real_features)
                total = total + hp.feature_matching * logs["fm"]
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self.clip_gradients(opt_g, gradient_clip_val=hp.gradient_clip_val, gradient_clip_algorithm="norm")
        opt_g.step()
        metrics = {f"train/gen_{k}": v.detach() for k, v in logs.items()}

        # discriminator, on this batch's prediction (not re-run after the generator's update: a generator
        # forward saved; LaMa re-runs it)
        if self.discriminator is not None:
            self.discriminator.requires_grad_(True)
            real = image.detach().requires_grad_(True)
            real_logits, _ = self.discriminator(real)
            fake_logits, _ = self.discriminator(prediction.detach())
            loss_d, disc = discriminator_adversarial_loss(real_logits, fake_logits, real, mask, hp.gp_coef,
                                                          hp.mask_as_fake_target)
            raw_d = opt_d.optimizer
            raw_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            self.clip_gradients(raw_d, gradient_clip_val=hp.gradient_clip_val, gradient_clip_algorithm="norm")
            # the raw optimiser, not Lightning's wrapper: each wrapped step would advance global_step
            raw_d.step()
            metrics["train/disc_total"] = loss_d.detach()
            metrics.update({f"train/disc_{k}": v for k, v in disc.items()})

        self.log_dict(metrics, batch_size=image.shape[0])
        self.log("train/gen_total", total.detach(), prog_bar=True, batch_size=image.shape[0])
        if hp.image_log_every_n_steps > 0 and step % hp.image_log_every_n_steps == 0:
            panel = make_panel(image, mask, prediction.detach(), composited.detach())
            self._log_images("train/panels", panel[: hp.panel_images])

    # --- validation ---------------------------------------------------------------------------

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        image = batch["image"]
        mask = (batch["mask"] > 0).to(image.dtype)
        composited = self(image, mask)
        baseline = mean_colour_fill(image, mask)
        self.log_dict({
            "val/hole_l1": hole_l1(composited, image, mask).mean(),
            "val/hole_psnr": psnr_from_mse(masked_mse(composited, image, mask)).mean(),
            "val/meanfill_hole_l1": hole_l1(baseline, image, mask).mean(),
            "val/meanfill_hole_psnr": psnr_from_mse(masked_mse(baseline, image, mask)).mean(),
        }, batch_size=image.shape[0])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        # Lightning validates under inference mode; the probe needs gradients w.r.t. the noise
        with torch.inference_mode(False), torch.enable_grad():
            probe = self._probe_samples()
            if probe is None:
                return
            image, mask = probe
            if self.hparams.image_log_every_n_steps > 0:
                with torch.no_grad():
                    prediction = self.predict(image, mask)
                panel = make_panel(image, mask, prediction, mask * prediction + (1 - mask) * image)
                self._log_images("val/panels", panel[: self.hparams.panel_images])
            k = self.hparams.attack_eval_images
            if self._probe_due():
                self._probed_epoch = self.current_epoch
                self.log_dict(self.attackability(image[:k], mask[:k]))

    def attackability(self, image: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Probe a frozen copy of the current generator: steering gain and the 20-step protection's strength."""
        steps = self.hparams.attack_eval_steps
        inpainter = Inpainter(copy.deepcopy(self.generator))
        seed = lambda: torch.Generator(device=image.device).manual_seed(0)  # noqa: E731 - same noise every probe
        gain = steering_gain(inpainter, image, mask, steps=steps, generator=seed())
        strength = protection_strength(inpainter, image, mask, IterativeConfig(steps=steps), generator=seed())
        return {"probe/steering_gain": gain.mean(),
                "probe/attack_psnr_before": strength.psnr_before.mean(),
                "probe/attack_psnr_after": strength.psnr_after.mean(),
                "probe/success_rate": strength.success.mean()}

    def _probe_due(self) -> bool:
        every = self.hparams.attack_eval_every_n_epochs
        if every <= 0 or self.hparams.attack_eval_images <= 0:
            return False
        if self.trainer.state.fn != "fit":
            return True
        return (self.current_epoch + 1) % every == 0 and self._probed_epoch != self.current_epoch

    def _probe_samples(self) -> tuple[Tensor, Tensor] | None:
        """Fixed validation samples for the probe and the panels, spread over the set (distinct photos)."""
        if self._probe_batch is None:
            loaders = self.trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
            dataset = getattr(loader, "dataset", None)
            n = max(self.hparams.attack_eval_images, self.hparams.panel_images)
            if dataset is None or len(dataset) == 0 or n <= 0:
                return None
            picks = torch.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().long().unique().tolist()
            items = [dataset[i] for i in picks]
            # clone: the dataset may have cached inference-mode tensors, which autograd refuses
            image = torch.stack([item["image"] for item in items]).clone()
            mask = (torch.stack([item["mask"] for item in items]) > 0).float()
            self._probe_batch = (image, mask)
        image, mask = self._probe_batch
        return image.to(self.device), mask.to(self.device)

    @rank_zero_only
    def _log_images(self, key: str, panel: Tensor) -> None:
        log_images = getattr(self.logger, "log_images", None)  # PaintGuardWandbLogger; other loggers skip panels
        if log_images is not None:
            log_images(key, list(panel.float().cpu()), caption=PANEL_CAPTION, step=self.global_step)


class ExportInpainter(ExportOnTrainEnd):
    """Write the generator as a PaintGuard safetensors checkpoint when training ends (lama-tiny's path by default)."""

    def __init__(self, path: str = "runs/lama-tiny/lama-tiny.safetensors") -> None:
        super().__init__(path)


__all__ = ["InpainterModule", "ExportInpainter", "make_panel"]
