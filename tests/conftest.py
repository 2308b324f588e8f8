"""Shared fixtures: tiny inpainters and image files, all made on the fly (nothing downloaded)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from generator.protector import save_generator
from generator.unet import NoiseUNet, UNetConfig
from trainer.inpainting.ffc import FFCResNetConfig
from trainer.inpainting.inpainter import Inpainter, build_inpainter, save_inpainter

ROOT = Path(__file__).resolve().parents[1]

TINY = FFCResNetConfig(ngf=8, n_downsampling=3, n_blocks=1)
ERROR = "paintguard: error: "


def header_chains(config: Path, command: str) -> list[list[Path]]:
    """The ``--config`` chain of every ``command`` (e.g. "paintguard train") in a config's comment lines, in order."""
    header = "\n".join(line.lstrip("# ") for line in config.read_text().splitlines() if line.startswith("#"))
    return [[ROOT / p for p in re.findall(r"--config (\S+)", c)]
            for c in header.replace("\\\n", " ").split(command)[1:]]


@pytest.fixture(autouse=True)
def _offline_and_one_thread(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    # tiny tensors: a second OpenMP thread only adds synchronisation, which a busy shared CPU makes very slow
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reactive_inpainter(seed: int) -> Inpainter:
    """A random FFC-ResNet, small enough for CPU tests, with BatchNorm gains raised so it reacts to its input."""
    inpainter = build_inpainter(TINY, seed=seed)
    with torch.no_grad():
        for module in inpainter.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.mul_(4)
    return inpainter


@pytest.fixture
def tiny_inpainter() -> Inpainter:
    """Seed 0's reactive tiny inpainter."""
    return reactive_inpainter(0)


@pytest.fixture
def inpainter_file(tmp_path, tiny_inpainter) -> str:
    """The tiny inpainter saved as a PaintGuard checkpoint (a path to give where a name or file is taken)."""
    return str(save_inpainter(tiny_inpainter, tmp_path / "inpainter.safetensors"))


class SteerableInpainter(nn.Module):
    """A toy inpainter with a high gain: it fills the hole with an amplified function of the known pixels.

    Real trained inpainters are what PaintGuard attacks; this one only checks that the
    optimiser follows the gradient of the objective.
    """

    def __init__(self, gain: float = 40.0) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hole = (mask > 0).to(image.dtype)
        known = image * (1 - hole)
        mean = known.sum(dim=(2, 3), keepdim=True) / (1 - hole).sum(dim=(2, 3), keepdim=True).clamp_min(1)
        pred = torch.sigmoid(self.gain * (mean - 0.5)).expand_as(image)
        return hole * pred + (1 - hole) * image


@pytest.fixture
def steerable_inpainter() -> nn.Module:
    return SteerableInpainter()


def write_rgb(path, h: int, w: int, seed: int = 0) -> np.ndarray:
    """A random 8-bit RGB PNG; returns its pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def write_mask(path, h: int, w: int, box: tuple[int, int, int, int]) -> None:
    """A binary mask PNG with one filled box (top, left, bottom, right)."""
    m = np.zeros((h, w), dtype=np.uint8)
    t, l, b, r = box
    m[t:b, l:r] = 255
    Image.fromarray(m).save(path)


def write_image_and_mask(folder: Path) -> tuple[Path, Path, np.ndarray]:
    """img.png (a random 40x52 RGB image) and img_mask.png (a box) in ``folder``, and the image's pixels."""
    image, mask = folder / "img.png", folder / "img_mask.png"
    pixels = write_rgb(image, 40, 52)
    write_mask(mask, 40, 52, (10, 12, 28, 40))
    return image, mask, pixels


@pytest.fixture
def files(tmp_path, tiny_inpainter) -> tuple[Path, Path, Path, np.ndarray]:
    """An image, its mask and the tiny inpainter's checkpoint in tmp_path, for the one-image commands; the pixels."""
    image, mask, pixels = write_image_and_mask(tmp_path)
    return image, mask, save_inpainter(tiny_inpainter, tmp_path / "inp.safetensors"), pixels


@pytest.fixture
def generator_path(tmp_path):
    """A tiny generator checkpoint whose noise saturates: the bound is tested where it binds."""
    torch.manual_seed(0)
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4))
    with torch.no_grad():
        net.head[0].weight.normal_(std=10.0)
    return save_generator(net, tmp_path / "g.safetensors")


