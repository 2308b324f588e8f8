"""Per-image protection metrics, shared by validation, the model cards and ``paintguard compare``."""

from __future__ import annotations

import torch

from trainer.objective.losses import psnr_from_mse

Tensor = torch.Tensor
SUCCESS_DB = 20.0


def protection_metrics(losses: dict[str, Tensor], noise: Tensor, clean: dict[str, Tensor] | None = None
                       ) -> dict[str, Tensor]:
    """Per-image metrics from the losses of protected images and their noise.

    attack/incp PSNR are to the target colour (higher = stronger protection); hide
    PSNR compares the ring edit with the clean image's (higher = the benign edit is
    kept); noise PSNR and L_inf measure visibility. With the unprotected image's
    losses ``clean``, ``attack_gain`` is the drop of the attack loss from no noise.
    """
    noise_mse = noise.pow(2).mean(dim=(1, 2, 3))
    out = {
        "attack_psnr": psnr_from_mse(losses["attack"]),
        "success": (psnr_from_mse(losses["attack"]) >= SUCCESS_DB).float(),
        "incp_psnr": psnr_from_mse(losses["incp"]),
        "hide_psnr": psnr_from_mse(losses["hide"]),
        "noise_psnr": psnr_from_mse(noise_mse),
        "linf": noise.abs().amax(dim=(1, 2, 3)),
        "attack_loss": losses["attack"],
        "hide_loss": losses["hide"],
        "total_loss": losses["total"],
    }
    if clean is not None:
        out["attack_gain"] = clean["attack"] - losses["attack"]
        out["total_gain"] = clean["total"] - losses["total"]
    return out


def share_of_gain(student_gain: Tensor, teacher_gain: Tensor) -> float:
    """The student's loss drop from no noise as a fraction of the teacher's (1.0 = as strong as the teacher)."""
    teacher = float(teacher_gain.mean())
    return float(student_gain.mean()) / teacher if teacher > 0 else float("nan")
