"""A generator as the distillation teacher of another (``model.teacher_generator``)."""

from __future__ import annotations

import pytest
import torch

from generator.protector import load_generator, save_generator
from generator.target import target_colour
from generator.unet import NoiseUNet, UNetConfig
from trainer.commands.train import main as train_main
from trainer.training.generator_module import GeneratorModule
from trainer.training.generator_teacher import GeneratorTeacher
from trainer.training.wandb_logger import read_offline_run

from .conftest import masked_batch, offline_run


@pytest.fixture
def teacher_file(tmp_path) -> str:
    torch.manual_seed(3)
    return str(save_generator(NoiseUNet(UNetConfig(widths=[8, 16], groups=4)), tmp_path / "teacher.safetensors"))


def test_the_teacher_noise_is_the_generator_s_own(teacher_file):
    image, mask = masked_batch(2, 32)
    batch = GeneratorTeacher(teacher_file, eps=0.025, weight=1.0)({"image": image, "mask": mask * 255})
    with torch.no_grad():
        expected = load_generator(teacher_file)(image, mask, target_colour(image))
    assert torch.equal(batch["teacher_noise"], expected) and batch["teacher_noise"].abs().max() > 0
    assert batch["has_teacher"].tolist() == [1.0, 1.0]
    assert batch["image"] is image


def test_misconfigured_teachers_are_refused(teacher_file):
    with pytest.raises(ValueError, match="teacher_weight"):
        GeneratorModule(widths=[8, 16], groups=4, teacher_generator=teacher_file)
    with pytest.raises(ValueError, match="equal bounds"):
        GeneratorModule(widths=[8, 16], groups=4, eps=0.05, teacher_weight=1.0, teacher_generator=teacher_file)
    image, mask = masked_batch(2, 32)
    with pytest.raises(ValueError, match="not both"):
        GeneratorTeacher(teacher_file, 0.025, 1.0)({"image": image, "mask": mask, "teacher_noise": image})


def test_supervised_steps_bring_the_student_to_its_teacher(teacher_file):
    torch.manual_seed(0)
    module = GeneratorModule(widths=[8, 16], groups=4, e2e_weight=0.0, teacher_weight=1.0, lr=3e-3,
                             teacher_generator=teacher_file)
    optimiser = torch.optim.Adam(module.net.parameters(), lr=3e-3)
    image, mask = masked_batch(2, 32)
    teacher = load_generator(teacher_file)

    def distance() -> float:
        with torch.no_grad():
            target = target_colour(image)
            return float((module.net(image, mask, target) - teacher(image, mask, target)).pow(2).mean())

    before = distance()
    for _ in range(30):
        optimiser.zero_grad()
        module.training_step({"image": image, "mask": mask}, 0).backward()
        optimiser.step()
    assert distance() < 0.5 * before


def test_a_fit_distils_from_a_generator_file(tmp_path, ci_config, teacher_file):
    assert train_main(["fit", "--config", str(ci_config), "--model.teacher_weight", "0.5",
                       "--model.teacher_generator", teacher_file]) == 0
    run = read_offline_run(offline_run(tmp_path))
    assert any("train/distill" in row for row in run.history)
    # the teacher is not part of the student: its weights stay out of the checkpoint
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["state_dict"]
    assert state and all(key.startswith("net.") for key in state)
