"""What every PaintGuard training command shares: LightningCLI (fit/validate) and export to safetensors.

A trained LightningModule here has an ``export(path, **notes)`` method that writes
the deployable network alone as a PaintGuard checkpoint; ``export`` below does
that from a Lightning checkpoint file, and ``ExportOnTrainEnd`` when a fit ends.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from generator.checkpoint import CheckpointError, article, read_metadata, torch_load
from generator.cli_parser import ArgumentParser, exit_code, usage_error
from generator.messages import one_line
from generator.save import check_creatable
from generator.signals import Stopped
from trainer.training.config_args import config_file_with, own_configs
from trainer.training.resume_check import (check_fit_folder, check_fits, check_resume, is_lightning_checkpoint,
                                           mostly_foreign, own_run, warn_target_changed)

WANDB_RUN_KEY = "paintguard_wandb_run_id"
RUN_NAME = "${run_name}"  # stands for the config's run_name in the logger's and callbacks' options


def not_an_advert(record: logging.LogRecord) -> bool:
    """Lightning advertises its cloud services at every fit ("💡 Tip: ... litlogger"): not a line for our logs."""
    return not record.getMessage().startswith("💡 Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(not_an_advert)


class RememberWandbRun(L.Callback):
    """Stores the W&B run id in every checkpoint, so that a resumed fit goes on logging to the same run."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.version:
                checkpoint[WANDB_RUN_KEY] = logger.version


