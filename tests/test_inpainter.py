import collections
import re

import numpy as np
import pytest
import torch

from generator import checkpoint
from generator.checkpoint import CheckpointError
from trainer.inpainting.ffc import FFCResNetGenerator, FourierUnit
from trainer.inpainting.inpainter import lama_predict, load_inpainter, pad_symmetric, save_inpainter

from .conftest import TINY, one_line_error, write_mask, write_rgb


@pytest.mark.parametrize("h,w", [(5, 3), (8, 8), (13, 29), (2, 1)])
def test_pad_symmetric_matches_numpy(h, w):
    x = torch.arange(2 * 3 * h * w, dtype=torch.float32).reshape(2, 3, h, w)
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (0, -h % 8), (0, -w % 8)), mode="symmetric")
    assert np.array_equal(pad_symmetric(x, 8).numpy(), ref)


def upstream_fourier_unit(fu: FourierUnit, x: torch.Tensor) -> torch.Tensor:
    """LaMa's FourierUnit.forward, transcribed literally (stack, permute, view), for comparison."""
    batch = x.shape[0]
    ffted = torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")
    ffted = torch.stack((ffted.real, ffted.imag), dim=-1).permute(0, 1, 4, 2, 3).contiguous()
    ffted = ffted.view((batch, -1) + ffted.size()[3:])
    ffted = fu.relu(fu.bn(fu.conv_layer(ffted)))
    ffted = ffted.view((batch, -1, 2) + ffted.size()[2:]).permute(0, 1, 3, 4, 2).contiguous()
    ffted = torch.complex(ffted[..., 0], ffted[..., 1])
    return torch.fft.irfftn(ffted, s=x.shape[-2:], dim=(-2, -1), norm="ortho")


def test_fourier_unit_interleaves_real_and_imaginary_like_upstream():
    torch.manual_seed(0)
    fu = FourierUnit(6, 6).eval()
    with torch.no_grad():
        fu.bn.running_mean.normal_()
        fu.bn.weight.uniform_(0.5, 2)
    x = torch.randn(2, 6, 12, 10)
    assert torch.allclose(fu(x), upstream_fourier_unit(fu, x), atol=1e-6)


@pytest.mark.parametrize("h,w", [(37, 45), (64, 64), (17, 100)])
def test_any_size_is_padded_cropped_and_composited(tiny_inpainter, h, w):
    image = torch.rand(2, 3, h, w)
    mask = (torch.rand(2, 1, h, w) > 0.7).float()
    out = tiny_inpainter(image, mask)
    assert out.shape == image.shape
    assert torch.equal(out * (1 - mask), image * (1 - mask))  # known pixels untouched
    padded = pad_symmetric(torch.cat([image * (1 - mask), mask], 1), 8)
    pred = tiny_inpainter.net(padded)[..., :h, :w]
    assert torch.allclose(out, mask * pred + (1 - mask) * image, atol=1e-6)


def test_channels_last_layout_changes_neither_the_output_nor_the_saved_weights(tiny_inpainter, tmp_path):
    plain = FFCResNetGenerator(tiny_inpainter.config).eval()
    plain.load_state_dict(tiny_inpainter.net.state_dict())
    assert not plain.model[1].ffc.convl2l.weight.is_contiguous(memory_format=torch.channels_last)
    assert tiny_inpainter.net.model[1].ffc.convl2l.weight.is_contiguous(memory_format=torch.channels_last)
    image, mask = torch.rand(2, 3, 40, 56), (torch.rand(2, 1, 40, 56) > 0.6).float()
    with torch.no_grad():
        expected = mask * lama_predict(plain, image, mask) + (1 - mask) * image
        # float summation order differs between the layouts; this test net amplifies it (BatchNorm gains x4)
        assert torch.allclose(tiny_inpainter(image, mask), expected, atol=1e-4)
    reloaded = load_inpainter(save_inpainter(tiny_inpainter, tmp_path / "t.safetensors"))
    assert reloaded.fingerprint() == tiny_inpainter.fingerprint()


def test_mask_is_binarised_with_greater_than_zero(tiny_inpainter):
    image = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 8:20] = 0.3
    assert torch.equal(tiny_inpainter(image, mask), tiny_inpainter(image, (mask > 0).float()))