@pytest.fixture
def pair(tmp_path):
    image, mask = tmp_path / "img.png", tmp_path / "img_mask.png"
    write_rgb(image, 40, 52)
    write_mask(mask, 40, 52, (10, 12, 28, 40))
    return image, mask


@pytest.fixture(params=[True, False], ids=["native", "emulated"])
def native(request, monkeypatch):
    """This CPU as one with bfloat16 instructions, or as one without (which emulates them)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: request.param)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return request.param


@pytest.fixture
def ci_config(tmp_path, tiny_inpainter) -> Path:
    """configs/ci.yaml with every path moved under tmp_path and the tiny test inpainter."""
    inpainter = save_inpainter(tiny_inpainter, tmp_path / "inpainter.safetensors")
    config = yaml.safe_load((ROOT / "configs" / "ci.yaml").read_text())
    config["model"]["inpainter"] = str(inpainter)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    config["trainer"]["default_root_dir"] = str(tmp_path)
    path = tmp_path / "ci.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def offline_run(tmp_path) -> Path:
    runs = sorted((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert runs, "no offline W&B run was written"
    return runs[-1]


def masked_batch(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded mid-grey images with a box mask each (the first image's box differs from the others')."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(n, 3, size, size, generator=g) * 0.5 + 0.25
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, 8:20, 6:24] = 1
    mask[1:, :, 14:30, 2:12] = 1
    return image, mask


@pytest.fixture
def checkpoints(tmp_path, monkeypatch, tiny_inpainter):
    """For the compare tests: tiny stand-ins for the shipped lama-tiny and generator-lama-tiny, plus a second inpainter for transfer."""
    folder = tmp_path / "checkpoints"
    save_inpainter(tiny_inpainter, folder / "lama-tiny.safetensors")
    save_inpainter(build_inpainter(TINY, seed=1), folder / "other-inpainter.safetensors")
    torch.manual_seed(0)
    net = NoiseUNet(UNetConfig(widths=[8, 16], groups=4))
    with torch.no_grad():
        net.head[0].weight.normal_(std=0.5)  # an untrained generator emits almost no noise: make it visible
    save_generator(net, folder / "generator-lama-tiny.safetensors")
    monkeypatch.setenv("PAINTGUARD_CHECKPOINTS", str(folder))
    # the machine may be shared: one thread keeps these tiny models from fighting over the cores
    torch.set_num_threads(1)
    return folder


@pytest.fixture
def printed_warnings(monkeypatch):
    """Warnings printed on stderr as a plain run prints them (pytest records them instead), in the format the
    command sets, every time."""
    import sys
    import warnings

    monkeypatch.setattr(warnings, "showwarning", lambda message, category, filename, lineno, file=None, line=None:
                        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line)))
    monkeypatch.setattr(warnings, "filters", [("always", None, Warning, None, 0)])


def one_line_error(capsys, pattern: str = "", logs_before: bool = False) -> str:
    """The message of the one error line a refused command printed on stderr, with ``pattern`` in it. Nothing else
    may be there, or with ``logs_before`` only lines before it (Lightning logs "Seed set to 0" as a fit starts)."""
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert lines and lines[-1].startswith(ERROR) and pattern in lines[-1], err
    assert len(lines) == 1 or logs_before and not any(line.startswith(ERROR) for line in lines[:-1]), err
    return lines[-1].removeprefix(ERROR)


# --- the web page in a browser (tests/test_web*.py) ---

@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, for the web page's tests; skipped, saying why, where there is none."""
    from generator.web_browser import find_chromium, launch_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium found: install Debian's chromium (apt-get install chromium) to test the web page")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site():
    """The built page (``make web``), served in the background: its address."""
    from generator.web_browser import serve_in_background
    from generator.web_server import SITE, address, check_site

    try:
        check_site(SITE)
    except ValueError as err:
        pytest.fail(f"{err} (make test builds it)")
    server = serve_in_background(SITE)
    yield address(server)
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(browser, site):
    from .web_page import Page  # it imports this module's helpers

    page = Page(browser, site)
    yield page
    assert not page.errors, page.errors  # no uncaught exception in the page
    page.close()
