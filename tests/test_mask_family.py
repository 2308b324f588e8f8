"""Training against a family of masks near the protected one: the draw, and the generator reading m meanwhile."""

from __future__ import annotations

import pytest
import torch
import yaml

from trainer.commands.train import main as train_main
from trainer.objective.mask_family import FAMILY, draw_family
from trainer.training import generator_module, generator_validation
from trainer.training.generator_module import GeneratorModule

from .conftest import masked_batch


def test_members_differ_from_m_and_from_each_other():
    _, mask = masked_batch()
    edits = [edit(mask) for edit in FAMILY.values()]
    assert all(not torch.equal(e, mask) for e in edits)
    assert all(not torch.equal(a, b) for i, a in enumerate(edits) for b in edits[i + 1:])
    assert all(set(e.unique().tolist()) <= {0.0, 1.0} and e.shape == mask.shape for e in edits)


def test_draw_is_per_image_seeded_and_off_at_zero():
    _, mask = masked_batch(64)
    assert torch.equal(draw_family(mask, 0.0), mask)
    drawn = draw_family(mask, 1.0, torch.Generator().manual_seed(0))
    members = [e(mask) for e in FAMILY.values()]
    which = [[torch.equal(drawn[i], m[i]) for m in members].index(True) for i in range(len(mask))]
    assert set(which) == set(range(len(FAMILY)))  # every member drawn, each image its own
    assert torch.equal(drawn, draw_family(mask, 1.0, torch.Generator().manual_seed(0)))
    half = draw_family(mask, 0.5, torch.Generator().manual_seed(1))
    kept = sum(torch.equal(half[i], mask[i]) for i in range(len(mask)))
    assert 16 <= kept <= 48  # about half of the 64 keep m
    with pytest.raises(ValueError, match="probability"):
        draw_family(mask, 1.5)


def test_a_member_that_empties_a_mask_keeps_it():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 6:9, 6:9] = 1  # 3 px: 2 px tighter leaves nothing
    assert not FAMILY["2 px tighter"](mask).any()
    for seed in range(20):
        drawn = draw_family(mask, 1.0, torch.Generator().manual_seed(seed))
        assert drawn.any()


def test_training_edits_family_masks_while_the_generator_reads_m(tmp_path, ci_config, monkeypatch):
    config = yaml.safe_load(ci_config.read_text())
    config["model"]["family_p"] = 1.0
    ci_config.write_text(yaml.safe_dump(config))
    seen = []
    real_prepare, real_forward = generator_module.prepare_ensemble_task, GeneratorModule._noise

    def prepare(inpainters, image, mask, *args, **kwargs):
        task = real_prepare(inpainters, image, mask, *args, **kwargs)
        seen.append(("task", task.mask.clone()))
        return task

    def noise(self, image, mask, target, with_field):
        seen.append(("generator" if self.training else "validation", mask.clone()))
        return real_forward(self, image, mask, target, with_field)

    monkeypatch.setattr(generator_module, "prepare_ensemble_task", prepare)
    monkeypatch.setattr(generator_validation, "prepare_ensemble_task", prepare)
    monkeypatch.setattr(GeneratorModule, "_noise", noise)
    assert train_main(["fit", "--config", str(ci_config)]) == 0
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["family_p"] == 1.0
    pairs = list(zip(seen[::2], seen[1::2]))
    assert all(a[0] == "task" for a, _ in pairs)
    trained = [(a[1], b[1]) for a, b in pairs if b[0] == "generator"]
    assert len(trained) == checkpoint["global_step"]
    for edited, read in trained:  # each image's edit is of m's family (m itself where a member would empty it)
        for e, m in zip(edited, read):
            assert any(torch.equal(e, f(m[None])[0]) for f in FAMILY.values()) or torch.equal(e, m) and not all(
                f(m[None]).any() for f in FAMILY.values())
    assert any(not torch.equal(edited, read) for edited, read in trained)
    validated = [(a[1], b[1]) for a, b in pairs if b[0] == "validation"]
    assert validated and all(torch.equal(edited, read) for edited, read in validated)  # validation keeps m
    with pytest.raises(ValueError, match="family_p"):
        GeneratorModule(family_p=2.0)
