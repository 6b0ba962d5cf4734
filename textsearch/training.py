"""The one place that turns a config into a trained model.

``python -m textsearch.train``, every search trial and the single-trial debug run all call
:func:`train` with a :class:`textsearch.config.TrainConfig`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams

from textsearch import metrics
from textsearch.config import TrainConfig
from textsearch.data import DATA_CLASSES, BaseDataModule, DataBundle
from textsearch.devices import (
    Accelerator,
    accelerator_for,
    evaluation_precision,
    resolve_precision,
    trainer_precision,
)
from textsearch.errors import UserError
from textsearch.lit_model import CONFIG_KEY, DATA_KEY, LineLitModel, LitModel
from textsearch.models.cnn import CNN
from textsearch.models.ctc import label_tokens, min_steps
from textsearch.models.errors import ModelConfigError
from textsearch.models.line_cnn import LineCNN
from textsearch.models.mlp import MLP
from textsearch.paths import environment_restored


@contextlib.contextmanager
def lightning_warnings() -> Iterator[None]:
    """Within a run: drop Lightning's and torch's warnings that say nothing to act on."""
    with warnings.catch_warnings():
        # advice to add DataLoader workers: a search chooses num_workers itself
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # torch.from_numpy of a read-only view: the images shared through Ray's object
        # store, which no batch writes to
        warnings.filterwarnings("ignore", message=".*The given NumPy array is not writable.*")
        # a deprecation inside Lightning's use of torch's pytree
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        yield


class EpochLines(Callback):
    """Progress as plain lines, for a log or a pipe where a bar would be one line of hundreds
    of carriage returns: one line per epoch with its figures, and, in an epoch longer than
    ``every_s``, a line each ``every_s`` seconds saying how far it is."""

    def __init__(self, every_s: float = 60.0, out=None):
        self.every_s = every_s
        self.out = out or sys.stderr
        self.started = self.last = 0.0

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started = self.last = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            total = trainer.num_training_batches
            self.say(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: batch "
                     f"{batch_idx + 1}/{total} ({now - self.started:.0f} s)")

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # after its validation
        figures = ", ".join(f"{k} {float(v):.4g}" for k, v in sorted(trainer.callback_metrics.items())
                            if v.numel() == 1)
        self.say(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {figures} "
                 f"({time.monotonic() - self.started:.1f} s)")


@dataclass
class TrainResult:
    """What a run produced.  Metrics are floats in [0, 1] for accuracies."""

    config: TrainConfig
    run_dir: Path
    metrics: dict[str, float]
    best_checkpoint: str | None
    test_acc: float | None  # character models; line models score the test split by CER
    epochs: int
    test_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    precision: str = ""  # what Lightning's Trainer ran in (``auto`` resolved)


def make_datamodule(cfg: TrainConfig, bundle: DataBundle | None = None) -> BaseDataModule:
    cls = DATA_CLASSES[cfg.data_class]
    kwargs = {"balance": cfg.balance} if cfg.data_class == "EMNIST" else {}
    if cfg.data_class == "EMNISTLines":
        kwargs = {"lines": cfg.lines_config()}
    return cls(cfg.data_config(), bundle=bundle, **kwargs)


def make_model(cfg: TrainConfig, input_dims: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    """The model ``cfg`` names, for ``input_dims`` inputs (channels first) and ``num_classes``.

    Options the model cannot be built with (an impossible architecture) come from the
    user's config: they are raised as a :class:`UserError`.
    """
    try:
        if cfg.model_class == "MLP":
            return MLP(input_dims, num_classes, fc1=cfg.fc1, fc2=cfg.fc2, dropout=cfg.dropout)
        if cfg.model_class == "LineCNN":
            return LineCNN(input_dims, num_classes, cfg.cnn_config(), cfg.window_width,
                           cfg.window_stride)
        return CNN(input_dims, num_classes, cfg.cnn_config())
    except ModelConfigError as err:
        raise UserError(str(err)) from None


def data_info(bundle: DataBundle) -> dict[str, Any]:
    """What a model is built for, as a checkpoint keeps it: input dims, classes, mapping.

    A line model scores every token of the mapping (its ``<B>`` is the CTC blank); a
    character model, the dataset's classes.
    """
    lines = len(bundle.y_trainval.shape) > 1
    return {"input_dims": [int(d) for d in bundle.input_dims],
            "num_classes": len(bundle.mapping) if lines else int(bundle.output_dims[0]),
            "mapping": list(bundle.mapping)}


def ctc_steps_needed(bundle: DataBundle) -> int:
    """The most output steps a line of ``bundle`` needs under CTC
    (:func:`textsearch.models.ctc.min_steps` of its characters)."""
    return max((min_steps(tokens) for y in (bundle.y_trainval, bundle.y_test)
                for tokens in label_tokens(y)), default=0)


def make_lit_model(cfg: TrainConfig, bundle: DataBundle) -> LitModel:
    """The model ``cfg`` names, wrapped for training on ``bundle``'s kind of data.

    A line model that gives fewer output steps than a line of the data needs under CTC is
    refused (a :class:`UserError`), before any training.
    """
    lit = _lit_model(cfg, data_info(bundle))
    if cfg.reads_lines:
        needed, steps = ctc_steps_needed(bundle), lit.model.num_steps
        if steps < needed:
            raise UserError(
                f"window_stride {cfg.window_stride} gives {steps} output steps across the "
                f"line, but its longest text needs {needed} under CTC (its characters plus a "
                f"blank between repeats): use a smaller window_stride or fewer downsampling "
                f"blocks")
    return lit


def _lit_model(cfg: TrainConfig, data: dict[str, Any]) -> LitModel:
    """The LitModel of ``cfg`` for ``data`` (:func:`data_info`); its checkpoints keep both."""
    num_classes = int(data["num_classes"])
    model = make_model(cfg, tuple(data["input_dims"]), num_classes)
    kwargs = {"lr": cfg.lr, "one_cycle_max_lr": cfg.one_cycle_max_lr or None,
              "weight_decay": cfg.weight_decay, "config": cfg.to_dict(), "data": data}
    if cfg.reads_lines:
        return LineLitModel(model, num_classes, data["mapping"], **kwargs)
    return LitModel(model, num_classes, **kwargs)


def model_from_checkpoint(path: str | Path) -> tuple[TrainConfig, LitModel]:
    """The config a checkpoint of :func:`train` was trained with, and its trained model.

    The checkpoint alone is enough: it holds the full config and the dims, class count and
    mapping of the data (:mod:`textsearch.lit_model`).  The model is on the CPU, in eval
    mode.  A missing, damaged or foreign file is a :class:`UserError` saying which.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:  # weights_only: a foreign file cannot run code while it is read
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read checkpoint {path} (damaged, or not a PyTorch "
                        f"checkpoint): {type(err).__name__}: {err}".splitlines()[0]) from None
    if not isinstance(state, dict) or not {CONFIG_KEY, DATA_KEY, "state_dict"} <= set(state):
        raise UserError(f"{path} is not a textsearch checkpoint: it holds no {CONFIG_KEY} "
                        "(written by another program, or by a textsearch older than this one)")
    try:
        cfg = TrainConfig.from_dict(state[CONFIG_KEY])
        lit = _lit_model(cfg, state[DATA_KEY])
    except UserError as err:
        raise UserError(f"checkpoint {path}: {err}") from None
    try:
        lit.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise UserError(f"checkpoint {path}: its weights do not fit the model its config "
                        f"describes: {err}".splitlines()[0]) from None
    return cfg, lit.eval()


