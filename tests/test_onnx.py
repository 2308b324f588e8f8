"""ONNX export and the onnxruntime backend: round trip, agreement with torch, the bound after PNG, errors."""

from __future__ import annotations

import copy
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from generator import Protector
from generator.checkpoint import CheckpointError
from generator.io import read_image
from generator.onnx_backend import MissingExtraError, OnnxGenerator, load_onnx_generator
from generator.onnx_export import export_bytes, export_onnx, random_inputs
from generator.onnx_meta import INPAINTER_KIND, OnnxModelError, fingerprint, read_metadata
from generator.protector import save_generator
from generator.unet import NoiseUNet, UNetConfig
from trainer.commands.cli import main

from .conftest import one_line_error, write_mask, write_rgb

EPS = 0.025
ODD_SIZES = [(1, 23, 41), (2, 50, 17), (1, 16, 16), (1, 97, 33)]


def tiny_generator(path, seed: int = 0):
    """A small U-Net with saturated noise (so the bound binds), saved as a PaintGuard checkpoint."""
    torch.manual_seed(seed)
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4))
    with torch.no_grad():
        net.head[0].weight.normal_(std=10.0)
    return save_generator(net, path), net


@pytest.fixture
def generator(tmp_path):
    return tiny_generator(tmp_path / "g.safetensors")


