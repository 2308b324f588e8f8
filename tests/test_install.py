"""PaintGuard installed as a package (a wheel, as `pip install .` builds it), used from a folder outside the clone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import ROOT

# what a wheel is built from: the code, what pyproject.toml's data-files name, and the page when make built it
MINE = "mine.safetensors"
SOURCES = ("pyproject.toml", "README.md", "generator", "trainer", "checkpoints", "configs", "web/dist")


def pip(*args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A wheel of this tree installed under its own prefix, and the environment that puts it first on the path."""
    tmp = tmp_path_factory.mktemp("install")
    yield _install(tmp)
    shutil.rmtree(tmp, ignore_errors=True)  # about 350 MB: the tree, the wheel and the install


def _install(tmp: Path) -> dict:
    tree = tmp / "tree"
    tree.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", ".*"))
        elif (ROOT / name).exists():
            shutil.copy(ROOT / name, tree / name)
    # no build isolation: it would fetch setuptools from the network; the dev extra installs it
    pip("wheel", "--no-deps", "--no-build-isolation", str(tree), "-w", str(tmp / "wheel"))
    wheel, = (tmp / "wheel").glob("paintguard-*.whl")
    prefix = tmp / "prefix"
    # --ignore-installed: with --prefix alone pip uninstalls the paintguard this suite runs from (make's editable one)
    pip("install", "--no-deps", "--ignore-installed", "--prefix", str(prefix), str(wheel))
    pip("show", "paintguard")  # still there
    site, = prefix.glob("lib/python*/site-packages")
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PAINTGUARD_CHECKPOINTS", None)
    work = tmp / "work"  # the user's own folder: no checkpoints/, configs/ or web/ in it
    work.mkdir()
    return {"prefix": prefix, "site": site, "env": env, "work": work}