def flat_hparams(cfg: TrainConfig) -> dict[str, bool | int | float | str]:
    return {k: v for k, v in cfg.to_dict().items() if isinstance(v, (bool, int, float, str))}


def log_hparams(logger: TensorBoardLogger, cfg: TrainConfig, metric_names: list[str]) -> None:
    """Write the HParams plugin's session records; metric values come from the scalars."""
    exp, ssi, sei = hparams(flat_hparams(cfg), {m: 0.0 for m in metric_names})
    # Lightning's log_hyperparams(params, metrics) would also log these 0.0 placeholders as
    # the metrics' first values; the SummaryWriter's own file writer takes just the records.
    writer = logger.experiment.file_writer
    for summary in (exp, ssi, sei):
        writer.add_summary(summary)
    writer.flush()


def train(
    cfg: TrainConfig,
    run_dir: Path,
    *,
    bundle: DataBundle | None = None,
    callbacks: list[Callback] | None = None,
    ckpt_path: str | None = None,
    test: bool = True,
    enable_progress_bar: bool = True,
    enable_checkpointing: bool = True,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Train one model as ``cfg`` says; logs and checkpoints go under ``run_dir``.

    ``enable_progress_bar``: Lightning's bar when stderr is a terminal, else plain lines
    (:class:`EpochLines`); False: neither.
    ``bundle``: data already in memory (a search hands it over from Ray's object store).
    ``ckpt_path``: a Lightning checkpoint to resume from. ``test``: evaluate the best
    checkpoint on the test split at the end.  ``accelerator``: where to train, as the caller
    checked it (a search trial: the GPU Ray assigned it); None: where ``cfg.gpus`` says
    (:func:`textsearch.devices.accelerator_for`).
    """
    cfg.validate()
    accelerator = accelerator or accelerator_for(cfg.gpus)
    precision = resolve_precision(cfg.precision, accelerator.accelerator)
    with seeded(cfg.seed):
        return train_seeded(cfg, run_dir, bundle, callbacks, ckpt_path, test,
                            enable_progress_bar, enable_checkpointing, accelerator, precision)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Lightning's ``seed_everything`` for one run.  It keeps the seed in the environment
    (``PL_GLOBAL_SEED``, ``PL_SEED_WORKERS``: how DataLoader workers find it); after the
    run those are as they were, so a run in a notebook or a test leaves no setting behind."""
    with environment_restored(("PL_GLOBAL_SEED", "PL_SEED_WORKERS")):
        pl.seed_everything(seed, workers=True, verbose=False)
        yield


def train_seeded(cfg: TrainConfig, run_dir: Path, bundle: DataBundle | None,
                 callbacks: list[Callback] | None, ckpt_path: str | None, test: bool,
                 enable_progress_bar: bool, enable_checkpointing: bool,
                 accelerator: Accelerator, precision: str) -> TrainResult:
    """:func:`train` once the run is seeded (:func:`seeded`)."""
    dm = make_datamodule(cfg, bundle)
    if bundle is None:
        dm.prepare_data()
    bundle = dm.get_bundle()
    lit = make_lit_model(cfg, bundle)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard",
                               default_hp_metric=False)
    hparam_metrics = metrics.hparam_metrics(cfg.reads_lines)
    all_callbacks = list(callbacks or [])
    bar = enable_progress_bar and sys.stderr.isatty()
    if enable_progress_bar and not bar:
        all_callbacks.append(EpochLines())
    checkpoint_cb = None
    if enable_checkpointing and not cfg.fast_dev_run:
        monitor, mode = cfg.monitor
        if cfg.limit_val_batches <= 0:  # no validation: training's own figure picks the best
            monitor, mode = metrics.training_metric(cfg.reads_lines)
        checkpoint_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best",
                                        monitor=monitor, mode=mode, save_top_k=1,
                                        save_last=False, enable_version_counter=False)
        all_callbacks.append(checkpoint_cb)
    # Overfitting = the same few training batches every epoch, unshuffled (done here rather
    # than by Lightning, whose overfit mode rebuilds DataLoaders with a per-item sampler).
    # Validation then runs on those same batches (the DataModule's overfit mode), as in
    # Lightning's own overfit_batches.
    limit_train, limit_val = cfg.limit_train_batches, cfg.limit_val_batches
    if cfg.overfit_batches:  # here 1 means one batch, not all of them
        o = cfg.overfit_batches
        limit_train = limit_val = int(o) if o >= 1 else o
    trainer = pl.Trainer(
        accelerator=accelerator.accelerator,
        devices=accelerator.devices,
        precision=precision,
        max_epochs=cfg.max_epochs,
        logger=logger,
        callbacks=all_callbacks,
        enable_checkpointing=checkpoint_cb is not None,
        enable_progress_bar=bar,
        enable_model_summary=enable_progress_bar,
        fast_dev_run=cfg.fast_dev_run,
        limit_train_batches=limit_train if isinstance(limit_train, int) else _count_or_fraction(limit_train),
        limit_val_batches=limit_val if isinstance(limit_val, int) else _count_or_fraction(limit_val),
        num_sanity_val_steps=0,
        log_every_n_steps=1,  # only epoch-level values are logged
        deterministic=False,
        default_root_dir=str(run_dir),
    )
    # What Lightning really runs in (auto resolved), in the HParams and the checkpoints' config
    ran = dataclasses.replace(cfg, precision=trainer_precision(trainer))
    log_hparams(logger, ran, hparam_metrics)
    lit.run_config = ran.to_dict()
    with lightning_warnings():
        trainer.fit(lit, datamodule=dm, ckpt_path=ckpt_path)
    results = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    best = checkpoint_cb.best_model_path if checkpoint_cb and checkpoint_cb.best_model_path else None
    tested: dict[str, float] = {}
    if best is not None and checkpoint_cb.best_model_score is not None:
        results[f"best_{checkpoint_cb.monitor}"] = float(checkpoint_cb.best_model_score)
    if test and not cfg.fast_dev_run:
        with lightning_warnings():
            out = trainer.test(lit, datamodule=dm, ckpt_path=best, verbose=False)
        tested = {k: float(out[0][k]) for k in cfg.test_metrics}
        results.update(tested)
    logger.finalize("success")
    return TrainResult(cfg, run_dir, results, best, tested.get("test_acc"), trainer.current_epoch,
                       tested, trainer_precision(trainer))


