"""Weights & Biases logging that works on a machine with no account and no network.

``PaintGuardWandbLogger`` is Lightning's ``WandbLogger`` with one change of
default: it runs offline unless an account is configured, so a fresh clone can
train without ever touching the network. Offline runs are plain files under
``<save_dir>/wandb/offline-run-*``; ``wandb sync`` uploads them later, and
:func:`read_offline_run` reads their history back without any service.
"""

from __future__ import annotations

import json
import netrc
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from google.protobuf.message import DecodeError
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from generator.save import to_uint8

Tensor = torch.Tensor
DEFAULT_HOST = "api.wandb.ai"


def wandb_account_configured(environ: dict[str, str] | None = None) -> bool:
    """True when W&B could log in without asking: an API key, an explicit online mode, or a netrc entry."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY") or env.get("WANDB_MODE", "").lower() == "online":
        return True
    # self-hosted servers keep their credentials under their own host name
    host = urlparse(env.get("WANDB_BASE_URL", "")).hostname or DEFAULT_HOST
    path = Path(env.get("NETRC") or Path.home() / ".netrc")
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class PaintGuardWandbLogger(WandbLogger):
    """``WandbLogger`` that stays offline unless a W&B account is configured.

    ``offline=None`` (the default) means offline unless ``WANDB_API_KEY`` is set,
    ``WANDB_MODE=online``, or ``~/.netrc`` has an entry for the W&B host; an
    explicit ``WANDB_MODE=offline``/``disabled`` always wins. ``log_model=True``
    works offline too (Lightning refuses it): the best checkpoint is stored in the
    offline run as a model artifact when training ends. ``save_dir``
    defaults to ``runs`` and ``project`` to ``paintguard``. The run is finished
    when training ends, so offline files are complete and a later logger in the
    same process starts a new run instead of silently reusing this one.
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike = "runs",
        version: str | None = None,
        offline: bool | None = None,
        dir: str | os.PathLike | None = None,
        id: str | None = None,
        anonymous: bool | None = None,
        project: str | None = "paintguard",
        log_model: Literal["all"] | bool = False,
        experiment: Any = None,
        prefix: str = "",
        checkpoint_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        # configuration tools (LightningCLI) pass every wandb.init option, mostly as None: drop those so that
        # they do not override Lightning's own defaults (resume="allow") or trigger deprecation warnings
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        env_mode = os.environ.get("WANDB_MODE", "").lower()
        if offline is None:
            offline = env_mode in ("offline", "dryrun", "disabled") or not wandb_account_configured()

        # Lightning refuses log_model offline; an offline run can still hold artifacts (uploaded by `wandb sync`),
        # so the checkpoints are logged here instead, when the run ends
        self._offline_log_model = log_model if offline else False
        if offline:
            log_model = False
        # Lightning's offline flag overwrites WANDB_MODE with "dryrun"; keep a user's "disabled" instead
        mode = "disabled" if env_mode == "disabled" else ("offline" if offline else "online")
        kwargs.setdefault("mode", mode)
        # absolute: wandb's service process resolves relative paths against its own working directory,
        # which is wherever the first run of this process started
        save_dir = os.path.abspath(save_dir) if save_dir is not None else None
        dir = os.path.abspath(dir) if dir is not None else None
        super().__init__(name=name, save_dir=save_dir, version=version, offline=offline and mode != "disabled",
                         dir=dir, id=id, anonymous=anonymous, project=project, log_model=log_model,
                         experiment=experiment, prefix=prefix, checkpoint_name=checkpoint_name, **kwargs)
        if anonymous is None:
            self._wandb_init.pop("anonymous", None)

    @property
    def offline(self) -> bool:
        return self._wandb_init.get("mode") != "online"

    @property
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        if self.save_dir:
            # wandb falls back to a temporary folder when the directory does not exist yet
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
        # Lightning sets WANDB_MODE=dryrun for good when offline; the mode is already passed to
        # wandb.init, so undo that and leave later loggers in this process to decide for themselves
        previous = os.environ.get("WANDB_MODE")
        try:
            return super().experiment
        finally:
            if previous is None:
                os.environ.pop("WANDB_MODE", None)
            else:
                os.environ["WANDB_MODE"] = previous

    @rank_zero_only
    def log_images(self, key: str, images: list[Tensor], caption: str | list[str] | None = None,
                   step: int | None = None) -> None:
        """Log (3,H,W) or (H,W) tensors in [0,1] as one W&B image list under ``key``."""
        arrays = [to_uint8(image) for image in images]
        kwargs = {}
        if caption is not None:
            kwargs["caption"] = [caption] * len(arrays) if isinstance(caption, str) else list(caption)
        self.log_image(key, arrays, step=step, **kwargs)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        # Lightning's finalize logs the checkpoints of the callbacks remembered here
        if self._offline_log_model:
            self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback
        super().after_save_checkpoint(checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        run, self._experiment = self._experiment, None
        if run is None:
            return
        sync_dir = getattr(getattr(run, "settings", None), "sync_dir", None)
        run.finish(exit_code=0 if status == "success" else 1)
        if self._wandb_init.get("mode") == "offline" and sync_dir:
            # wandb's service may still be writing when finish() returns; wait, so the files are complete
            wait_for_offline_run(sync_dir)


# --- reading offline runs back ----------------------------------------------------------------

@dataclass
class OfflineRun:
    """What an offline run recorded: one dict per ``log`` call, the merged summary, the config, the artifacts.

    ``finished`` is False while the run is still being written (no exit record yet).
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # name, type, aliases, metadata
    finished: bool = False


_BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of checksummed chunks
_CHUNK_HEADER = 7  # crc32 (4 bytes), length (2), type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(data: bytes) -> list[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log")
    pos, chunks, records = 7, [], []
    while pos + _CHUNK_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _CHUNK_HEADER])
        pos += _CHUNK_HEADER
        if kind == 0 or pos + length > len(data):  # the end of a file still being written
            break
        chunks.append(data[pos:pos + length])
        pos += length
        if kind in (_FULL, _LAST):
            records.append(b"".join(chunks))
            chunks = []
    return records


def _item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def wait_for_offline_run(run_dir: str | os.PathLike, timeout: float = 30.0) -> bool:
    """Wait until an offline run's transaction log ends with its exit record; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if read_offline_run(run_dir).finished:
                return True
        except (OSError, ValueError, DecodeError):  # not created yet, or a record is still being written
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def read_offline_run(run_dir: str | os.PathLike) -> OfflineRun:
    """Parse ``run-*.wandb`` in an offline run directory (``<save_dir>/wandb/offline-run-*``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in '{run_dir}'")
    run = OfflineRun()
    for raw in _records(files[0].read_bytes()):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append({_item_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run.summary.update({_item_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "config":
            run.config.update({_item_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "artifact":
            a = record.artifact
            run.artifacts.append({"name": a.name, "type": a.type, "aliases": list(a.aliases),
                                  "metadata": json.loads(a.metadata or "{}")})
        elif kind == "exit":
            run.finished = True
    return run


__all__ = ["PaintGuardWandbLogger", "wandb_account_configured", "read_offline_run", "wait_for_offline_run",
           "OfflineRun"]
