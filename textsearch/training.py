"""The one place that turns a config into a trained model.

``python -m textsearch.train``, every search trial and the single-trial debug run all call
:func:`train` with a :class:`textsearch.config.TrainConfig`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from textsearch.config import PRECISIONS, TrainConfig, check_option, coerce
from textsearch.data import DATA_CLASSES, BaseDataModule, DataBundle
from textsearch.errors import UserError
from textsearch.lit_model import LitModel
from textsearch.models.cnn import CNN
from textsearch.models.mlp import MLP

__all__ = ["PRECISIONS", "TrainConfig", "TrainResult", "check_option", "coerce", "train",
           "evaluate_checkpoint", "make_model", "make_datamodule", "make_lit_model"]

log = logging.getLogger(__name__)

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*The given NumPy array is not writable.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*You are using `torch.load` with.*")


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
