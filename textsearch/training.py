"""The one place that turns a config into a trained model.

``python -m textsearch.train``, every search trial and the single-trial debug run all call
:func:`train`.  A :class:`TrainConfig` is flat (model, data and optimisation options side by
side) so that a search space can set any of them by name.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from textsearch.data import DATA_CLASSES, BaseDataModule, DataBundle, DataConfig
from textsearch.errors import UserError
from textsearch.lit_model import LitModel
from textsearch.models import MODEL_CLASSES, CNNConfig, MLPConfig
from textsearch.models.cnn import CNN
from textsearch.models.mlp import MLP
from textsearch.options import option, subset

log = logging.getLogger(__name__)

PRECISIONS = ("32", "16-mixed", "bf16-mixed")

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*The given NumPy array is not writable.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*You are using `torch.load` with.*")


@dataclass
class RunOptions:
    """What to train, and how long."""

    model_class: str = option("CNN", f"model to train: {', '.join(MODEL_CLASSES)}",
                              choices=MODEL_CLASSES)
    data_class: str = option("EMNIST", f"dataset: {', '.join(DATA_CLASSES)}", choices=DATA_CLASSES)
    max_epochs: int = option(5, "number of training epochs", minimum=0, above=True)
    seed: int = option(0, "random seed (weights, training order)", minimum=0)


@dataclass
class OptimOptions:
    """Adam and its schedule.  Units: lr per step."""

    lr: float = option(1e-3, "learning rate (Adam)", minimum=0, above=True)
    one_cycle_max_lr: float = option(0.0, "peak learning rate of a one-cycle schedule "
                                     "(0: constant lr)", minimum=0)
    weight_decay: float = option(0.0, "Adam weight decay", minimum=0)


@dataclass
class HardwareOptions:
    """Where a run trains."""

    gpus: float = option(0.0, "GPUs to train on (0: CPU; a search trial may hold a share of one)",
                         minimum=0)
    precision: str = option("32", "Lightning precision (16-mixed needs a GPU)", choices=PRECISIONS)
    num_workers: int = option(0, "DataLoader worker processes (0: load in the main process)",
                              minimum=0)


@dataclass
class DataOptions:
    """The data a run sees."""

    batch_size: int = option(128, "examples per batch", minimum=0, above=True)
    val_fraction: float = option(0.2, "share of the training file held out for validation",
                                 fraction=True)
    data_fraction: float = option(1.0, "share of the training split to use", fraction=True)
    balance: bool = option(False, "EMNIST: cap every class at the mean class count, in train, "
                           "val and test alike (default: NIST's natural class mix)")


@dataclass
class DebugOptions:
    """Lightning's debugging switches."""

    overfit_batches: float = option(0.0, "overfit this many batches (>= 1) or this fraction "
                                    "(< 1) of the data, validating on them", minimum=0)
    fast_dev_run: int = option(0, "run this many batches of train/val as a smoke check "
                               "(no value: 1)", minimum=0, flag_const=1)
    limit_train_batches: float = option(1.0, "train on this many batches (> 1) or this fraction "
                                        "(<= 1) per epoch", minimum=0, above=True)
    limit_val_batches: float = option(1.0, "validate on this many batches (> 1) or this "
                                      "fraction (<= 1)", minimum=0)