class ConfigLearningRates(L.Callback):
    """A resumed fit restores its optimisers' learning rates from the checkpoint; the config's win instead, so
    that a later phase can lower them with a flag (Adam's moments are kept). A restored per-step schedule
    (a ``LambdaLR``) goes on from its step, scaling the config's rates."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fresh = pl_module.configure_optimizers()
        fresh = fresh["optimizer"] if isinstance(fresh, dict) else fresh
        fresh = fresh if isinstance(fresh, (list, tuple)) else [fresh]
        for restored, configured in zip(trainer.optimizers, fresh):
            for group, configured_group in zip(restored.param_groups, configured.param_groups):
                group["lr"] = configured_group["lr"]
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                groups = scheduler.optimizer.param_groups
                scheduler.base_lrs = [group["lr"] for group in groups]
                for group, factor in zip(groups, scheduler.lr_lambdas):
                    group["lr"] *= factor(scheduler.last_epoch)


class SnapshotOnStop(L.Callback):
    """A fit stopped by Ctrl+C or SIGTERM saves its ``last.ckpt`` first, so that ``--ckpt_path last`` loses no steps
    (the configs' own snapshots come every 100 steps). One process only: another's save would wait for ranks that
    may not have been signalled."""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (Stopped, KeyboardInterrupt)) or trainer.world_size > 1 \
                or trainer.sanity_checking or trainer.global_step == 0:
            return
        keeper = next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "save_last", False) and cb.dirpath),
                      None)
        if keeper is None:
            return
        path = Path(keeper.dirpath) / f"{keeper.CHECKPOINT_NAME_LAST}{keeper.FILE_EXTENSION}"
        trainer.save_checkpoint(path)
        print(f"paintguard: note: stopped at step {trainer.global_step}, saved in {path}; resume with --ckpt_path last",
              file=sys.stderr, flush=True)


def _fill_run_name(value: Any, run_name: str) -> Any:
    """``value`` with every ``${run_name}`` in its strings replaced, through nested namespaces and lists."""
    if isinstance(value, str):
        return value.replace(RUN_NAME, run_name)
    if isinstance(value, list):
        return [_fill_run_name(v, run_name) for v in value]
    if hasattr(value, "items") and hasattr(value, "__setitem__"):
        for key, item in list(value.items()):
            value[key] = _fill_run_name(item, run_name)
    return value


def _batch_counts_stay_ints() -> None:
    """Let ``--trainer.limit_val_batches 1`` mean one batch, as it does in Lightning, not all of them.

    Lightning declares the four ``limit_*_batches`` as ``Optional[Union[int, float]]``, but typing caches a union
    by its set of members, so its module got a ``Union[float, int, None]`` made by an earlier import; jsonargparse
    tries the members in order and read 1 as 1.0, which Lightning takes for 100% (its issue 21259). A PEP 604
    union is not cached that way and keeps int first; the type is the same, so nothing else changes.
    """
    hints = L.Trainer.__init__.__annotations__
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches"):
        if hints.get(key) == int | float | None:
            hints[key] = int | float | None


_batch_counts_stay_ints()


class FitValidateCLI(LightningCLI):
    """LightningCLI limited to fit and validate; a resumed fit continues its W&B run with the config's
    learning rates."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {key: value for key, value in LightningCLI.subcommands().items() if key in ("fit", "validate")}

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        token = PARSED.set((list(args or []), parser.prog))
        try:
            super().parse_arguments(parser, args)
        finally:
            PARSED.reset(token)
        # before anything reads the run's folders: --ckpt_path last looks for last.ckpt in the checkpoint folder
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else self.config
        if config is not None and config.get("run_name"):
            for key in ("logger", "callbacks"):
                if config.trainer.get(key) is not None:
                    config.trainer[key] = _fill_run_name(config.trainer[key], config.run_name)

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand or "", None)
        # the first look at --ckpt_path: before Lightning's unguarded torch.load, any run folder
        path, resumed = (check_resume(self.model_class, config) if config is not None else None) or (None, None)
        # the W&B run goes on only from this run's own checkpoint
        self._resumed_run_id = resumed.get(WANDB_RUN_KEY) if resumed is not None and own_run(path, config) else None
        # what check_fits needs, not the whole checkpoint (its optimiser state can be as large as the weights)
        self._resumed = None if resumed is None else {
            "path": path, "hparams": resumed.get("hyper_parameters") or {},
            "shapes": {k: tuple(v.shape) for k, v in resumed["state_dict"].items() if hasattr(v, "shape")}}
        if resumed is not None and subcommand == "fit":
            warn_target_changed(resumed, config)
            done, most = resumed.get("global_step", 0), config.trainer.get("max_steps") or -1
            if 0 <= most <= done:  # Lightning stopped at once, having reopened the W&B run and rewritten config.yaml
                raise ValueError(f"'{path}' is at step {done}, and --trainer.max_steps is {most}: raise it to "
                                 "train on")
        if config is not None:  # before the seed is set, whose log line would come before the error's
            self._check_run(subcommand, config)
        # Lightning lays a checkpoint file's saved hyperparameters over the parsed config (but not those of
        # --ckpt_path last), which silently undid a fine-tuning config's new loss weights or learning rates.
        # With a --config, the config is the recipe; without one, the checkpoint still supplies the model.
        if config is not None and config.get("config"):
            return
        super()._parse_ckpt_path()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # one name for a run's folder, W&B run and export, so that a variant's overlay only sets run_name
        parser.add_argument("--run_name", type=str | None, default=None,
                            help=f"replaces {RUN_NAME} in the logger's and callbacks' options (run folders)")

    def _check_run(self, subcommand: str, config: Any) -> None:
        """Refuse what a fit or validate would find out only once its run folder and W&B run are open."""
        if subcommand == "fit":
            check_fit_folder(config, self.model_class.EXAMPLE_CONFIG)
            # a fit loads init_from only at setup
            check_init_from = getattr(self.model_class, "check_init_from", None)
            if check_init_from is not None and config.model.get("init_from"):
                check_init_from(config.model.init_from, config.model)
        check_inpainters = getattr(self.model_class, "check_inpainters", None)  # loaded only when the model is built
        if check_inpainters is not None and config.get("model") is not None:
            check_inpainters(config.model)
        check_run = getattr(self.datamodule_class, "check_run", None)
        if check_run is not None and config.get("data") is not None:  # a parse may lack the data
            check_run(subcommand, config.data)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        logger = config.trainer.get("logger") if config is not None else None
        # only a resumed fit goes on in its W&B run: a validate logs its metrics at trainer/global_step 0, which
        # in the training run would land among its curves as a point back at the start, so it gets a run of its own
        run_id = getattr(self, "_resumed_run_id", None) if self.subcommand == "fit" else None
        if run_id and hasattr(logger, "get") and "Wandb" in str(logger.get("class_path", "")) \
                and not logger.init_args.get("id"):
            logger.init_args["id"] = run_id

    def before_fit(self) -> None:
        self._check_fits()
        self.trainer.callbacks.extend([RememberWandbRun(), ConfigLearningRates(), SnapshotOnStop()])

    def before_validate(self) -> None:
        self._check_fits()

    def _check_fits(self) -> None:
        resumed = getattr(self, "_resumed", None)
        if resumed is not None:  # before the trainer opens the W&B run or writes config.yaml
            check_fits(self.model, resumed, resumed["path"])