def run_python(installed: dict, code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=installed["work"], env=installed["env"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_installed_package_finds_its_shipped_files(installed):
    found = json.loads(run_python(installed, (
        "import json, generator, generator.checkpoint as c, generator.web_server as w, trainer.commands.demo as d\n"
        "print(json.dumps({'package': generator.__file__, 'checkpoints': str(c.checkpoints_dir()), "
        "'names': c.available(), 'site': str(w.SITE), 'demo': str(d.DEMO_CONFIG)}))")))
    share = (installed["prefix"] / "share" / "paintguard").resolve()
    assert Path(found["package"]).is_relative_to(installed["site"])  # not the clone's editable install
    assert Path(found["checkpoints"]) == share / "checkpoints"
    shipped = sorted(p.name.removesuffix(".safetensors") for p in (ROOT / "checkpoints").glob("*.safetensors"))
    assert sorted(found["names"]) == shipped
    assert Path(found["site"]) == share / "web" / "dist"
    assert Path(found["demo"]) == share / "configs" / "generator" / "demo.yaml" and Path(found["demo"]).is_file()
    said = subprocess.run([str(installed["prefix"] / "bin" / "paintguard"), "--version"], cwd=installed["work"],
                          env=installed["env"], capture_output=True, text=True, timeout=120)
    version = re.search(r'(?m)^version = "(.+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert said.stdout == f"paintguard {version} ({share})\n", said
    configs = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml"))
    assert sorted(p.relative_to(share).as_posix() for p in (share / "configs").rglob("*.yaml")) == configs


def test_the_installed_command_protects_by_shipped_name(installed):
    work = installed["work"]
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(work / "photo.png")
    mask = np.zeros((64, 80), np.uint8)
    mask[20:40, 30:50] = 255
    Image.fromarray(mask).save(work / "photo_mask.png")
    command = [str(installed["prefix"] / "bin" / "paintguard"), "protect", "photo.png", "--mask", "photo_mask.png",
               "-o", "out.png"]
    out = subprocess.run(command, cwd=work, env=installed["env"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert Image.open(work / "out.png").size == (80, 64)
    run_python(installed, "from generator import Protector\n"
                          "fast = Protector.from_checkpoint('generator-lama-tiny-fast')\n"
                          "fast.protect('photo.png', 'photo_mask.png')")


def test_the_installed_page_is_the_built_one(installed):
    """A wheel built after `make web` carries the page; `paintguard web` serves it without --root."""
    from generator.web_server import check_site

    try:
        built = sorted(check_site())
    except ValueError as err:
        pytest.fail(f"{err} (make test builds it)")
    said = run_python(installed, "from generator.web_server import check_site\nprint(sorted(check_site()))")
    assert said.strip() == str(built)


def test_an_install_without_the_page_says_where_to_build_it(tmp_path, monkeypatch):
    from generator import web_server

    monkeypatch.setattr(web_server, "in_clone", lambda: False)
    with pytest.raises(web_server.SiteError) as err:
        web_server.check_site(tmp_path)
    assert str(err.value).endswith("run 'make web' in a PaintGuard clone and install from it again, or pass --root")


def test_the_data_folder_is_found_through_a_linked_lib_folder(installed, tmp_path):
    """pip writes the data beside the prefix's lib folder as spelled, which a link (a Homebrew Cellar's) may lead
    elsewhere: resolving the link would look for the data where there is none."""
    prefix, linked = installed["prefix"], tmp_path / "linked"
    linked.mkdir()
    (linked / "lib").symlink_to(prefix / "lib")
    (prefix / "share").rename(linked / "share")
    try:
        site = linked / installed["site"].relative_to(prefix)
        out = subprocess.run([sys.executable, "-c", "import generator.resources as r; print(r.project_root())"],
                             cwd=installed["work"], env={**installed["env"], "PYTHONPATH": str(site)},
                             capture_output=True, text=True, timeout=120)
    finally:
        (linked / "share").rename(prefix / "share")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(linked / "share" / "paintguard")


def test_of_two_installs_on_the_path_the_running_one_has_the_data(installed, tmp_path):
    """Another paintguard ahead on the path (its metadata and data, but the packages run from the test's prefix):
    taking the first distribution found would give the other install's data folder."""
    other = tmp_path / "other"
    site = other / installed["site"].relative_to(installed["prefix"])
    dist_info, = installed["site"].glob("paintguard-*.dist-info")
    shutil.copytree(dist_info, site / dist_info.name)  # its RECORD lists generator/ and the data, as a real one's
    (other / "share" / "paintguard" / "checkpoints").mkdir(parents=True)
    path = os.pathsep.join([str(site), str(installed["site"])])
    out = subprocess.run([sys.executable, "-c", "import importlib.metadata as m, generator.resources as r; "
                          "print(len(list(m.distributions(name='paintguard'))), r.project_root())"],
                         cwd=installed["work"], env={**installed["env"], "PYTHONPATH": path},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found, root = out.stdout.split()
    assert int(found) >= 2  # both, the other one first
    assert Path(root) == (installed["prefix"] / "share" / "paintguard").resolve()


def test_a_missing_extra_names_its_packages_where_there_is_no_clone_to_install_from(monkeypatch):
    from generator import resources

    assert resources.extra_hint("onnx") == "pip install -e \".[onnx]\" in PaintGuard's folder"
    monkeypatch.setattr(resources, "in_clone", lambda: False)
    # pyproject.toml's onnx extra, quoted for the shell
    assert resources.extra_hint("onnx") == "pip install 'onnxruntime>=1.17' 'onnx>=1.15' 'onnxscript>=0.2'"


def test_a_config_named_as_in_the_clone_is_the_shipped_one_from_any_folder(tmp_path, monkeypatch, capsys):
    from generator import resources
    from trainer.commands.cli import main

    from .test_compare_out import quick_config

    project = tmp_path / "project"
    (project / "configs" / "compare").mkdir(parents=True)
    quick_config(project / "configs" / "compare")
    monkeypatch.setattr(resources, "project_root", lambda: project)
    monkeypatch.setenv("PAINTGUARD_CHECKPOINTS", str(ROOT / "checkpoints"))  # the shipped names as before
    monkeypatch.chdir(tmp_path)
    (project / "README.md").write_text("not a config")
    for name in ("configs/compare/missing.yaml", "README.md", "configs/../README.md"):  # only configs, and no ..
        assert resources.own_file(name) == Path(name)
    assert capsys.readouterr().err == ""
    assert main(["compare", "--config", "configs/compare/quick.yaml", "--out", "out"]) == 0
    note = f"paintguard: note: no 'configs/compare/quick.yaml' here: using PaintGuard's own, " \
           f"'{project / 'configs/compare/quick.yaml'}'"
    assert capsys.readouterr().err.splitlines()[0] == note
    assert (tmp_path / "out" / "report.md").is_file()
    # a file of that name in the working folder is the one meant: no note
    (tmp_path / "configs" / "compare").mkdir(parents=True)
    mine = quick_config(tmp_path / "configs" / "compare")
    assert resources.own_file("configs/compare/quick.yaml") == Path("configs/compare/quick.yaml")
    assert resources.own_file(mine) == mine and capsys.readouterr().err == ""


def test_training_configs_named_as_in_the_clone_work_from_any_folder(tmp_path, monkeypatch, capsys):
    from trainer.commands.cli import main
    from trainer.training.lightning_cli import own_configs

    monkeypatch.chdir(tmp_path)
    base, overlay = "configs/generator/lama-tiny.yaml", "configs/generator/lama-tiny-256.yaml"
    assert own_configs(["fit", f"--config={base}", "-c", overlay, "--model.lr", "0.1"]) == [
        "fit", f"--config={ROOT / base}", "-c", str(ROOT / overlay), "--model.lr", "0.1"]
    # YAML given inline, paths of other forms and names too long for a path are left exactly as they are
    inline = ['{"trainer": {"default_root_dir": "s3://bucket/x"}}', "configs/generator/", "", "./x.yaml",
              "configs/../configs/generator/demo.yaml", "configs/" + "x" * 300 + ".yaml"]
    for value in inline:
        assert own_configs(["fit", "--config", value]) == ["fit", "--config", value]
    capsys.readouterr()
    assert main(["train", "fit", "--config", base, "--config", overlay, "--print_config"]) == 0
    out = capsys.readouterr()
    assert "\n  size: 256\n" in out.out and f"using PaintGuard's own, '{ROOT / overlay}'" in out.err


def test_a_name_exported_into_checkpoints_here_outside_the_clone_says_to_pass_its_path(tmp_path, monkeypatch):
    from generator import Protector
    from generator.checkpoint import CheckpointError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(ROOT / "checkpoints" / "generator-lama-tiny-fast.safetensors", tmp_path / "checkpoints" / MINE)
    for name in ("mine", MINE):
        with pytest.raises(CheckpointError, match="; 'checkpoints/mine.safetensors' is a file of the working folder: "
                                                  "pass its path$"):
            Protector.from_checkpoint(name)
    Protector.from_checkpoint(f"checkpoints/{MINE}")


def test_the_configs_checkpoints_path_is_the_shipped_file_from_any_folder(tmp_path, monkeypatch):
    """Configs name shipped generators as the clone spells them, checkpoints/NAME.safetensors (init_from)."""
    from generator.checkpoint import CheckpointError, resolve

    monkeypatch.chdir(tmp_path)
    shipped = ROOT / "checkpoints" / "generator-lama-tiny.safetensors"
    assert resolve("checkpoints/generator-lama-tiny.safetensors", "generator") == shipped
    with pytest.raises(CheckpointError):
        resolve("elsewhere/generator-lama-tiny.safetensors", "generator")
