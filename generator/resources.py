"""Where PaintGuard's shipped files are: the checkpoints, the configs and the built web page.

In a clone (and its editable install, which ``make`` makes) they lie beside the packages. A wheel or a plain
``pip install`` carries them as data files under ``<prefix>/share/paintguard`` (pyproject.toml's data-files),
which the installed distribution's file list locates, whatever the prefix (a venv, ``--user``, ``--prefix``).
"""
from __future__ import annotations

import functools
import os
import re
import sys
from importlib import metadata
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = "share/paintguard"


def _pyproject(key: str) -> str | None:
    """A top-level ``key = "value"`` of the pyproject.toml beside the packages: a clone's (a wheel installs none)."""
    try:
        text = (SOURCE_ROOT / "pyproject.toml").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    found = re.search(rf'(?m)^{key}\s*=\s*"([^"]+)"', text)
    return found.group(1) if found else None


@functools.cache
def in_clone() -> bool:
    """Whether this code runs from a clone of PaintGuard (its own tree), not from an installed copy."""
    return _pyproject("name") == "paintguard"  # another package's stray pyproject.toml names another project


@functools.cache
def project_root() -> Path:
    """The folder holding ``checkpoints/``, ``configs/`` and ``web/dist``: the clone, or the installed data folder.

    Falls back to the folder above the package, so that a message names where the files were looked for."""
    if in_clone():
        return SOURCE_ROOT
    # several paintguard installs may be on the path: the one whose packages are running is the one that counts
    for dist in metadata.distributions(name="paintguard"):
        files = dist.files or []
        if not any(f.as_posix() == "generator/__init__.py" and Path(dist.locate_file(f)).resolve().parents[1]
                   == SOURCE_ROOT for f in files):
            continue
        for file in files:
            posix = file.as_posix()
            at = posix.find(DATA_DIR + "/")
            # normpath, not resolve: the record's "../../../share" counts from site-packages as the path spells it,
            # which may run through a link (a Homebrew Cellar's) that resolve() would follow elsewhere
            data = Path(os.path.normpath(dist.locate_file(posix[:at + len(DATA_DIR)]))) if at >= 0 else None
            if data is not None and data.is_dir():
                return data
    return SOURCE_ROOT


def version() -> str:
    """PaintGuard's version: the installed distribution's, or in a clone run without installing, its pyproject's."""
    found = _pyproject("version") if in_clone() else None
    if found:
        return found
    try:
        return metadata.version("paintguard")
    except metadata.PackageNotFoundError:
        return "unknown"


def project_path(*parts: str) -> Path:
    """A shipped file or folder, e.g. ``project_path("configs", "generator", "demo.yaml")``."""
    return project_root().joinpath(*parts)


def extra_hint(extra: str) -> str:
    """The command that installs one of PaintGuard's optional extras, for a clone or for an installed copy."""
    if in_clone():
        return f"pip install -e \".[{extra}]\" in PaintGuard's folder"
    try:
        requires = metadata.requires("paintguard") or []
    except metadata.PackageNotFoundError:
        requires = []
    # an installed copy has no folder to install from: name the extra's own packages, as its metadata lists them
    packages = [req.split(";")[0].replace(" ", "") for req in requires
                if req.replace(" ", "").replace("'", '"').endswith(f'extra=="{extra}"')]
    if not packages:
        return f"install the packages of PaintGuard's '{extra}' extra (pyproject.toml)"
    return "pip install " + " ".join(f"'{p}'" if re.search(r"[<>=!~;\[]", p) else p for p in packages)


def own_file(path: str | os.PathLike) -> Path:
    """``path`` as given, or, where a config named as in the clone (``configs/compare/lama-tiny.yaml``) is no file
    of the working folder, PaintGuard's own, with a note."""
    given = Path(path)
    if given.is_absolute() or given.parts[:1] != ("configs",) or ".." in given.parts:
        return given
    shipped = project_root() / given
    try:
        if given.exists() or not shipped.is_file():
            return given
    except OSError:  # a name too long for a path, say: no file of ours either
        return given
    from lightning.pytorch.utilities import rank_zero_only  # loaded already by both callers, compare and training

    if rank_zero_only.rank == 0:  # DDP's other processes rerun the command
        print(f"paintguard: note: no '{given}' here: using PaintGuard's own, '{shipped}'", file=sys.stderr)
    return shipped
