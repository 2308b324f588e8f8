"""Optimiser steps on an encoder-gradient generator's field: bounded, deterministic, and they lower the loss."""

import pytest
import torch
import yaml

from generator.protector import Protector, load_generator
from trainer.commands.cli import main
from trainer.evaluation.compare_config import load_config
from trainer.evaluation.comparison import InpainterPool, build_methods
from trainer.evaluation.scoring import refine_method
from trainer.inpainting.inpainter import load_inpainter
from trainer.objective.field_steps import field_steps, has_field
from trainer.objective.losses import prepare_task, protection_losses

from .conftest import write_mask, write_rgb


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 72, 88)  # not a multiple of the U-Net's 16: the padding path
    mask = torch.zeros(2, 1, 72, 88)
    mask[0, :, 20:44, 30:60] = 1
    mask[1, :, 8:30, 10:40] = 1
    return load_generator("generator-lama-tiny"), load_inpainter("lama-tiny"), image, mask


def total(inpainter, image, mask, noise):
    task = prepare_task(inpainter, image, mask)
    with torch.no_grad():
        return protection_losses(inpainter, (image + noise).clamp(0, 1), task)["total"]


def test_zero_steps_is_the_generator_and_steps_lower_the_loss(parts):
    net, inpainter, image, mask = parts
    seen = []
    start = field_steps(net, inpainter, image, mask, 0)
    with torch.no_grad():
        assert torch.allclose(start, net(image, mask, prepare_task(inpainter, image, mask).target.flatten(1)),
                              atol=1e-6)
    stepped = field_steps(net, inpainter, image, mask, 2, callback=lambda step, noise: seen.append(step))
    assert seen == [0, 1, 2]
    assert stepped.shape == image.shape and stepped.abs().max() <= net.config.eps
    assert (total(inpainter, image, mask, stepped) < total(inpainter, image, mask, start)).all()
    assert torch.equal(stepped, field_steps(net, inpainter, image, mask, 2))  # no randomness


def test_images_are_stepped_independently(parts):
    net, inpainter, image, mask = parts
    both = field_steps(net, inpainter, image, mask, 1)
    alone = field_steps(net, inpainter, image[1:], mask[1:], 1)
    assert torch.allclose(both[1:], alone, atol=1e-5)


def test_only_generators_with_a_field(parts, tmp_path):
    _, inpainter, image, mask = parts
    fast = Protector.from_checkpoint("generator-lama-tiny-fast")
    assert not has_field(fast.net) and has_field(Protector.from_checkpoint("generator-lama-tiny").net)
    with pytest.raises(ValueError, match="encoder-gradient generator"):
        field_steps(fast.net, inpainter, image, mask, 1)
    with pytest.raises(ValueError, match="encoder-gradient generator"):
        refine_method(fast, inpainter, 1)


def test_refine_method_runs_under_inference_mode(parts):
    net, inpainter, image, mask = parts
    method = refine_method(Protector.from_checkpoint("generator-lama-tiny"), inpainter, 1)
    with torch.inference_mode():
        protected = method(image, mask)
    assert (protected - image).abs().max() <= 0.025 + 1e-6


def test_protector_refine(parts):
    _, _, image, mask = parts
    protector = Protector.from_checkpoint("generator-lama-tiny", inpainter="lama-tiny")
    torch.testing.assert_close(protector.protect(image, mask, method="refine", steps=0), protector.protect(image, mask))
    refined = protector.protect(image, mask, method="refine", steps=1)
    assert (refined - image).abs().max() <= 0.025 + 1e-6
    assert not torch.allclose(refined, protector.protect(image, mask))
    with pytest.raises(ValueError, match="need an inpainter"):
        Protector.from_checkpoint("generator-lama-tiny").protect(image, mask, method="refine")
    with pytest.raises(ValueError, match="use 'hybrid' with this one"):
        Protector.from_checkpoint("generator-lama-tiny-fast", inpainter="lama-tiny").protect(image, mask,
                                                                                             method="refine")


def test_cli_refine_and_its_one_line_errors(tmp_path, capsys):
    image, mask, out = tmp_path / "img.png", tmp_path / "img_mask.png", tmp_path / "out.png"
    write_rgb(image, 40, 52)
    write_mask(mask, 40, 52, (10, 12, 28, 40))
    assert main(["protect", str(image), "--mask", str(mask), "-o", str(out), "--method", "refine", "--steps", "1"]) == 0
    assert out.is_file()
    for extra, pattern in [(["--backend", "onnx"], "needs --backend torch"),
                           (["--checkpoint", "generator-lama-tiny-fast"], "use 'hybrid' with this one")]:
        capsys.readouterr()
        bad = tmp_path / "bad.png"
        assert main(["protect", str(image), "--mask", str(mask), "-o", str(bad), "--method", "refine", *extra]) != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and pattern in err and "Traceback" not in err, err
        assert not bad.exists()


def test_compare_builds_refine_rows_for_a_generator_with_a_field(tmp_path):
    path = tmp_path / "refine.yaml"
    path.write_text(yaml.safe_dump({"methods": {"none": None, "refine": {"k": [1, 3]}}}))
    lama = InpainterPool()("lama-tiny")
    assert list(build_methods(load_config(path), lama).methods) == ["none", "refine (k=1)", "refine (k=3)"]
    path.write_text(yaml.safe_dump({"methods": {"refine": {"checkpoint": "generator-lama-tiny-fast"}}}))
    with pytest.raises(ValueError, match="needs an encoder-gradient generator"):
        build_methods(load_config(path), lama)


