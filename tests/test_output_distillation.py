"""Output distillation (lever 6 of the amortisation issue): the generator's fills pulled towards the teacher's."""

from __future__ import annotations

import pytest
import torch

from trainer.commands.train import main as train_main
from trainer.objective.ensemble import ensemble_losses, prepare_ensemble_task
from trainer.objective.losses import prepare_task, protection_losses, reference_fills
from trainer.training import generator_module
from trainer.training.generator_module import GeneratorModule
from trainer.training.gradient_cache import build_gradient_cache

from .conftest import masked_batch


def test_output_term_is_zero_at_the_teacher_and_grows_away_from_it(tiny_inpainter):
    image, mask = masked_batch()
    task = prepare_task(tiny_inpainter, image, mask)
    teacher = (image + 0.025 * torch.randn_like(image).sign()).clamp(0, 1)
    reference = reference_fills(tiny_inpainter, teacher, task)
    at_teacher = protection_losses(tiny_inpainter, teacher, task, reference=reference)
    assert at_teacher["output"].abs().max().item() < 1e-10
    clean = protection_losses(tiny_inpainter, image, task, reference=reference)
    assert (clean["output"] > 1e-8).all()
    plain = protection_losses(tiny_inpainter, image, task)
    assert "output" not in plain and torch.equal(plain["total"], clean["total"])  # not part of the paper's total


def test_output_term_refuses_what_it_cannot_compare(tiny_inpainter):
    image, mask = masked_batch()
    task = prepare_task(tiny_inpainter, image, mask)
    reference = reference_fills(tiny_inpainter, image, task)
    pair = [tiny_inpainter, tiny_inpainter]
    with pytest.raises(ValueError, match="ensemble"):
        ensemble_losses(pair, image, prepare_ensemble_task(pair, image, mask), reference=reference)
    with pytest.raises(ValueError, match="e2e_weight"):
        GeneratorModule(inpainter="unused", output_weight=1.0, e2e_weight=0.0)


def test_output_distillation_trains_on_the_cached_entries_only(tmp_path, ci_config, inpainter_file, monkeypatch):
    build_gradient_cache(tmp_path / "tc", inpainter_file, None, count=8, size=32, shard_size=8, teacher_steps=2,
                         log=lambda _: None)
    steps, made, seen = [], [], []
    real_step, real_fills, real_over = (GeneratorModule.training_step, generator_module.reference_fills,
                                        generator_module.over_entries)

    def step(self, batch, batch_idx):
        steps.append(int(batch["has_teacher"].sum()))
        return real_step(self, batch, batch_idx)

    def fills(inpainter, protected, task):
        made.append(len(protected))
        return real_fills(inpainter, protected, task)

    def counted(per_sample, has):
        value = real_over(per_sample, has)
        if per_sample.requires_grad and len(seen) < 100:
            seen.append((per_sample.detach().clone(), has.clone()))
        return value

    monkeypatch.setattr(GeneratorModule, "training_step", step)
    monkeypatch.setattr(generator_module, "reference_fills", fills)
    monkeypatch.setattr(generator_module, "over_entries", counted)
    assert train_main(["fit", "--config", str(ci_config), "--model.output_weight", "1",
                       "--data.gradient_cache", str(tmp_path / "tc"), "--data.teacher_fraction", "0.5",
                       "--trainer.limit_val_batches", "0"]) == 0
    assert len(steps) == 4 and sum(steps) > 0
    assert made == [n for n in steps if n]  # the teacher's fills: every step with cached entries, for those alone
    assert len(seen) == len(made)  # the term reaches the generator on each of those steps
    has = torch.cat([h for _, h in seen])
    assert 0 < has.sum() < len(has)  # a mix of cached entries and fresh crops
    assert all((term > 0).all() for term, _ in seen)
