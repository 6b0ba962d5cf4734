"""One search trial: the same :func:`textsearch.training.train`, reporting once per epoch.

Inside Ray Tune (:func:`tune_trial`) each epoch's metrics go to ``tune.report`` together
with a Lightning checkpoint, so ASHA can stop the trial and a stopped, crashed or
interrupted trial keeps its state.  Outside Ray (:func:`run_trial` with ``in_tune=False``,
the ``--debug`` run) the same code prints each epoch's metrics instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from textsearch.data import DataBundle
from textsearch.data.util import atomic_path
from textsearch.errors import TrialGPUError
from textsearch.layout import CHECKPOINT_FILE, LATEST_CHECKPOINT
from textsearch.training import TrainConfig, TrainResult, device_name, train

log = logging.getLogger(__name__)

REPORTED = ("val_acc", "val_loss", "train_loss", "train_acc")


def epoch_metrics(trainer: pl.Trainer, pl_module) -> dict[str, float]:
    """The epoch's metrics as plain floats, plus throughput and the 1-based epoch."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k in REPORTED and v.numel() == 1}
    metrics.update(pl_module.compute_epoch_stats())
    metrics["epoch"] = trainer.current_epoch + 1
    device = device_name(trainer)
    metrics["device"] = device
    metrics["gpu_mem_peak_mb"] = (torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
                                  if device.startswith("cuda") else 0.0)
    dm = getattr(trainer, "datamodule", None)
    if dm is not None and dm.bundle is not None:
        # 1.0 when the images are a read-only view into shared memory (Ray's object store),
        # i.e. this trial holds no copy of its own.
        metrics["data_shared"] = float(not dm.bundle.x_trainval.flags.writeable)
    return metrics


class TuneReportCallback(Callback):
    """Reports each epoch to Ray Tune, with a checkpoint, once the epoch is fully done.

    At an epoch's end its metrics are gathered and a checkpoint is written (the usual
    end-of-epoch checkpoint, from which Lightning resumes at the next epoch).  They are
    sent at the start of the next epoch, or at the end of training, when Lightning has
    logged the epoch: ASHA may stop the trial right after a report, and nothing of the
    epoch must be lost then.

    Once reported, the checkpoint is also linked as ``latest.ckpt`` in the trial's folder.
    Ray registers a reported checkpoint a moment after it logs the result; a search
    interrupted in between would resume the trial from the epoch before, and train an
    epoch twice.  :func:`resume_point` takes whichever of the two is newer.
    """

    def __init__(self, trial_dir: Path) -> None:
        self.trial_dir = Path(trial_dir)
        self._pending: tuple[dict[str, float], Path] | None = None
        for stale in self.trial_dir.glob(".ckpt-*"):  # left by a worker that was killed
            shutil.rmtree(stale, ignore_errors=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        # in the trial's folder, so that latest.ckpt can be a hard link (no second write)
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=self.trial_dir))
        trainer.save_checkpoint(folder / CHECKPOINT_FILE)
        self._pending = (epoch_metrics(trainer, pl_module), folder)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._report(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._report(trainer)

    def _report(self, trainer: pl.Trainer) -> None:
        import ray
        from ray import tune

        if self._pending is None:
            return
        (metrics, folder), self._pending = self._pending, None
        metrics["node_id"] = ray.get_runtime_context().get_node_id()  # which machine trained it
        if trainer.logger is not None:
            trainer.logger.save()
            trainer.logger.experiment.flush()
        try:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))
            keep_latest(folder / CHECKPOINT_FILE, self.trial_dir / LATEST_CHECKPOINT)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def keep_latest(checkpoint: Path, latest: Path) -> None:
    """Make ``latest`` the reported ``checkpoint``, atomically (a hard link where possible)."""
    with atomic_path(latest) as tmp:
        tmp.unlink()  # atomic_path made an empty file there; the link takes its name
        try:
            os.link(checkpoint, tmp)
        except OSError:
            shutil.copyfile(checkpoint, tmp)