# warnings that say nothing to a user of these commands: argv is passed on purpose (the paintguard dispatcher),
# manual optimisation (the inpainter's GAN) saves the post-step state by design, and a new fit into a folder
# with checkpoints is refused before Lightning looks (check_fit_folder), so its warning came only on every resume
QUIET = ("LightningCLI's args parameter is intended", "Using ModelCheckpoint with manual optimization",
         "Checkpoint directory .* exists and is not empty",
         r"`isinstance\(treespec, LeafSpec\)` is deprecated")  # Lightning's own use of torch's pytree


UNEXPECTED = "Unexpected config:"
# jsonargparse's words for a key no class takes: 'model.lerning_rate' at the top, a bare name inside a class_path
UNKNOWN_KEY = re.compile(r"(?:does not accept option|Option) '([^']+)'(?: is not accepted)?")
# the arguments and program name of the parse under way: a class_path's own parser knows neither
PARSED: ContextVar[tuple[list[str], str | None]] = ContextVar("PARSED", default=([], None))


class OneLineErrorParser(LightningArgumentParser):
    """LightningCLI's parser, except that a bad option or config is one line and exit code 2, not the usage."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if message.startswith(UNEXPECTED):  # jsonargparse's words for a --config that is empty or not a mapping
            content = one_line(message.removeprefix(UNEXPECTED), 60)
            message = ("a --config file must hold a YAML mapping of options (model:, data:, trainer:, ...), got "
                       + (repr(content) if content else "an empty file"))
        args, prog = PARSED.get()
        unknown = UNKNOWN_KEY.search(message)
        where = config_file_with(unknown.group(1), args) if unknown else None
        if where is not None:
            message = f"{message}, set in {where}"
        name = self.prog.replace(" [options]", "")  # jsonargparse's subcommand usage prefix
        if " " not in name and prog:  # a class_path's parser is named 'paintguard' alone
            name = prog.replace(" [options]", "")
        usage_error(message, name)


def make_cli(model_class: type[L.LightningModule], datamodule_class: type[L.LightningDataModule],
             argv: list[str], prog: str, description: str, run: bool = True) -> LightningCLI:
    """Build (and with ``run``, execute) the CLI; ``run=False`` parses a fit config without a subcommand."""
    with warnings.catch_warnings():
        for message in QUIET:
            warnings.filterwarnings("ignore", message=message)
        return FitValidateCLI(
            model_class,
            datamodule_class,
            args=argv,
            run=run,
            seed_everything_default=0,
            # modules configure their own optimisers (the inpainter has two): no --optimizer/--lr_scheduler options
            auto_configure_optimizers=False,
            # resuming rewrites the run's config.yaml instead of refusing to start
            save_config_kwargs={"overwrite": True},
            # validation runs the optimiser (the teacher, the attack probe), which needs gradients: without a
            # --config, `validate --ckpt_path X` failed until --trainer.inference_mode false was added
            trainer_defaults={"logger": {"class_path": "trainer.training.wandb_logger.PaintGuardWandbLogger"},
                              "inference_mode": False},
            parser_kwargs={"prog": prog, "description": description},
            parser_class=OneLineErrorParser,
        )


# what each trained model's export is, and the command that writes it
EXPORTS = {"GeneratorModule": ("generator", "paintguard train export"),
           "InpainterModule": ("inpainter", "paintguard fit-inpainter export")}


def read_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only`` (no code from the file is run)."""
    path = Path(path)
    if str(path) == "last":  # a fit's word for its own folder's newest snapshot, which export has no run to find in
        raise ValueError("--ckpt_path last names a fit's own last.ckpt; give export the file, such as "
                         "runs/NAME/checkpoints/last.ckpt")
    if path.is_dir():
        raise ValueError(f"'{path}' is a folder; give a checkpoint file, such as runs/NAME/checkpoints/last.ckpt")
    if not path.is_file():
        raise ValueError(f"no checkpoint '{path}'")
    blob = torch_load(path, "Lightning checkpoint")
    if not is_lightning_checkpoint(blob):
        raise ValueError(f"'{path}' is not a Lightning checkpoint written by PaintGuard training")
    return blob