@dataclass
class TrainConfig(CNNConfig, MLPConfig, DebugOptions, DataOptions, HardwareOptions, OptimOptions,
                  RunOptions):
    """Everything one training run needs, flat, so a search space can set any of it by name.

    Each concern declares its options once (:func:`textsearch.options.option`): the
    dataclasses above and the models' :class:`CNNConfig` and :class:`MLPConfig`.
    """

    extra: dict[str, Any] = field(default_factory=dict)  # ignored keys (e.g. search metadata)

    @classmethod
    def field_types(cls) -> dict[str, type]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "extra"}

    @classmethod
    def from_dict(cls, values: dict[str, Any], strict: bool = True) -> TrainConfig:
        """Build a config, checking names and types; unknown names are errors if ``strict``."""
        types = cls.field_types()
        kwargs: dict[str, Any] = {}
        extra = {}
        for name, value in values.items():
            if name not in types:
                if strict:
                    raise UserError(f"unknown config key {name!r}; known: {', '.join(types)}")
                extra[name] = value
                continue
            kwargs[name] = check_option(name, coerce(name, value, types[name]))
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d

    def validate(self) -> None:
        if self.model_class not in MODEL_CLASSES:
            raise UserError(f"unknown model class {self.model_class!r}; known: "
                            f"{', '.join(MODEL_CLASSES)}")
        if self.data_class not in DATA_CLASSES:
            raise UserError(f"unknown data class {self.data_class!r}; known: "
                            f"{', '.join(DATA_CLASSES)}")
        if self.data_class == "EMNISTLines":
            raise UserError("EMNISTLines yields whole lines (token sequences); the MLP and CNN "
                            "classify single characters: use --data_class EMNIST or MNIST")
        for name in ("max_epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"lr must be positive, got {self.lr}")
        if self.gpus < 0:
            raise UserError(f"gpus must be >= 0, got {self.gpus}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "16-mixed" and self.gpus == 0:
            raise UserError("precision 16-mixed needs a GPU; on the CPU use bf16-mixed or 32")
        if self.overfit_batches < 0 or self.fast_dev_run < 0:
            raise UserError("overfit_batches and fast_dev_run must be >= 0")
        if self.limit_train_batches <= 0 or self.limit_val_batches < 0:
            raise UserError("limit_train_batches must be > 0 and limit_val_batches >= 0")
        self.data_config().validate()
        self.cnn_config().validate()

    def data_config(self) -> DataConfig:
        return DataConfig(batch_size=self.batch_size, num_workers=self.num_workers,
                          val_fraction=self.val_fraction, data_fraction=self.data_fraction,
                          seed=self.seed, pin_memory=self.gpus > 0,
                          overfit=bool(self.overfit_batches))

    def cnn_config(self) -> CNNConfig:
        return subset(CNNConfig, self)


def check_option(name: str, value: Any) -> Any:
    """``value`` if it is within what the option declares (choices, minimum, fraction)."""
    m = {f.name: f.metadata for f in dataclasses.fields(TrainConfig)}[name]
    if m.get("choices") is not None and value not in m["choices"]:
        raise UserError(f"{name} must be one of {', '.join(map(str, m['choices']))}, got {value!r}")
    if m.get("fraction") and not 0 < value <= 1:
        raise UserError(f"{name} must be a fraction in (0, 1], got {value}")
    low = m.get("minimum")
    if low is not None and not isinstance(value, bool) and (value <= low if m["above"] else value < low):
        raise UserError(f"{name} must be {'>' if m['above'] else '>='} {low:g}, got {value}")
    return value


def coerce(name: str, value: Any, typ: type) -> Any:
    """Check ``value`` against a config field's type (ints accepted for floats)."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str) and value:
            return value
    raise UserError(f"{name} must be of type {typ.__name__}, got {value!r}")


@dataclass
class TrainResult:
    """What a run produced.  Metrics are floats in [0, 1] for accuracies."""

    config: TrainConfig
    run_dir: Path
    metrics: dict[str, float]
    best_checkpoint: str | None
    test_acc: float | None
    epochs: int


def make_datamodule(cfg: TrainConfig, bundle: DataBundle | None = None) -> BaseDataModule:
    cls = DATA_CLASSES[cfg.data_class]
    kwargs = {"balance": cfg.balance} if cfg.data_class == "EMNIST" else {}
    return cls(cfg.data_config(), bundle=bundle, **kwargs)


def make_model(cfg: TrainConfig, input_dims: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    if cfg.model_class == "MLP":
        return MLP(input_dims, num_classes, fc1=cfg.fc1, fc2=cfg.fc2, dropout=cfg.dropout)
    return CNN(input_dims, num_classes, cfg.cnn_config())


def make_lit_model(cfg: TrainConfig, bundle: DataBundle) -> LitModel:
    num_classes = bundle.output_dims[0]
    model = make_model(cfg, bundle.input_dims, num_classes)
    return LitModel(model, num_classes, lr=cfg.lr, one_cycle_max_lr=cfg.one_cycle_max_lr or None,
                    weight_decay=cfg.weight_decay)


def accelerator_for(gpus: float) -> tuple[str, int | str]:
    """Lightning's (accelerator, devices) for ``gpus``; refuses GPUs that are not there."""
    if gpus <= 0:
        return "cpu", 1
    available = torch.cuda.device_count()
    if available == 0:
        raise UserError(f"asked for {gpus:g} GPU(s) but this machine has no usable GPU; use --gpus 0")
    if gpus > available:
        raise UserError(f"asked for {gpus:g} GPUs but only {available} are present")
    if gpus < 1:  # a share of one GPU, as in a search trial: the one device Ray assigned
        return "gpu", 1
    if not float(gpus).is_integer():
        raise UserError(f"gpus above 1 must be a whole number, got {gpus:g}")
    return "gpu", int(gpus)


def device_name(trainer: pl.Trainer) -> str:
    """The device a run trains on, as torch names it (``cuda:0``, ``cpu``)."""
    return str(trainer.strategy.root_device)


def flat_hparams(cfg: TrainConfig) -> dict[str, bool | int | float | str]:
    return {k: v for k, v in cfg.to_dict().items() if isinstance(v, (bool, int, float, str))}


def log_hparams(logger: TensorBoardLogger, cfg: TrainConfig, metric_names: list[str]) -> None:
    """Write the HParams plugin's session records; metric values come from the scalars."""
    from torch.utils.tensorboard.summary import hparams

    exp, ssi, sei = hparams(flat_hparams(cfg), {m: 0.0 for m in metric_names})
    # Lightning's log_hyperparams(params, metrics) would also log these 0.0 placeholders as
    # the metrics' first values; the SummaryWriter's own file writer takes just the records.
    writer = logger.experiment.file_writer
    for summary in (exp, ssi, sei):
        writer.add_summary(summary)
    writer.flush()


HPARAM_METRICS = ["val_acc", "val_loss", "train_loss", "test_acc"]


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
) -> TrainResult:
    """Train one model as ``cfg`` says; logs and checkpoints go under ``run_dir``.

    ``bundle``: data already in memory (a search hands it over from Ray's object store).
    ``ckpt_path``: a Lightning checkpoint to resume from. ``test``: evaluate the best
    checkpoint on the test split at the end.
    """
    cfg.validate()
    accelerator, devices = accelerator_for(cfg.gpus)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = make_datamodule(cfg, bundle)
    if bundle is None:
        dm.prepare_data()
    bundle = dm.get_bundle()
    lit = make_lit_model(cfg, bundle)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard",
                               default_hp_metric=False)
    log_hparams(logger, cfg, HPARAM_METRICS)
    all_callbacks = list(callbacks or [])
    checkpoint_cb = None
    if enable_checkpointing and not cfg.fast_dev_run:
        monitor = "val_acc" if cfg.limit_val_batches > 0 else "train_acc"
        checkpoint_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best",
                                        monitor=monitor, mode="max", save_top_k=1,
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
        accelerator=accelerator,
        devices=devices,
        precision=cfg.precision,
        max_epochs=cfg.max_epochs,
        logger=logger,
        callbacks=all_callbacks,
        enable_checkpointing=checkpoint_cb is not None,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=enable_progress_bar,
        fast_dev_run=cfg.fast_dev_run,
        limit_train_batches=limit_train if isinstance(limit_train, int) else _count_or_fraction(limit_train),
        limit_val_batches=limit_val if isinstance(limit_val, int) else _count_or_fraction(limit_val),
        num_sanity_val_steps=0,
        log_every_n_steps=1,  # only epoch-level values are logged
        deterministic=False,
        default_root_dir=str(run_dir),
    )
    trainer.fit(lit, datamodule=dm, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    best = checkpoint_cb.best_model_path if checkpoint_cb and checkpoint_cb.best_model_path else None
    test_acc = None
    if best is not None and checkpoint_cb.best_model_score is not None:
        metrics[f"best_{checkpoint_cb.monitor}"] = float(checkpoint_cb.best_model_score)
    if test and not cfg.fast_dev_run:
        out = trainer.test(lit, datamodule=dm, ckpt_path=best, verbose=False)
        test_acc = float(out[0]["test_acc"])
        metrics["test_acc"] = test_acc
    logger.finalize("success")
    return TrainResult(cfg, run_dir, metrics, best, test_acc, trainer.current_epoch)


def _count_or_fraction(v: float) -> int | float:
    """Lightning reads an int as a number of batches and a float as a fraction."""
    return int(v) if v > 1 else float(v)


def evaluate_checkpoint(cfg: TrainConfig, checkpoint: str, bundle: DataBundle | None = None,
                        split: str = "test") -> dict[str, float]:
    """Load a checkpoint written by :func:`train` and evaluate it on ``split``."""
    accelerator, devices = accelerator_for(min(cfg.gpus, 1) if cfg.gpus else 0)
    dm = make_datamodule(cfg, bundle)
    bundle = dm.get_bundle()
    lit = make_lit_model(cfg, bundle)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        lit.load_state_dict(state["state_dict"])
    except Exception as err:
        raise UserError(f"cannot load checkpoint {checkpoint}: {err}") from None
    trainer = pl.Trainer(accelerator=accelerator, devices=devices, precision=cfg.precision,
                         logger=False, enable_progress_bar=False, enable_model_summary=False)
    run = trainer.test if split == "test" else trainer.validate
    out = run(lit, datamodule=dm, verbose=False)
    return {k: float(v) for k, v in out[0].items()}