class PrintReportCallback(Callback):
    """The debug run's stand-in for Tune: prints what a trial would report."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        metrics = epoch_metrics(trainer, pl_module)
        self.history.append(metrics)
        shown = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in metrics.items())
        print(f"[trial report] {shown}", file=sys.stderr, flush=True)


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a Lightning checkpoint was saved at; None (with a warning) if damaged."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if "state_dict" not in state or "epoch" not in state:
            raise ValueError("not a Lightning checkpoint")
    except Exception as err:
        print(f"textsearch: checkpoint {path} is damaged ({type(err).__name__}: {err}); "
              "not resuming from it", file=sys.stderr, flush=True)
        return None
    return int(state["epoch"])


def resume_point(ray_checkpoint: Path | None, latest: Path) -> str | None:
    """The newer usable one of Ray's restored checkpoint and the trial's ``latest.ckpt``.

    None: the trial starts from scratch (no checkpoint, or only damaged ones).
    """
    candidates = [p for p in (ray_checkpoint, latest) if p is not None and p.exists()]
    epochs = {p: checkpoint_epoch(p) for p in candidates}
    usable = [p for p in candidates if epochs[p] is not None]
    return str(max(usable, key=lambda p: epochs[p])) if usable else None


def lightning_devices(assigned: list, cuda_visible: str | None, cuda_count: int
                      ) -> tuple[str, int]:
    """Lightning's ``(accelerator, devices)`` for the GPUs Ray assigned to a trial.

    ``assigned``: ``ray.get_gpu_ids()`` in the trial's worker (``[0]`` for a quarter of GPU
    0); ``cuda_visible``: the ``CUDA_VISIBLE_DEVICES`` Ray set for it; ``cuda_count``:
    ``torch.cuda.device_count()`` there.  Ray hides every other GPU, so the trial trains on
    ``devices`` local devices.  A trial that holds a GPU share but cannot see a CUDA
    device fails here, naming the GPU: it never trains on the CPU instead.
    """
    if not assigned:
        return "cpu", 1
    ids = ",".join(str(i) for i in assigned)
    if cuda_count < len(assigned):
        sees = "no CUDA device" if cuda_count == 0 else f"only {cuda_count} CUDA device(s)"
        raise TrialGPUError(
            f"Ray assigned GPU {ids} to this trial (CUDA_VISIBLE_DEVICES={cuda_visible}), but "
            f"torch {torch.__version__} sees {sees} there: fix the node's GPU driver or CUDA "
            "set-up, or search with --gpus_per_trial 0")
    return "gpu", len(assigned)


def run_trial(params: dict[str, Any], fixed: dict[str, Any], bundle: DataBundle | None,
              run_dir: Path, *, in_tune: bool, cpu_threads: int | None = None,
              ckpt_path: str | None = None, progress: bool = False,
              callbacks: list[Callback] | None = None) -> TrainResult:
    """Train ``fixed`` + ``params`` (params win), as one trial of a search."""
    cfg = TrainConfig.from_dict({**fixed, **params})
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    reporter = TuneReportCallback(run_dir) if in_tune else PrintReportCallback()
    # In Tune, checkpoints are Tune's (one per epoch, best and latest kept).
    return train(cfg, run_dir, bundle=bundle, callbacks=[reporter, *(callbacks or [])],
                 ckpt_path=ckpt_path, test=not in_tune, enable_progress_bar=progress,
                 enable_checkpointing=not in_tune)


def tune_trial(config: dict[str, Any], bundle: DataBundle | None = None,
               fixed: dict[str, Any] | None = None, cpu_threads: int = 1) -> None:
    """Ray Tune's entry point (wrapped with ``tune.with_parameters``).

    ``fixed["gpus"]`` is the trial's GPU share; the GPU itself is the one Ray assigned.
    """
    import ray
    from ray import tune

    for name in ("pytorch_lightning", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    fixed = dict(fixed or {})
    accelerator, devices = lightning_devices(ray.get_gpu_ids(),
                                             os.environ.get("CUDA_VISIBLE_DEVICES"),
                                             torch.cuda.device_count())
    if accelerator == "cpu" and fixed.get("gpus", 0) > 0:
        raise TrialGPUError(f"this trial holds {fixed['gpus']:g} GPU but Ray assigned it none")
    trial_dir = Path(tune.get_context().get_trial_dir())
    checkpoint = tune.get_checkpoint()
    # A local checkpoint is read where it is; a remote one is fetched and removed afterwards.
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as local:
        ckpt_path = resume_point(Path(local) / CHECKPOINT_FILE if local else None,
                                 trial_dir / LATEST_CHECKPOINT)
        run_trial(config, fixed, bundle, trial_dir, in_tune=True,
                  cpu_threads=cpu_threads, ckpt_path=ckpt_path)
