"""The amortisation recipe's parts: photo splits, the growing gradient cache, supervised terms, init, time, context."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file

from generator import NoiseUNet, UNetConfig, save_generator
from generator.unet import SpectralBlock
from trainer.commands.train import main as train_main
from trainer.data import splits
from trainer.inpainting.inpainter import build_inpainter
from trainer.objective.fgsm import input_gradient, protect_fgsm
from trainer.objective.losses import prepare_task, protection_losses
from trainer.training.generator_module import GeneratorModule
from trainer.training.gradient_cache import GradientCache, build_gradient_cache

from .conftest import TINY, write_rgb


def test_photo_splits_are_disjoint_and_need_the_photos(tmp_path, monkeypatch):
    names = [*splits.VAL, *splits.TEST, "a", "b", "c", "a_mask"]
    for name in names:
        write_rgb(tmp_path / f"{name}.png", 8, 8)
    train, val, test = (set(p.name for p in splits.split_paths(s, tmp_path)) for s in splits.SPLITS)
    assert train == {"a.png", "b.png", "c.png"}  # masks are never photos
    assert len(val) == 6 and len(test) == 6 + 5 and not (train & val or train & test or val & test)
    (tmp_path / "Wood.png").unlink()
    with pytest.raises(ValueError, match=r"lacks the held-out photos \['Wood'\]"):
        splits.split_paths("train", tmp_path)
    with pytest.raises(ValueError, match="run 'make photos' once"):
        splits.split_paths("val", tmp_path / "nowhere")
    monkeypatch.setattr(splits, "PHOTOS", tmp_path)
    with pytest.raises(ValueError, match="unknown photo split 'dev'"):
        splits.resolve_images("split:dev")
    assert splits.resolve_images(str(tmp_path)) is None


def test_a_photo_subset_is_nested_in_every_larger_one(tmp_path, monkeypatch):
    for name in [*splits.VAL, *splits.TEST, *(f"p{i}" for i in range(9))]:
        write_rgb(tmp_path / f"{name}.png", 8, 8)
    monkeypatch.setattr(splits, "PHOTOS", tmp_path)
    subsets = [splits.resolve_images(f"split:train:{n}") for n in (2, 5, 9)]
    assert [len(s) for s in subsets] == [2, 5, 9] and subsets[2] == splits.split_paths("train", tmp_path)
    assert set(subsets[0]) < set(subsets[1]) < set(subsets[2]) and subsets[1] == sorted(subsets[1])
    assert subsets[1] != splits.split_paths("train", tmp_path)[:5]  # drawn, not the first names of the folder
    with pytest.raises(ValueError, match="a subset takes 1 to 9 photos, not 10"):
        splits.resolve_images("split:train:10")
    with pytest.raises(ValueError, match="must be a whole number, e.g. split:train:6"):
        splits.resolve_images("split:train:half")


def test_fgsm_is_one_signed_step_down_the_total_loss(tiny_inpainter):
    torch.manual_seed(0)
    image, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 8:20, 8:20] = 1
    task = prepare_task(tiny_inpainter, image, mask)
    grad = input_gradient(tiny_inpainter, task)
    protected = protect_fgsm(tiny_inpainter, image, mask, eps=1e-4)
    assert torch.equal(protected, (image - 1e-4 * grad.sign()).clamp(0, 1))
    before = protection_losses(tiny_inpainter, image, task)["total"]
    after = protection_losses(tiny_inpainter, protected, task)["total"]
    assert (after < before).all()  # a small step along -sign(g) lowers the loss to first order


def test_gradient_cache_grows_resumes_and_is_reproducible(tmp_path, inpainter_file):
    build_gradient_cache(tmp_path / "a", inpainter_file, None, count=4, size=32, shard_size=4, batch_size=2,
                         log=lambda _: None)
    build_gradient_cache(tmp_path / "a", inpainter_file, None, count=6, size=32, shard_size=4, batch_size=2,
                         log=lambda _: None)  # appends one whole shard
    build_gradient_cache(tmp_path / "b", inpainter_file, None, count=8, size=32, shard_size=4, batch_size=4,
                         log=lambda _: None)
    a, b = GradientCache(tmp_path / "a"), GradientCache(tmp_path / "b")
    assert len(a) == len(b) == 8 and [e["index"] for e in a.entries] == list(range(8))
    for key in ("image", "mask", "target"):
        assert torch.equal(a.data[key], b.data[key])
    assert torch.allclose(a.data["grad"].float(), b.data["grad"].float(), atol=1e-2)
    assert a.data["grad"].float().abs().mean(dim=(1, 2, 3)).sub(1).abs().max() < 1e-2  # normalised per crop
    assert {e["photo"] for e in a.entries} <= {p.name for p in splits.sample_images("train")}
    item = a[0]
    assert item["has_grad"] == 1 and item["has_teacher"] == 0 and item["grad"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"was built with other size \(32 there, 48 here\); pass its options"):
        build_gradient_cache(tmp_path / "a", inpainter_file, None, count=8, size=48, shard_size=4)
    with pytest.raises(ValueError, match="built against another inpainter"):
        a.check_inpainter(build_inpainter(TINY, seed=1))
    with pytest.raises(ValueError, match="paintguard gradient-cache --out"):
        GradientCache(tmp_path / "missing")


def test_gradient_cache_with_teacher_steps_stores_bounded_noises(tmp_path, inpainter_file):
    build_gradient_cache(tmp_path / "t", inpainter_file, None, count=2, size=32, shard_size=2, teacher_steps=2,
                         log=lambda _: None)
    cache = GradientCache(tmp_path / "t")
    assert cache[1]["has_teacher"] == 1 and 0 < cache[1]["teacher_noise"].abs().max() <= 0.025 + 1e-4


def test_supervised_terms_vanish_once_the_sign_is_right_by_the_margin():
    module = GeneratorModule(widths=[8, 16], groups=4)
    eps, has, margin = module.hparams.eps, torch.ones(2), module.hparams.supervised_margin
    grad = torch.randn(2, 3, 8, 8)
    grad = grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True)
    want = -grad.sign()  # one FGSM step's direction

    def terms(raw, reference, kind):
        return module._supervised(eps * torch.tanh(raw), raw, reference, has, kind).item()

    assert terms(want * (margin + 1), grad, "gradient") == 0  # right side, past the margin: no push
    assert terms(torch.zeros(2, 3, 8, 8), grad, "gradient") == pytest.approx(margin)  # |g| averages 1
    assert terms(-want, grad, "gradient") == pytest.approx(margin + 1)
    assert module._supervised(-eps * grad.sign(), None, grad, has, "linearised").item() == pytest.approx(-1.0)
    teacher = eps * torch.randn(2, 3, 8, 8).sign()
    assert terms(teacher.sign() * (margin + 1), teacher, "sign") == 0
    assert terms(-teacher.sign() * margin, teacher, "sign") == pytest.approx(2 * margin)
    assert module._supervised(teacher, None, teacher, has, "mse").item() == 0
    assert module._supervised(teacher, None, teacher, torch.zeros(2), "mse").item() == 0  # no entry carries one
    with pytest.raises(ValueError, match="teacher_loss must be one of mse, sign"):
        GeneratorModule(teacher_loss="cosine")


def test_supervised_pretraining_calls_no_inpainter_and_init_from_loads_it(tmp_path, ci_config, inpainter_file,
                                                                             monkeypatch):
    build_gradient_cache(tmp_path / "gc", inpainter_file, None, count=8, size=32, shard_size=8,
                         log=lambda _: None)
    calls = []
    real = GeneratorModule.inpainter.fget

    def counted(self):
        calls.append(self.global_step if self._trainer is not None else None)
        return real(self)

    monkeypatch.setattr(GeneratorModule, "inpainter", property(counted))
    assert train_main(["fit", "--config", str(ci_config), "--model.e2e_weight", "0", "--model.gradient_weight", "1",
                       "--data.gradient_cache", str(tmp_path / "gc"), "--data.teacher_fraction", "1.0",
                       "--trainer.limit_val_batches", "0"]) == 0
    assert calls == [0]  # once, at fit start, to check the cache's fingerprint; never in the 4 training steps
    config = yaml.safe_load(ci_config.read_text())
    last = next((tmp_path / "ckpt").glob("last*.ckpt"))
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["paintguard_train_seconds"] > 0

    net = NoiseUNet(UNetConfig(widths=config["model"]["widths"], groups=config["model"]["groups"]))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    init = save_generator(net, tmp_path / "init.safetensors")
    module = GeneratorModule(widths=config["model"]["widths"], groups=config["model"]["groups"], init_from=str(init))
    module.setup("fit")
    stored = load_file(str(init))
    assert all(torch.equal(v, stored[k]) for k, v in module.net.state_dict().items())
    other = GeneratorModule(widths=[8, 16, 32], groups=4, init_from=str(init))
    with pytest.raises(ValueError, match=r"init_from '.*init.safetensors' is another architecture: widths \[8, 16\] "
                                         r"\(this model: \[8, 16, 32\]\)"):
        other.setup("fit")


def test_fourier_context_starts_as_identity_and_keeps_the_bound():
    torch.manual_seed(0)
    block = SpectralBlock(8, 4)
    x = torch.randn(2, 8, 5, 7)  # odd sizes: irfft2 must give the size back
    assert torch.equal(block(x), x)
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4, global_context="fourier"))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    noise = net(torch.rand(1, 3, 37, 50), torch.ones(1, 1, 37, 50), torch.rand(1, 3))
    assert noise.shape == (1, 3, 37, 50) and noise.abs().max() <= 0.025
    with pytest.raises(ValueError, match="global_context must be one of none, fourier"):
        NoiseUNet(UNetConfig(global_context="attention"))
    with pytest.raises(ValueError, match=r"eps is the noise's bound, in \(0, 1\), got -1"):
        NoiseUNet(UNetConfig(eps=-1))  # its noise was returned as up to 1 in size, the wrong way round
    with pytest.raises(ValueError, match=r"widths must be a non-empty list of positive channel counts, got \[\]"):
        NoiseUNet(UNetConfig(widths=[]))


def test_validation_teacher_is_computed_once_across_runs(tmp_path, ci_config, monkeypatch):
    from trainer.training import generator_validation

    calls = []
    real = generator_validation.protect_iterative

    def counted(*args, **kwargs):
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(generator_validation, "protect_iterative", counted)
    cache = tmp_path / "val-teacher.safetensors"
    argv = ["fit", "--config", str(ci_config), "--model.val_teacher_cache", str(cache)]
    assert train_main(argv) == 0
    first = sum(calls)
    assert first > 0 and cache.is_file()
    shutil.rmtree(tmp_path / "ckpt")  # each run is a new one: a fit refuses to start beside another's checkpoints
    assert train_main([*argv, "--run_name", "again", "--trainer.logger.init_args.save_dir", str(tmp_path / "r2"),
                       "--trainer.max_steps", "2"]) == 0
    assert sum(calls) == first  # the second run scored its validation against the stored teacher
    shutil.rmtree(tmp_path / "ckpt")
    assert train_main([*argv, "--model.teacher_steps", "1", "--trainer.max_steps", "2"]) == 0
    assert sum(calls) > first  # another teacher recipe is another key


def test_teacher_metrics_are_keyed_by_pixels_mask_and_recipe_and_persist(tmp_path):
    from trainer.training.teacher_metrics import TeacherMetrics

    image, mask = torch.randint(0, 256, (2, 3, 8, 8)) / 255, torch.zeros(2, 1, 8, 8)
    mask[0, :, 2:4, 2:4] = 1
    keys = TeacherMetrics.keys("recipe", image, mask)
    assert keys == TeacherMetrics.keys("recipe", image + 0.0001, mask)  # the same 8-bit pixels
    assert len({*keys, *TeacherMetrics.keys("other", image, mask), *TeacherMetrics.keys("recipe", image, 1 - mask)}) == 6
    store = TeacherMetrics(str(tmp_path / "t.safetensors"))
    assert store.missing(keys) == [0, 1]
    store.add(keys[1:], {"attack_psnr": torch.tensor([12.5])})
    again = TeacherMetrics(str(tmp_path / "t.safetensors"))
    assert again.missing(keys) == [0] and again.stack(keys[1:])["attack_psnr"].tolist() == [12.5]


def test_colour_push_moves_every_pixel_by_eps_towards_the_target():
    from generator.target import target_colour
    from trainer.evaluation.scoring import colour_push_method

    image = torch.rand(2, 3, 16, 16) * 0.8 + 0.1
    protected = colour_push_method(0.025)(image, torch.zeros(2, 1, 16, 16))
    target = target_colour(image).reshape(-1, 3, 1, 1)
    assert torch.allclose((protected - image).abs(), torch.full_like(image, 0.025))
    assert ((protected - image).sign() == (target - image).sign()).all()


def test_gradient_cache_command_checks_before_it_writes_a_recipe(tmp_path, inpainter_file, capsys):
    """A new cache's recipe is written before its first batch: a bad option must not leave one behind, or the
    corrected command would be refused as 'built with other field_layers'."""
    from trainer.commands.cli import main as cli_main

    images, out = tmp_path / "images", tmp_path / "cache" / "new"
    images.mkdir()
    write_rgb(images / "a.png", 40, 40, seed=1)
    plain = save_generator(NoiseUNet(UNetConfig(widths=[8, 16], groups=4)), tmp_path / "plain.safetensors")
    (tmp_path / "file").write_text("x")
    base = ["gradient-cache", "--inpainter", inpainter_file, "--images", str(images), "--count", "1", "--size", "16",
            "--shard-size", "1", "--batch-size", "1"]
    cases = {("--out", str(out), "--batch-size", "0"): "--batch-size must be >= 1, got 0",
             ("--out", str(out), "--field-layers", "9"): "--field-layers must be at most 4 for",
             ("--out", str(out), "--field-teacher", str(plain)): "has no field to step: it needs an encoder-gradient",
             ("--out", str(tmp_path / "file")): "is a file, not a cache folder"}
    for args, message in cases.items():
        assert cli_main([*base, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err and "'refine'" not in err, err
        assert not (tmp_path / "cache").exists()
    assert cli_main([*base, "--out", str(out), "--field-layers", "4"]) == 0
    assert len(GradientCache(out)) == 1
