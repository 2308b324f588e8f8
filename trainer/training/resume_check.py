"""What ``--ckpt_path`` must be, checked before a fit or validate opens its run folder and W&B run.

Lightning finds each of these out late: a missing file once the W&B run is open and the run's
``config.yaml`` is overwritten with the failed command's; ``last`` with nothing to resume by
training from scratch; another command's checkpoint (an inpainter's for ``train``) as a
state-dict error with no detail, after taking over that run's W&B id; and, without ``--config``,
a damaged file as a traceback from its own unguarded ``torch.load``.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

from generator.checkpoint import torch_load

LIGHTNING_NAMES = ("best", "hpc", "registry")  # resolved by Lightning itself, from state it alone has


def checkpoint_folders(config: Any) -> list[Path]:
    """The ``dirpath`` of every ModelCheckpoint in a subcommand's config, each once."""
    folders: dict[Path, None] = {}
    for callback in config.trainer.get("callbacks") or []:
        if not hasattr(callback, "get") or "ModelCheckpoint" not in str(callback.get("class_path", "")):
            continue
        dirpath = (callback.get("init_args") or {}).get("dirpath")
        if dirpath:
            folders[Path(dirpath)] = None
    return list(folders)


def foreign_options(model_class: type, hparams: dict[str, Any]) -> list[str]:
    """The saved options that ``model_class`` does not take (LightningCLI's private ``_`` keys aside)."""
    params = inspect.signature(model_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    return sorted(k for k in hparams if not k.startswith("_") and k not in params)


def mostly_foreign(model_class: type, hparams: dict[str, Any]) -> list[str]:
    """The saved options ``model_class`` does not take when they are most of them (another command's model), else
    none: one or two unknown ones may be options renamed since."""
    foreign = foreign_options(model_class, hparams)
    known = [k for k in hparams if not k.startswith("_") and k not in foreign]
    return foreign if len(foreign) > len(known) else []


def is_lightning_checkpoint(blob: Any) -> bool:
    """Whether a loaded file is what a Lightning fit saves: weights, options and the version that wrote them."""
    return isinstance(blob, dict) and all(key in blob for key in ("state_dict", "hyper_parameters",
                                                                    "pytorch-lightning_version"))


def resume_file(config: Any) -> Path | None:
    """The checkpoint ``--ckpt_path`` names, ``last`` resolved as Lightning does (the newest ``last*.ckpt``);
    None when there is nothing for this check to read. Refuses a path that is no file, and ``last`` with none."""
    ckpt = config.get("ckpt_path")
    if not ckpt or ckpt in LIGHTNING_NAMES or "://" in str(ckpt):
        return None
    if ckpt != "last":
        path = Path(ckpt)
        if not path.is_file():
            raise ValueError(f"--ckpt_path '{ckpt}' " + ("is a folder; give a checkpoint file such as "
                                                         "last.ckpt" if path.is_dir() else "does not exist"))
        return path
    folders = checkpoint_folders(config)
    lasts = [p for folder in folders for p in folder.glob("last*.ckpt") if p.is_file()]
    if folders and not lasts:  # Lightning would warn and train from scratch, which a resume never means
        raise ValueError(f"--ckpt_path last: no last.ckpt in '{folders[0]}' to resume; leave out --ckpt_path to "
                         "start a new run")
    return max(lasts, key=lambda p: p.stat().st_mtime) if lasts else None


def check_fit_folder(config: Any, example: str) -> None:
    """Refuse a fit that would mix two runs in one folder: a new run where another left its checkpoints (Lightning
    only warns, then keeps both runs' snapshots and picks ``last`` between them by date), and a resume without
    ``--config``, which has none of the run's callbacks or folders and so writes its checkpoints elsewhere. A fit
    without any ``--config`` is refused too: Lightning's defaults (1000 epochs, checkpoints under lightning_logs)
    made a bare ``paintguard train`` start a long run; ``example`` is the config the message suggests."""
    if not config.get("config"):
        if config.get("ckpt_path"):
            raise ValueError("resuming a fit needs the run's options: add the --config files it was started with, "
                             "or the config.yaml it saved in its run folder")
        raise ValueError(f"a fit needs --config: a model's YAML such as {example} (with --data.train_dir for "
                         "your photos), or a run's own config.yaml")
    if config.get("ckpt_path"):
        return
    for folder in checkpoint_folders(config):
        if folder.is_dir() and any(folder.glob("*.ckpt")):
            # a config whose folders are not named by ${run_name} (configs/ci.yaml) ignores --run_name
            named = config.get("run_name") and config.run_name in folder.parts
            raise ValueError(f"'{folder}' already holds the checkpoints of a run: resume it with --ckpt_path last, "
                             "or start the new one " + ("under another --run_name or " if named else "")
                             + "after removing that folder")


def check_resume(model_class: type, config: Any) -> tuple[Path, dict[str, Any]] | None:
    """Refuse a ``--ckpt_path`` that is missing, damaged, ``last`` with nothing to resume, or another kind of run's;
    returns the file and the checkpoint it read (None where there is none to read)."""
    path = resume_file(config)
    if path is None:
        return None
    blob = torch_load(path, "Lightning checkpoint")  # no mmap: its error would hide what a random file is
    if not is_lightning_checkpoint(blob):  # e.g. LaMa's best.ckpt: Lightning's restore would raise a KeyError
        raise ValueError(f"'{path}' is not a Lightning checkpoint written by PaintGuard training")
    foreign = mostly_foreign(model_class, blob.get("hyper_parameters") or {})
    if foreign:
        raise ValueError(f"'{path}' holds another kind of model than this command trains ({model_class.__name__}): "
                         f"its options {', '.join(foreign[:3])}, ... are not this model's")
    return path, blob


def warn_target_changed(resumed: dict[str, Any], config: Any) -> None:
    """Say so when a resumed fit attacks other inpainters than the run so far: allowed (a later phase may), but its
    best-share checkpoint then compares scores against two targets, and its export names only the new one."""
    saved = resumed.get("hyper_parameters") or {}
    keys = [k for k in ("inpainter", "inpainters") if k in saved and config.get("model") is not None]
    changed = [k for k in keys if saved[k] != config.model.get(k)]
    if changed:
        was, now = saved[changed[0]], config.model.get(changed[0])
        warnings.warn(f"resuming a run trained against {changed[0]} {was!r} with {now!r}: its best-share checkpoint "
                      "will compare scores against both", stacklevel=2)


def own_run(path: Path | None, config: Any) -> bool:
    """Whether the checkpoint ``path`` lies in one of this run's checkpoint folders: only then does a fit go on in
    its W&B run (from another run's checkpoint it starts a run of its own, whose curves do not mix with that one's)."""
    return path is not None and path.resolve().parent in {f.resolve() for f in checkpoint_folders(config)}


def check_fits(model: Any, resumed: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose weights do not fit ``model`` before anything opens: Lightning found it out after
    reopening the W&B run and rewriting the run's config.yaml, and said so in a line cut before the detail."""
    theirs = resumed["shapes"]
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if not differ:
        return
    saved, now = resumed["hparams"], getattr(model, "hparams", {})
    # the options that shape a network are whole numbers, lists, names and switches; rates and weights are floats
    options = [f"model.{k} {saved[k]!r} there, {now[k]!r} here" for k in now
               if k in saved and not k.startswith("_") and saved[k] != now[k] and not isinstance(now[k], float)]
    first = differ[0]
    detail = "; ".join(options[:3]) if options else (f"{first}: {theirs.get(first)} there, {ours.get(first)} here")
    raise ValueError(f"'{path}' does not fit this model ({len(differ)} weights differ in shape or name; {detail}): "
                     "give the options it was trained with, such as its run's config.yaml")