def test_export_round_trip_and_odd_sizes(tmp_path, generator, capsys):
    path, net = generator
    out = tmp_path / "g.onnx"
    assert main(["export-onnx", str(path), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    meta = read_metadata(out)  # the dependency-free reader agrees with onnx's
    assert {k: props[k] for k in ("eps", "source", "source_sha256")} == \
           {"eps": "0.025", "source": "g.safetensors", "source_sha256": fingerprint(path)}
    assert meta["eps"] == EPS and meta["config"] == net.config.to_dict()
    # dynamic batch, height and width
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert dims == [["batch", 3, "height", "width"], ["batch", 1, "height", "width"], ["batch", 3]]
    runner = OnnxGenerator(out, threads=1)
    generator_ = torch.Generator().manual_seed(3)
    for batch, h, w in ODD_SIZES:
        image, mask, target = random_inputs(batch, h, w, generator_)
        got = runner(image, mask, target)
        assert got.shape == (batch, 3, h, w)
        assert (got - net(image, mask, target)).abs().max() <= 1e-4
        assert got.abs().max() <= EPS + 1e-7  # eps * tanh in float32: 0.025 rounds up to 0.02500000037


def test_default_checkpoint_is_the_shipped_generator(tmp_path, capsys):
    out = tmp_path / "default.onnx"
    assert main(["export-onnx", "-o", str(out)]) == 0
    assert read_metadata(out)["source"] == "generator-lama-tiny.safetensors"


def test_export_errors_are_one_line_and_write_nothing(tmp_path, generator, capsys, monkeypatch):
    path, _ = generator
    assert main(["export-onnx", "nope", "-o", str(tmp_path / "x.onnx")]) == 2
    # either kind exports: the names of both are offered
    one_line_error(capsys, "no checkpoint 'nope': not a file, and not the name of a shipped generator (")
    assert main(["export-onnx", "lama-tny", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "generator-lama-tiny-fast" in capsys.readouterr().err and not list(tmp_path.glob("*.onnx"))
    assert main(["export-onnx", str(path), "-o", str(tmp_path / "x.txt")]) == 2
    one_line_error(capsys, "should end in .onnx")
    assert main(["export-onnx", str(path), "-o", str(tmp_path / "missing" / "x.onnx")]) == 2
    one_line_error(capsys, "does not exist")
    (tmp_path / "afile").write_text("")
    assert main(["export-onnx", str(path), "-o", str(tmp_path / "afile" / "x.onnx")]) == 2
    one_line_error(capsys, f"'{tmp_path / 'afile'}' is a file")
    # a graph that disagrees with PyTorch fails the self-check: here the export of another network
    from generator import onnx_export

    other, _ = tiny_generator(tmp_path / "other.safetensors", seed=1)
    wrong = onnx_export.generator_graph(onnx_export.load_generator(other), "torchscript")
    monkeypatch.setattr(onnx_export, "generator_graph", lambda net, exporter: wrong)
    assert main(["export-onnx", str(path), "-o", str(tmp_path / "bad.onnx")]) == 2
    one_line_error(capsys, "self-check failed: onnxruntime differs from PyTorch by")
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*partial*"))


def test_dynamo_exporter_gives_the_same_model(generator, caplog):
    path, net = generator
    model, worst = export_bytes(path, exporter="dynamo", sizes=((1, 21, 35),))
    assert worst <= 1e-4
    # its registry's note on torchvision's operators, which this project never uses
    assert not [r for r in caplog.records if "torchvision" in r.getMessage()]
    image, mask, target = random_inputs(2, 37, 19, torch.Generator().manual_seed(0))
    assert (OnnxGenerator(model, threads=1)(image, mask, target) - net(image, mask, target)).abs().max() <= 1e-4


def protect(*args) -> int:
    return main(["protect", *map(str, args)])


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_backend_matches_torch_within_one_level_and_keeps_the_bound(tmp_path, generator, capsys):
    path, _ = generator
    src = tmp_path / "in"
    src.mkdir()
    for i, (h, w) in enumerate([(37, 53), (41, 29), (37, 53)]):
        write_rgb(src / f"im{i}.png", h, w, seed=i)
        write_mask(src / f"im{i}_mask.png", h, w, (5, 7, 25, 22))
    outputs = {}
    for backend in ("torch", "onnx"):
        one = tmp_path / f"one-{backend}.png"
        assert protect(src / "im1.png", "--mask", src / "im1_mask.png", "-o", one, "--checkpoint", path,
                       "--backend", backend) == 0
        folder = tmp_path / f"folder-{backend}"
        assert protect(src, "-o", folder, "--checkpoint", path, "--backend", backend, "--batch-size", "2") == 0
        outputs[backend] = [one, *sorted(folder.glob("*.png"))]
    assert "3 images written, 0 failed" in capsys.readouterr().out
    sources = [src / "im1.png", *(src / f"im{i}.png" for i in range(3))]
    for torch_out, onnx_out, source in zip(outputs["torch"], outputs["onnx"], sources):
        assert np.abs(pixels(torch_out) - pixels(onnx_out)).max() <= 1
        moved = (read_image(onnx_out).double() - read_image(source).double()).abs().max().item()
        assert 5 / 255 < moved <= EPS + 1e-9  # the noise is there, and within the bound after the PNG round trip


def test_exported_file_is_checked_against_its_checkpoint(tmp_path, generator, capsys):
    path, _ = generator
    model = tmp_path / "g.onnx"
    export_onnx(path, model)
    write_rgb(tmp_path / "a.png", 30, 34)
    write_mask(tmp_path / "m.png", 30, 34, (3, 3, 12, 20))
    args = ["--mask", tmp_path / "m.png", "--checkpoint", path, "--backend", "onnx"]
    assert protect(tmp_path / "a.png", "-o", tmp_path / "o1.png", *args, "--onnx-model", model) == 0
    # an .onnx file as the checkpoint works too
    assert protect(tmp_path / "a.png", "-o", tmp_path / "o2.png", "--mask", tmp_path / "m.png",
                   "--checkpoint", model, "--backend", "onnx") == 0
    assert np.array_equal(pixels(tmp_path / "o1.png"), pixels(tmp_path / "o2.png"))
    capsys.readouterr()
    tiny_generator(path, seed=5)  # the checkpoint changes: the export is now stale
    assert protect(tmp_path / "a.png", "-o", tmp_path / "o3.png", *args, "--onnx-model", model) == 2
    err = one_line_error(capsys, "is stale: it was exported from an older version of")
    assert err.endswith(f"rebuild it with 'paintguard export-onnx {path} -o {model} --overwrite'")
    assert not (tmp_path / "o3.png").exists()
    # an .onnx checkpoint without --backend onnx: said so, not safetensors' "header too large"
    assert protect(tmp_path / "a.png", "-o", tmp_path / "o5.png", "--mask", tmp_path / "m.png",
                   "--checkpoint", model) == 2
    assert one_line_error(capsys, "is an ONNX export").endswith(
        f"'{model}' is an ONNX export, not a safetensors checkpoint; pass --backend onnx to run it")
    assert not (tmp_path / "o5.png").exists()
    with pytest.raises(ValueError, match="only applies to backend='onnx'"):
        Protector.from_checkpoint(path, onnx_model=model)
    assert protect(tmp_path / "a.png", "-o", tmp_path / "o4.png", *args[:4], "--onnx-model", model) == 2
    one_line_error(capsys, "--onnx-model needs --backend onnx")


def test_an_onnx_alone_is_checked_against_the_shipped_checkpoint_it_came_from(tmp_path, monkeypatch):
    shipped_dir, own_dir = tmp_path / "checkpoints", tmp_path / "runs"
    shipped_dir.mkdir(), own_dir.mkdir()
    monkeypatch.setenv("PAINTGUARD_CHECKPOINTS", str(shipped_dir))
    shipped, _ = tiny_generator(shipped_dir / "g.safetensors", seed=0)
    own, _ = tiny_generator(own_dir / "g.safetensors", seed=1)  # one's own generator, under a shipped one's name
    export_onnx(shipped, tmp_path / "shipped.onnx")
    export_onnx(own, tmp_path / "own.onnx")
    assert read_metadata(tmp_path / "shipped.onnx")["source_shipped"] == "true"
    assert read_metadata(tmp_path / "own.onnx")["source_shipped"] == "false"
    load_onnx_generator(tmp_path / "own.onnx")  # not "stale" against the shipped g.safetensors: taken as it is
    load_onnx_generator(tmp_path / "shipped.onnx")
    tiny_generator(shipped, seed=5)  # the shipped checkpoint changes
    with pytest.raises(OnnxModelError, match=f"is stale: it was exported from an older version of '{shipped}'"):
        load_onnx_generator(tmp_path / "shipped.onnx")
    load_onnx_generator(tmp_path / "own.onnx")


def test_export_of_another_checkpoint_is_not_called_stale(tmp_path, generator, capsys):
    path, _ = generator
    model = tmp_path / "g.onnx"
    export_onnx(path, model)
    other, _ = tiny_generator(tmp_path / "other.safetensors", seed=1)
    write_rgb(tmp_path / "a.png", 20, 20)
    write_mask(tmp_path / "m.png", 20, 20, (2, 2, 9, 9))
    assert protect(tmp_path / "a.png", "--mask", tmp_path / "m.png", "-o", tmp_path / "o.png", "--checkpoint", other,
                   "--backend", "onnx", "--onnx-model", model) == 2
    err = one_line_error(capsys, f"'{model}' was exported from another checkpoint ('g.safetensors'), "
                                 f"not from '{other}'")
    assert "stale" not in err and "rebuild" not in err and "export-onnx" not in err  # a rebuild would replace it
    assert not (tmp_path / "o.png").exists()


def test_export_refuses_an_existing_output_without_overwrite(tmp_path, generator, capsys):
    path, _ = generator
    out = tmp_path / "g.onnx"
    out.write_bytes(b"someone's file")
    assert main(["export-onnx", str(path), "-o", str(out)]) == 2
    one_line_error(capsys, f"output '{out}' exists; pass --overwrite to replace it")
    assert out.read_bytes() == b"someone's file"
    assert main(["export-onnx", str(path), "-o", str(out), "--overwrite"]) == 0
    assert read_metadata(out)["source"] == "g.safetensors"
    with pytest.raises(ValueError, match="exists; pass --overwrite"):  # the Python function refuses as well
        export_onnx(path, out)
    out.write_bytes(b"someone's file")
    export_onnx(path, out, overwrite=True)
    assert read_metadata(out)["source"] == "g.safetensors"


def test_bad_models_are_refused(tmp_path, generator, capsys, monkeypatch):
    path, _ = generator
    model = tmp_path / "g.onnx"
    export_onnx(path, model)
    bare = onnx.load(str(model))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(OnnxModelError, match="not a PaintGuard generator export"):
        OnnxGenerator(tmp_path / "bare.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model")
    with pytest.raises(OnnxModelError, match="cannot load ONNX model"):
        OnnxGenerator(tmp_path / "junk.onnx")
    inpainter = tmp_path / "inp.safetensors"
    from generator import checkpoint

    checkpoint.save({"w": torch.zeros(1)}, inpainter, "inpainter", {})
    with pytest.raises(CheckpointError, match="expected a checkpoint of kind 'generator'"):
        Protector.from_checkpoint(inpainter, backend="onnx")
    with monkeypatch.context() as patch:  # a GPU this torch has, as on a CUDA build: the backend is what refuses it
        patch.setattr("generator.protector.check_device", torch.device)
        with pytest.raises(ValueError, match="runs on the CPU"):
            Protector.from_checkpoint(path, backend="onnx", device="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        Protector.from_checkpoint(path, backend="tensorrt")


def test_python_api_protects_any_image_kind_with_onnx(generator):
    path, _ = generator
    torch_p, onnx_p = Protector.from_checkpoint(path), Protector.from_checkpoint(path, backend="onnx")
    assert onnx_p.eps == EPS
    image = np.random.default_rng(0).integers(0, 256, (45, 31, 3), np.uint8)
    mask = np.zeros((45, 31), np.uint8)
    mask[10:30, 5:20] = 1
    a, b = torch_p.protect(image, mask), onnx_p.protect(image, mask)
    assert b.dtype == np.uint8 and np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.abs(b.astype(int) - image.astype(int)).max() <= EPS * 255


@pytest.mark.parametrize("package", ["onnxruntime", "onnx"])
def test_missing_extra_names_the_install_command(tmp_path, generator, capsys, monkeypatch, package):
    path, _ = generator
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    install = r"pip install -e \"\.\[onnx\]\" in PaintGuard's folder"
    with pytest.raises(MissingExtraError, match=rf"'{package}' package: {install}"):
        Protector.from_checkpoint(path, backend="onnx")
    write_rgb(tmp_path / "a.png", 20, 20)
    write_mask(tmp_path / "m.png", 20, 20, (2, 2, 9, 9))
    assert protect(tmp_path / "a.png", "--mask", tmp_path / "m.png", "-o", tmp_path / "o.png",
                   "--checkpoint", path, "--backend", "onnx") == 2
    one_line_error(capsys, "pip install -e \".[onnx]\" in PaintGuard's folder")
    assert not (tmp_path / "o.png").exists()
    assert main(["export-onnx", str(path), "-o", str(tmp_path / "g.onnx")]) == 2
    one_line_error(capsys, "pip install -e \".[onnx]\" in PaintGuard's folder")


@pytest.mark.parametrize("head_rank", [1.0, 0.5])
def test_generator_reading_encoder_features_exports_the_same_function(tmp_path, tiny_inpainter, capsys, head_rank):
    # the encoder head's frozen layers run once per pass and feed both the U-Net and the head: the traced graph
    # must keep both uses (at any size, since the export traces one graph); a low-rank head exports its factors
    net = NoiseUNet(UNetConfig(widths=[8, 16, 16, 32], groups=4, head="stem-gradient", stem_channels=8,
                               head_layers=4, encoder_features=True, head_rank=head_rank))
    net.target_encoder.copy_layers(tiny_inpainter.encoder_layers(4))
    with torch.no_grad():
        net.head[0].weight.normal_(std=0.3)
        net.feature_proj.weight.normal_(std=0.3)
    path = save_generator(net, tmp_path / "f.safetensors")
    out = tmp_path / "f.onnx"
    assert main(["export-onnx", str(path), "-o", str(out)]) == 0
    runner = OnnxGenerator(out, threads=1)
    gen = torch.Generator().manual_seed(5)
    for batch, h, w in [(1, 50, 37), (2, 64, 64)]:
        image, mask, target = random_inputs(batch, h, w, gen)
        expected = net(image, mask, target)
        assert expected.abs().max() > 0.5 * EPS
        assert (runner(image, mask, target) - expected).abs().max() <= 1e-4


def test_generator_with_fourier_context_exports_with_both_exporters(tmp_path, capsys):
    # torch.fft has no ONNX form the web's onnxruntime runs: the export traces it as DFT matrix products,
    # built from the runtime size, so any size and batch must still match PyTorch
    torch.manual_seed(0)
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4, global_context="fourier"))
    with torch.no_grad():
        net.context.out.weight.normal_(std=1.0)  # zero at init: the block must act for the check to mean anything
        net.head[0].weight.normal_(std=3.0)
    path = save_generator(net, tmp_path / "fourier.safetensors")
    out = tmp_path / "fourier.onnx"
    assert main(["export-onnx", str(path), "-o", str(out)]) == 0
    image, mask, target = random_inputs(2, 37, 19, torch.Generator().manual_seed(0))
    expected = net(image, mask, target)
    local = copy.deepcopy(net)
    with torch.no_grad():
        local.context.out.weight.zero_()
    assert (local(image, mask, target) - expected).abs().max() > 0.2 * EPS  # the global block matters
    assert (OnnxGenerator(out, threads=1)(image, mask, target) - expected).abs().max() <= 1e-4
    model, worst = export_bytes(path, exporter="dynamo", sizes=((2, 21, 35),))
    assert worst <= 1e-4


def test_an_export_onnxruntime_cannot_run_is_a_one_line_error(tmp_path, generator, capsys, monkeypatch):
    path, _ = generator

    import onnxruntime

    def fail(self, outputs, feeds):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : a kernel\nfailed")

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", fail)
    assert main(["export-onnx", str(path), "-o", str(tmp_path / "x.onnx")]) == 2
    one_line_error(capsys, "self-check failed: onnxruntime cannot run the export on a 37x53 batch of 1")
    assert not list(tmp_path.glob("*.onnx"))


def test_an_inpainter_exports_as_lamas_inference(tmp_path, inpainter_file, tiny_inpainter, capsys):
    """The web page's editor view runs an inpainter export: (image, mask) -> the fill in the mask, the image
    outside it, at any size (the padding to the network's multiple is in the graph); it is no generator."""
    out = tmp_path / "inpainter.onnx"
    assert main(["export-onnx", inpainter_file, "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    meta = read_metadata(out, INPAINTER_KIND)
    assert meta["kind"] == "inpainter-onnx" and meta["source_sha256"] == fingerprint(inpainter_file)
    assert meta["config"] == tiny_inpainter.config.to_dict() and "eps" not in meta
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "mask"]
    for batch, h, w in [(1, 29, 45), (2, 32, 24), (1, 57, 19)]:  # odd, a multiple of 8 already, tall
        image, mask, _ = random_inputs(batch, h, w, torch.Generator().manual_seed(h))
        with torch.no_grad():
            expected = tiny_inpainter(image, mask)
        (got,) = session.run(None, {"image": image.numpy(), "mask": mask.numpy()})
        assert got.shape == (batch, 3, h, w) and np.abs(got - expected.numpy()).max() < 1e-4
        assert np.array_equal(got[(mask.expand_as(image) == 0).numpy()], image[mask.expand_as(image) == 0].numpy())
    # the torch.export-based exporter gives the same function (it had no remainder by a symbolic size)
    _, worst = export_bytes(inpainter_file, exporter="dynamo", sizes=((1, 21, 35),))
    assert worst <= 1e-4
    # a generator's loaders refuse it by what it is
    with pytest.raises(OnnxModelError, match="is an export of an inpainter, not of a generator"):
        read_metadata(out)
    with pytest.raises(OnnxModelError, match="is an export of an inpainter, not of a generator"):
        OnnxGenerator(out, threads=1)
