"""The architecture, as the tree shows it: layers that import only downwards, small modules, a public API."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

# what each package of trainer/ may import from trainer (besides itself); generator/ only lazily
ALLOWED = {
    "inpainting": set(),
    "objective": set(),
    "data": set(),
    "evaluation": {"inpainting", "objective", "data"},
    "training": {"inpainting", "objective", "data", "evaluation"},
    "commands": {"inpainting", "objective", "data", "evaluation", "training"},
}
MAX_LINES = 420  # "about 400": a module past it says why in its docstring


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(tree: ast.AST, top_level_only: bool) -> list[str]:
    """Absolute module names imported in ``tree`` (only the statements at module level with ``top_level_only``)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_every_trainer_module_sits_in_a_package():
    loose = [p.name for p in (ROOT / "trainer").glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert {p.name for p in (ROOT / "trainer").iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_trainer_layers_import_only_downwards(package):
    for path in modules(f"trainer/{package}"):
        for name in imported(ast.parse(path.read_text()), top_level_only=False):
            parts = name.split(".")
            if parts[0] == "trainer" and len(parts) > 1 and parts[1] != package:
                assert parts[1] in ALLOWED[package], f"{path.relative_to(ROOT)} imports {name}"


def test_generator_imports_trainer_only_lazily():
    for path in modules("generator"):
        tree = ast.parse(path.read_text())
        eager = [n for n in imported(tree, top_level_only=True) if n.split(".")[0] == "trainer"]
        assert eager == [], f"{path.relative_to(ROOT)} imports {eager} at module level"


def test_modules_stay_small_or_say_why():
    long = []
    for package in ("generator", "trainer"):
        for path in modules(package):
            lines = len(path.read_text().splitlines())
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            if lines > MAX_LINES and "longer than" not in doc:
                long.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert long == [], "modules above ~400 lines must say why in their docstring ('longer than ...')"


def test_public_api_at_package_level():
    import generator
    import trainer

    for name in generator.__all__:
        assert getattr(generator, name) is not None
    for name in trainer.__all__:
        value = getattr(trainer, name)
        assert value is getattr(importlib.import_module(trainer._EXPORTS[name]), name)
    with pytest.raises(AttributeError):
        trainer.no_such_name  # noqa: B018
    assert dir(trainer) == trainer.__all__  # each public name once, not the module's own imports
    # the README's list of the public API is the packages' exports, no more and no fewer
    listed = (ROOT / "README.md").read_text().split("The public API is what the two packages export")[1]
    generator_part, trainer_part = listed.split("`trainer` loads them lazily")[0].split("`trainer`:")
    assert set(re.findall(r"`(\w+)`", generator_part.split("`generator`:")[1])) == set(generator.__all__)
    assert set(re.findall(r"`(\w+)`", trainer_part)) - {"generator"} == set(trainer.__all__)


def test_importing_trainer_loads_no_lightning():
    """The public API is lazy: `paintguard protect` must not pay for Lightning's import."""
    code = "import sys, trainer, generator; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_paths_a_module_finds_beside_its_own_file_exist():
    """Modules that locate repository files from ``__file__`` broke silently when they moved."""
    from generator import checkpoint
    from trainer.commands import demo

    assert demo.DEMO_CONFIG.is_file()
    assert checkpoint.resolve("generator-lama-tiny", "generator").is_file()