def test_a_field_teacher_cache_stores_the_stepped_field_and_the_noise_it_gives(tmp_path):
    """``gradient-cache --field-teacher``: the entry's field (negated, as a gradient is stored) is the generator's
    field after the steps, its teacher noise is what the head makes of that field, and it beats the generator."""
    from trainer.training.gradient_cache import GradientCache, build_gradient_cache

    build_gradient_cache(tmp_path / "ft", "lama-tiny", None, count=2, size=48, shard_size=2, batch_size=2,
                         field_teacher="generator-lama-tiny", field_steps=3, log=lambda _: None)
    cache = GradientCache(tmp_path / "ft")
    assert cache.recipe["field_teacher"]["steps"] == 3 and len(cache) == 2
    net, inpainter = load_generator("generator-lama-tiny"), load_inpainter("lama-tiny")
    image = torch.stack([cache[i]["image"] for i in range(2)])
    mask = torch.stack([cache[i]["mask"] for i in range(2)])
    field = -torch.stack([cache[i]["field"] for i in range(2)]) * cache.data["field_scale"][:, None, None, None]
    teacher = torch.stack([cache[i]["teacher_noise"] for i in range(2)])
    with torch.no_grad():
        remade = net.config.eps * torch.tanh(net.target_encoder(field, image, mask))
        own = net(image, mask, prepare_task(inpainter, image, mask).target.flatten(1))
    assert torch.allclose(remade, teacher, atol=2e-3)  # the field and the noise are stored in float16
    assert (total(inpainter, image, mask, teacher) < total(inpainter, image, mask, own)).all()
    with pytest.raises(ValueError, match="field_teacher"):
        build_gradient_cache(tmp_path / "bad", "lama-tiny", None, count=2, size=48, field_teacher="generator-lama-tiny",
                             field_layers=4, log=lambda _: None)
    with pytest.raises(ValueError, match="encoder-gradient generator"):
        build_gradient_cache(tmp_path / "bad", "lama-tiny", None, count=2, size=48,
                             field_teacher="generator-lama-tiny-fast", log=lambda _: None)


def test_the_field_path_runs_from_the_generator_to_the_stepped_field(parts, monkeypatch, capsys):
    """``memorisation.py --interpolate``: fraction 0 scores the generator, 1 the stepped field, as refine does."""
    import importlib
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    memorisation = importlib.import_module("memorisation")
    net, inpainter, image, mask = parts
    image, mask = image[..., :64, :80], mask[..., :64, :80]  # the path scores whole fields: multiples of 16
    task = prepare_task(inpainter, image, mask)
    optimised = (image + field_steps(net, inpainter, image, mask, 4, target=task.target)).clamp(0, 1)
    scorer = memorisation.Scorer(inpainter, task, optimised, net.config.eps)
    memorisation.field_path(net, inpainter, task, scorer, 2, 0.2, [0, 1])
    rows = [line.split("|")[1:4] for line in capsys.readouterr().out.splitlines() if line.startswith("| 0 |")
            or line.startswith("| 1 |")]
    with torch.no_grad():
        own = net(image, mask, task.target.flatten(1))
    stepped = field_steps(net, inpainter, image, mask, 2, target=task.target)
    assert float(rows[0][1]) == pytest.approx(scorer.share(own), abs=1e-3)
    assert float(rows[1][1]) == pytest.approx(scorer.share(stepped), abs=1e-3)
    assert float(rows[1][1]) > float(rows[0][1]) and float(rows[1][2]) == pytest.approx(1.0)
    sys.modules.pop("memorisation", None)


def test_a_fit_is_scored_on_the_samples_it_is_not_fitted_to(parts, monkeypatch, capsys):
    """``memorisation.py --held-out-*``: each held-out column is the share of the network as fitted at that step,
    on samples it never trains on (their share moves only through what the fit changed)."""
    import copy
    import importlib
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    memorisation = importlib.import_module("memorisation")
    net, inpainter, image, mask = parts
    net = copy.deepcopy(net)
    fitted, other = (prepare_task(inpainter, image[i:i + 1], mask[i:i + 1]) for i in (0, 1))
    scorers = [memorisation.Scorer(inpainter, t, (t.image + field_steps(net, inpainter, t.image, t.mask, 3,
                                                                        target=t.target)).clamp(0, 1), net.config.eps)
               for t in (fitted, other)]
    with torch.no_grad():
        before = scorers[1].share(net(other.image, other.mask, other.target))
    memorisation.fit_generator(net, inpainter, fitted, scorers[0], 2, 2, 1e-3, 1, [(other, scorers[1])])
    rows = [line.split("|")[2:5] for line in capsys.readouterr().out.splitlines() if line.startswith("| generator")]
    net.eval()
    with torch.no_grad():
        after = scorers[1].share(net(other.image, other.mask, other.target))
    assert [int(r[0]) for r in rows] == [0, 2]
    assert float(rows[0][2]) == pytest.approx(before, abs=1e-3) and float(rows[1][2]) == pytest.approx(after, abs=1e-3)
    assert after != before  # the fit changed the network, and the column follows it
    sys.modules.pop("memorisation", None)