def test_frozen_but_differentiable_wrt_image(tiny_inpainter):
    tiny_inpainter.train()  # must stay in eval mode regardless
    assert not tiny_inpainter.training and not tiny_inpainter.net.training
    image = torch.rand(1, 3, 40, 40, requires_grad=True)
    mask = torch.zeros(1, 1, 40, 40)
    mask[..., 10:30, 10:30] = 1
    stats = tiny_inpainter.net.model[1].bn_l.running_mean.clone()
    (tiny_inpainter(image, mask) * mask).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in tiny_inpainter.parameters())
    assert torch.equal(stats, tiny_inpainter.net.model[1].bn_l.running_mean)


def test_wrong_shapes_are_rejected(tiny_inpainter):
    with pytest.raises(ValueError, match="mask is"):
        tiny_inpainter(torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 8))


LAMA_CONFIG = """\
# the structure of big-lama's config.yaml: interpolations inside the generator block, and elsewhere
# references to the authors' machines that must not be resolved
losses:
  resnet_pl:
    weights_path: ${env:TORCH_HOME}
location:
  out_root_dir: /group-volume/${env:USER}/experiments
generator:
  kind: ffc_resnet
  input_nc: 4
  output_nc: 3
  ngf: NGF
  n_downsampling: 3
  n_blocks: NBLOCKS
  add_out_act: sigmoid
  init_conv_kwargs: {ratio_gin: 0, ratio_gout: 0, enable_lfu: false}
  downsample_conv_kwargs:
    ratio_gin: ${generator.init_conv_kwargs.ratio_gout}
    ratio_gout: ${generator.downsample_conv_kwargs.ratio_gin}
    enable_lfu: false
  resnet_conv_kwargs:
    ratio_gin: 0.75
    ratio_gout: ${generator.resnet_conv_kwargs.ratio_gin}
    enable_lfu: false
"""


def make_lama_dir(root, inpainter, extra_state=None, extra_blob=None):
    """A LaMa model directory as LaMa distributes it: config.yaml + models/best.ckpt."""
    (root / "models").mkdir(parents=True)
    config = LAMA_CONFIG.replace("NGF", str(TINY.ngf)).replace("NBLOCKS", str(TINY.n_blocks))
    (root / "config.yaml").write_text(config)
    state = collections.OrderedDict((f"generator.{k}", v) for k, v in inpainter.net.state_dict().items())
    state["discriminator.model0.0.weight"] = torch.zeros(4, 3, 4, 4)
    state["loss_resnet_pl.impl.conv1.weight"] = torch.zeros(2)
    state.update(extra_state or {})
    torch.save({"state_dict": state, "epoch": 1, **(extra_blob or {})}, root / "models" / "best.ckpt")
    return root


def test_load_lama_directory(tmp_path, tiny_inpainter):
    from pytorch_lightning.callbacks import (
        ModelCheckpoint,  # Lightning 1.x keys callback states by class
    )

    from omegaconf import OmegaConf

    # and its config as OmegaConf containers (Lightning's hyper_parameters), which name typing.Any and builtins.dict
    config = OmegaConf.create({"generator": {"ngf": 8, "blocks": [1, 2.5, {"a": None}], "on": True, "name": "x"}})
    folder = make_lama_dir(tmp_path / "big-lama", tiny_inpainter,
                           extra_blob={"callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5)}},
                                       "hyper_parameters": config, "hparams_name": "config"})
    loaded = load_inpainter(folder)
    image, mask = torch.rand(1, 3, 33, 41), (torch.rand(1, 1, 33, 41) > 0.5).float()
    assert torch.equal(loaded(image, mask), tiny_inpainter(image, mask))