def export(model_class: type[L.LightningModule], ckpt_path: str | Path, out: str | Path) -> Path:
    """Rebuild ``model_class`` from a Lightning checkpoint and write its deployable network."""
    blob = read_lightning_checkpoint(ckpt_path)
    # LightningCLI adds private keys (_class_path, _instantiator) that are not __init__ arguments
    hparams = {k: v for k, v in blob["hyper_parameters"].items() if not k.startswith("_")}
    foreign = mostly_foreign(model_class, hparams)
    if foreign:  # as check_resume judges it
        other = next((c for n, (_, c) in EXPORTS.items() if n != model_class.__name__), "the other command's export")
        raise ValueError(f"'{ckpt_path}' holds another kind of model than {article(model_class.__name__)} (its "
                         f"options {', '.join(foreign[:3])}, ...); export it with '{other}'")
    try:
        module = model_class(**hparams)
        module.load_state_dict(blob["state_dict"], strict=True)
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"'{ckpt_path}' was not written by {article(model_class.__name__)}: "
                         f"{str(err).splitlines()[0]}") from None
    return module.export(out, global_step=str(blob.get("global_step", "")), source=Path(ckpt_path).name)


def export_main(model_class: type[L.LightningModule], prog: str, argv: list[str]) -> int:
    """``PROG export --ckpt_path CKPT --out FILE.safetensors [--overwrite]``."""
    parser = ArgumentParser(prog=f"{prog} export",
                            description="Write a training checkpoint's network as a PaintGuard checkpoint.")
    parser.add_argument("--ckpt_path", required=True, help="Lightning checkpoint, e.g. runs/NAME/checkpoints/last.ckpt")
    parser.add_argument("--out", required=True, help="output .safetensors, e.g. checkpoints/NAME.safetensors")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors, got '{out}'")
    if out.is_dir():  # --overwrite replaces a file, never a folder (the rename would fail after the work)
        raise ValueError(f"--out '{out}' is a folder; give the .safetensors file to write")
    if out.exists():
        if not args.overwrite:
            raise ValueError(f"'{out}' exists; pass --overwrite to replace it")
        # --overwrite replaces this kind's export, not a checkpoint of the other kind by a slip
        try:
            kind = read_metadata(out).get("kind")
        except CheckpointError:  # not a PaintGuard checkpoint: --overwrite says what to do with it
            kind = None
        ours = EXPORTS.get(model_class.__name__, (None, ""))[0]
        if kind is not None and ours is not None and kind != ours:
            raise ValueError(f"'{out}' is {article(kind)} checkpoint; --overwrite replaces {article(ours)} export "
                             "only: remove it first, or choose another --out")
    check_creatable(out)
    path = export(model_class, args.ckpt_path, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cli_main(model_class: type[L.LightningModule], datamodule_class: type[L.LightningDataModule], prog: str,
             description: str, argv: list[str]) -> int:
    """Dispatch ``export`` to :func:`export_main` and everything else to LightningCLI."""
    if argv[:1] == ["export"]:
        return export_main(model_class, prog, argv[1:])
    try:
        make_cli(model_class, datamodule_class, own_configs(argv), prog, description)
    except SystemExit as exit_:  # argparse/jsonargparse end with sys.exit (--help, bad options)
        return exit_code(exit_)
    except MisconfigurationException as err:  # Lightning's word for a bad Trainer option (max_steps -5, devices 0)
        raise ValueError(str(err)) from err  # a user's input: one line, not a traceback
    return 0


class ExportOnTrainEnd(L.Callback):
    """Write the trained network as a PaintGuard safetensors checkpoint when training ends."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            out = pl_module.export(self.path, global_step=str(trainer.global_step))
            print(f"exported to {out}")
