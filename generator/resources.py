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


def in_clone() -> bool:
    """Whether this code runs from a clone of PaintGuard (its own tree), not from an installed copy."""
    return (SOURCE_ROOT / "pyproject.toml").is_file()  # a wheel installs no pyproject.toml beside its packages


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
            if at >= 0:
                return Path(dist.locate_file(posix[:at + len(DATA_DIR)])).resolve()
    return SOURCE_ROOT


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
    packages = [re.match(r"[\w.-]+", req).group() for req in requires
                if req.replace(" ", "").replace("'", '"').endswith(f'extra=="{extra}"')]
    return f"pip install {' '.join(packages)}" if packages else f"pip install \"paintguard[{extra}]\""


def own_file(path: str | os.PathLike) -> Path:
    """``path`` as given, or, where it names nothing from the working folder but one of PaintGuard's own files
    relative to its folder (``configs/compare/lama-tiny.yaml`` outside the clone), that file, with a note."""
    given = Path(path)
    if given.is_absolute() or given.exists():
        return given
    shipped = project_root() / given
    if not shipped.is_file():
        return given
    if os.environ.get("LOCAL_RANK", "0") == "0":  # the processes Lightning starts for DDP rerun the command
        print(f"paintguard: note: no '{given}' here: using PaintGuard's own, '{shipped}'", file=sys.stderr)
    return shipped