def _count_or_fraction(v: float) -> int | float:
    """Lightning reads an int as a number of batches and a float as a fraction."""
    return int(v) if v > 1 else float(v)


def evaluate_checkpoint(checkpoint: str | Path, bundle: DataBundle | None = None,
                        split: str = "test", gpus: float = 0) -> dict[str, float]:
    """Evaluate a checkpoint written by :func:`train` on ``split`` ('test' or 'val').

    The model, the data and the batch settings all come from the config in the checkpoint.
    ``bundle``: that data already in memory (else it is read from the cache). ``gpus``:
    0 for the CPU, else one GPU; on the CPU a mixed-precision run is evaluated in the
    precision ``auto`` gives there (bf16-mixed with native bf16, else 32).
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    cfg, lit = model_from_checkpoint(checkpoint)
    gpus = min(gpus, 1)
    accelerator = accelerator_for(gpus)
    cfg = dataclasses.replace(cfg, gpus=gpus, precision=evaluation_precision(
        cfg.precision, accelerator.accelerator))
    dm = make_datamodule(cfg, bundle)
    saved, data = lit.data_info, data_info(dm.get_bundle())
    if (saved["input_dims"], saved["num_classes"]) != (data["input_dims"], data["num_classes"]):
        raise UserError(f"checkpoint {checkpoint} was trained on inputs {saved['input_dims']} "
                        f"with {saved['num_classes']} classes, the data given has "
                        f"{data['input_dims']} and {data['num_classes']}")
    trainer = pl.Trainer(accelerator=accelerator.accelerator, devices=accelerator.devices,
                         precision=cfg.precision, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    run = trainer.test if split == "test" else trainer.validate
    with lightning_warnings():
        out = run(lit, datamodule=dm, verbose=False)
    return {k: float(v) for k, v in out[0].items()}


CONFIG_FILE = "config.json"  # in a single run's folder: the full config it ran


class ConfigFile(Callback):
    """Writes a run's full config (``TrainConfig.to_dict()``) as ``config.json`` in its folder.

    Written when fitting starts, once the model has been built: a config that cannot build
    its model leaves nothing behind, and a run stopped half-way still says what it ran.
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path) -> None:
        self.cfg, self.path = cfg, Path(run_dir) / CONFIG_FILE

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:  # the precision Lightning runs in (``auto`` resolved)
            ran = {**self.cfg.to_dict(), "precision": trainer_precision(trainer)}
            self.path.write_text(json.dumps(ran, indent=1) + "\n")