def test_lama_checkpoint_with_wrong_keys_names_them(tmp_path, tiny_inpainter):
    folder = make_lama_dir(tmp_path / "m", tiny_inpainter, extra_state={"generator.model.99.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: model\.99\.weight"):
        load_inpainter(folder)
    bad = make_lama_dir(tmp_path / "s", tiny_inpainter, extra_state={"generator.model.1.bn_l.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"shape mismatch \(file vs architecture\): model\.1\.bn_l\.weight "
                                             r"\(3,\) vs \(8,\) \(the architecture of .*/s/config\.yaml's "
                                             r"generator block\)$"):
        load_inpainter(bad)


class NotAllowed:
    pass


def test_lama_checkpoint_with_unknown_pickled_class_is_refused(tmp_path, tiny_inpainter):
    folder = make_lama_dir(tmp_path / "m", tiny_inpainter, extra_blob={"payload": NotAllowed()})
    with pytest.raises(CheckpointError, match="safely: it refers to code, '.*NotAllowed'"):
        load_inpainter(folder)


def test_not_a_lama_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing config\.yaml"):
        load_inpainter(tmp_path)


def test_paintguard_checkpoint_round_trip_by_path_and_name(tmp_path, monkeypatch, tiny_inpainter):
    path = save_inpainter(tiny_inpainter, tmp_path / "mine.safetensors")
    image, mask = torch.rand(1, 3, 24, 24), (torch.rand(1, 1, 24, 24) > 0.5).float()
    assert torch.equal(load_inpainter(path)(image, mask), tiny_inpainter(image, mask))
    monkeypatch.setenv("PAINTGUARD_CHECKPOINTS", str(tmp_path))
    assert torch.equal(load_inpainter("mine")(image, mask), tiny_inpainter(image, mask))
    monkeypatch.chdir(tmp_path.parent)
    assert torch.equal(load_inpainter("mine.safetensors")(image, mask), tiny_inpainter(image, mask))  # as ls shows it


def test_bad_sources_give_clear_errors(tmp_path, monkeypatch, tiny_inpainter):
    monkeypatch.setenv("PAINTGUARD_CHECKPOINTS", str(tmp_path))
    with pytest.raises(CheckpointError, match="no inpainter checkpoint 'nope'"):
        load_inpainter("nope")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*: not a safetensors file, or a damaged one"):
        load_inpainter(junk)  # safetensors' "header too large" alone said nothing of what the file is
    with pytest.raises(ValueError, match="device 'cuda:7' cannot be used here"):
        load_inpainter("nope", device="cuda:7")  # torch's "not compiled with CUDA", or an index out of range
    from generator.protector import load_generator

    with pytest.raises(CheckpointError, match="'.*' is a folder, not a checkpoint file"):
        load_generator(tmp_path)  # "No such device (os error 19)"
    with pytest.raises(TypeError, match="a generator checkpoint is a shipped name or a file path, got NoneType"):
        load_generator(None)
    other = checkpoint.save(tiny_inpainter.net.state_dict(), tmp_path / "gen.safetensors", "generator", {})
    with pytest.raises(CheckpointError, match="is a generator checkpoint, expected a checkpoint of kind .inpainter."):
        load_inpainter(other)


@pytest.mark.parametrize("content", [b"junk", b"hello world\n", b"", b"\x80\x04\x95"])
def test_corrupt_lama_checkpoint_is_one_line_naming_the_file(tmp_path, tiny_inpainter, capsys, content):
    from trainer.commands.cli import main

    folder = make_lama_dir(tmp_path / "m", tiny_inpainter)
    ckpt = folder / "models" / "best.ckpt"
    ckpt.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(f"cannot read LaMa checkpoint '{ckpt}': not a PyTorch")):
        load_inpainter(folder)
    write_rgb(tmp_path / "a.png", 24, 24)
    write_mask(tmp_path / "m.png", 24, 24, (4, 4, 16, 16))
    out = tmp_path / "out.png"
    assert main(["optimize", str(tmp_path / "a.png"), str(tmp_path / "m.png"), "-o", str(out),
                 "--inpainter", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("paintguard: error: cannot read LaMa checkpoint"), err
    assert not out.exists()


@pytest.mark.parametrize("config,message", [
    ("generator: {kind: ffc_resnet\n", r"is not valid YAML: .* \(line 2, column 1\)$"),
    ("generator: [1, 2]\n", r"^bad generator block in '.*config\.yaml': "),
    ("generator:\n  kind: ffc_resnet\n  init_conv_kwargs: 3\n", r"^bad generator block in '.*config\.yaml': "),
])
def test_malformed_lama_config_is_one_line_naming_the_file(tmp_path, tiny_inpainter, config, message):
    folder = make_lama_dir(tmp_path / "m", tiny_inpainter)
    (folder / "config.yaml").write_text(config)
    with pytest.raises(CheckpointError, match=message) as err:
        load_inpainter(folder)
    assert "\n" not in str(err.value) and "config.yaml" in str(err.value)


@pytest.mark.parametrize("kind,command", [("inpainter", "fit-inpainter export"), ("generator", "train export")])
def test_a_pytorch_checkpoint_given_as_a_paintguard_one_says_how_to_export_it(tmp_path, tiny_inpainter, capsys,
                                                                              kind, command):
    """A training run's last.ckpt passed as --inpainter or --checkpoint: the export to run, not "header too large"."""
    from trainer.commands.cli import main

    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": tiny_inpainter.net.state_dict(), "epoch": 1}, ckpt)
    with pytest.raises(CheckpointError, match=f"is a PyTorch checkpoint, .*'paintguard {command} --ckpt_path CKPT"):
        checkpoint.load(ckpt, kind)
    write_rgb(tmp_path / "a.png", 24, 24)
    write_mask(tmp_path / "m.png", 24, 24, (4, 4, 16, 16))
    out = tmp_path / "out.png"
    option = ["--inpainter", str(ckpt), "--method", "iterative"] if kind == "inpainter" else ["--checkpoint", str(ckpt)]
    assert main(["protect", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png"), "-o", str(out), *option]) == 2
    one_line_error(capsys, f"'{ckpt}' is a PyTorch checkpoint, not a PaintGuard .safetensors one: ")
    assert not out.exists()


@pytest.mark.parametrize("kind,other", [("inpainter", "generator"), ("generator", "inpainter")])
def test_the_other_models_training_checkpoint_is_named_as_such(tmp_path, tiny_inpainter, capsys, kind, other):
    """A generator run's last.ckpt given as --inpainter said to export it with fit-inpainter export, which then
    named train export: the file's own kind is said at once (told by where Lightning keeps its weights)."""
    from trainer.commands.cli import main

    weights = {f"{'net' if other == 'generator' else 'generator'}.{k}": v
               for k, v in tiny_inpainter.net.state_dict().items()}
    if other == "inpainter":
        weights["discriminator.conv.weight"] = torch.zeros(1)  # InpainterModule's other network
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": weights, "hyper_parameters": {}, "pytorch-lightning_version": "2"}, ckpt)
    assert checkpoint.trained_kind(ckpt) == other
    with pytest.raises(CheckpointError, match=f"is a training checkpoint of {checkpoint.article(other)}, not of "
                                              f"{checkpoint.article(kind)}$"):
        checkpoint.load(ckpt, kind)
    # given where its own kind goes, the export that makes it one
    command = "train export" if other == "generator" else "fit-inpainter export"
    with pytest.raises(CheckpointError, match=f"is a PyTorch checkpoint, .*'paintguard {command} --ckpt_path CKPT"):
        checkpoint.load(ckpt, other)
    write_rgb(tmp_path / "a.png", 24, 24)
    write_mask(tmp_path / "m.png", 24, 24, (4, 4, 16, 16))
    option = ["--inpainter", str(ckpt), "--method", "iterative"] if kind == "inpainter" else ["--checkpoint", str(ckpt)]
    assert main(["protect", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png"), "-o",
                 str(tmp_path / "out.png"), *option]) == 2
    one_line_error(capsys, f"'{ckpt}' is a training checkpoint of {checkpoint.article(other)}, not of ")


def test_a_file_of_a_lama_folder_names_the_folder(tmp_path, tiny_inpainter):
    """best.ckpt said only "give a LaMa checkpoint's folder", config.yaml "not a safetensors file ... header too
    large"."""
    folder = make_lama_dir(tmp_path / "my-lama", tiny_inpainter)
    for part in ("config.yaml", "models/best.ckpt"):
        with pytest.raises(CheckpointError, match=f"'{folder / part}' is part of the LaMa model folder '{folder}': "
                                                  "give the folder itself"):
            load_inpainter(folder / part)
