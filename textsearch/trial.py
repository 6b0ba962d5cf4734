"""One search trial: the same :func:`textsearch.training.train`, reporting once per epoch.

Inside Ray Tune (:func:`trial_in_tune`) each epoch's metrics go to ``tune.report``, after the
trial wrote them to its folder with a Lightning checkpoint, so ASHA can stop the trial and
a stopped, crashed or interrupted trial keeps its state.  Outside Ray (:func:`run_trial` with ``in_tune=False``,
the ``--debug`` run) the same code prints each epoch's metrics instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytorch_lightning as pl
import ray
import torch
from pytorch_lightning.callbacks import Callback
from ray import tune

from textsearch import cli
from textsearch.config import TrainConfig
from textsearch.data import DataBundle
from textsearch.devices import cuda, device_name, trainer_precision, trial_accelerator
from textsearch.metrics import LOGGED, better
from textsearch.paths import atomic_path
from textsearch.record import (
    BEST_CHECKPOINT,
    LATEST_CHECKPOINT,
    TEST_METRICS,
    ProgressLog,
    finite_number,
    write_live,
)
from textsearch.tester import test_at_last_epoch
from textsearch.training import ConfigFile, TrainResult, train

LOADED_AT = time.time()  # when this module (and torch and Lightning with it) finished loading
LIVE_EVERY_S = 0.5


def epoch_metrics(trainer: pl.Trainer, pl_module) -> dict[str, float]:
    """The epoch's metrics as plain floats, plus throughput and the 1-based epoch."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k in LOGGED and v.numel() == 1}
    metrics.update(pl_module.compute_epoch_stats())
    dm = getattr(trainer, "datamodule", None)
    if dm is not None and dm.bundle is not None:
        metrics.update(pl_module.model_stats(tuple(dm.bundle.input_dims)))
    metrics["epoch"] = trainer.current_epoch + 1
    metrics["pid"] = os.getpid()  # the process that trained it (a reused one runs many trials)
    device = device_name(trainer)
    metrics["device"] = device
    metrics["precision"] = trainer_precision(trainer)  # what Lightning runs in, auto resolved
    metrics["gpu_mem_peak_mb"] = (torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
                                  if device.startswith("cuda") else 0.0)
    if dm is not None and dm.bundle is not None:
        # 1.0 when the images are a read-only view into shared memory (Ray's object store),
        # i.e. this trial holds no copy of its own.
        metrics["data_shared"] = float(not dm.bundle.x_trainval.flags.writeable)
    return metrics


class TuneReportCallback(Callback):
    """Reports each epoch to Ray Tune once the epoch is fully done, and keeps its checkpoint.

    At an epoch's end its metrics are gathered and a checkpoint is written (the usual
    end-of-epoch checkpoint, from which Lightning resumes at the next epoch), holding the
    metrics too (this callback's state).  They are reported at the start of the next epoch,
    or at the end of training, when Lightning has logged the epoch: ASHA may stop the trial
    right after a report, and nothing of the epoch must be lost then.  A report:

    1. makes the checkpoint the trial's ``latest.ckpt`` (an atomic rename), and its
       ``best.ckpt`` when ``metric`` improved (a hard link);
    2. appends the metrics to the trial's ``progress.csv``;
    3. at the end of training, calls ``before_last_report`` (the scheduler stops a trial
       at its last report, so nothing after that report runs);
    4. hands them to ``tune.report``.

    A trial that starts from ``latest.ckpt`` (resumed, or retried after a crash) reports that
    checkpoint's epoch first: logged too if the trial was stopped between steps 1 and 2, so
    each epoch is logged once, and told again to the search either way (the driver may have
    been stopped before it heard it; the searcher takes each epoch once).
    """

    def __init__(self, trial_dir: Path, metric: str, mode: str,
                 resumed: dict[str, Any] | None = None,
                 startup: dict[str, float] | None = None,
                 before_last_report: Callable[[], None] | None = None) -> None:
        self.trial_dir = Path(trial_dir)
        self.startup = dict(startup or {})
        self.before_last_report = before_last_report
        self.metric, self.mode = metric, mode
        self.progress = ProgressLog(self.trial_dir)
        self._pending: tuple[dict[str, Any], Path | None] | None = None
        self._state: dict[str, Any] = {}
        self._last_report_s = 0.0
        self._started = time.time()
        for stale in self.trial_dir.glob(".ckpt-*"):  # left by a worker that was killed
            stale.unlink(missing_ok=True)
        rows = self.progress.rows()
        if rows and resumed is None:
            # no usable checkpoint to go on from: the trial starts again at epoch 1, so what
            # it logged before is set aside rather than followed by a second epoch 1
            self.progress.set_aside(time.strftime("%Y%m%d-%H%M%S"))
            for stale in (BEST_CHECKPOINT, TEST_METRICS):
                (self.trial_dir / stale).unlink(missing_ok=True)
            rows = []
        values = [finite_number(r.get(metric)) for r in rows]
        self.best = max((v for v in values if v is not None),  # the best logged so far
                        key=lambda v: v if mode == "max" else -v, default=None)
        if resumed is not None and resumed.get("epoch") == len(rows) + 1:
            self._pending = (dict(resumed), None)  # checkpointed, never logged
        elif resumed is not None and resumed.get("epoch") == len(rows):
            self._pending = ({**resumed, "logged": True}, None)  # logged; tell it again

    def state_dict(self) -> dict[str, Any]:
        return dict(self._state)  # saved in the checkpoint: that epoch's metrics

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass  # read by resume_point before training starts

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".ckpt-", dir=self.trial_dir)
        os.close(fd)
        start = time.perf_counter()
        metrics = epoch_metrics(trainer, pl_module)
        metrics["timestamp"] = time.time()
        metrics["time_total_s"] = metrics["timestamp"] - self._started  # since this run began
        # per-epoch cost beside the training loop: the previous epoch's report (TensorBoard
        # flush, checkpoint links, progress row, tune.report); this one's checkpoint below
        metrics["report_s"] = self._last_report_s
        metrics.update(self.startup)  # when this run's process started, loaded, took the trial
        self._state = {METRICS_KEY: metrics}
        trainer.save_checkpoint(name)
        metrics["checkpoint_s"] = time.perf_counter() - start
        self._pending = (metrics, Path(name))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._report(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._report(trainer, last=True)

    def flush(self) -> None:
        """Report what is still pending: a resumed final epoch, which Lightning skips."""
        self._report(None, last=True)

    def _report(self, trainer: pl.Trainer | None, last: bool = False) -> None:
        if self._pending is None:
            return
        (metrics, checkpoint), self._pending = self._pending, None
        logged = metrics.pop("logged", False)
        context = ray.get_runtime_context()
        metrics["node_id"] = context.get_node_id()  # which machine trained it
        metrics["ray_cpus"] = context.get_assigned_resources().get("CPU", 0.0)  # what Ray gave it
        start = time.perf_counter()
        if trainer is not None and trainer.logger is not None:
            trainer.logger.save()
            trainer.logger.experiment.flush()
        latest = self.trial_dir / LATEST_CHECKPOINT
        if checkpoint is not None:
            with open(checkpoint, "rb") as f:  # on disk before it takes latest.ckpt's name
                os.fsync(f.fileno())
            os.replace(checkpoint, latest)
        value = finite_number(metrics.get(self.metric))
        if not logged and value is not None and better(value, self.best, self.mode):
            self.best = value
            link_or_copy(latest, self.trial_dir / BEST_CHECKPOINT)
        if not logged:
            self.progress.append(metrics)
        if last and self.before_last_report is not None:
            self.before_last_report()
        tune.report(metrics)
        # including the wait until the search has taken the result: tune.report returns
        # only then, and the trial idles meanwhile
        self._last_report_s = time.perf_counter() - start


METRICS_KEY = "epoch_metrics"  # in a checkpoint's state of TuneReportCallback


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s file: a hard link where possible, atomically."""
    with atomic_path(target) as tmp:
        tmp.unlink()  # atomic_path made an empty file there; the link takes its name
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


class LiveProgress(Callback):
    """Keeps the trial's ``live.json`` (read by :mod:`textsearch.live`): where in its epoch
    the trial is, rewritten atomically at most every ``LIVE_EVERY_S`` seconds."""

    def __init__(self, trial_dir: Path) -> None:
        self.trial_dir = Path(trial_dir)
        self._written = 0.0
        self._epoch_start = time.perf_counter()
        self._samples = 0

    def _write(self, state: dict[str, Any], force: bool = False) -> None:
        now = time.time()
        if not force and now - self._written < LIVE_EVERY_S:
            return
        self._written = now
        write_live(self.trial_dir, {**state, "updated": now})

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._epoch_start, self._samples = time.perf_counter(), 0
        self._write(self._state(trainer, 0, "train"), force=True)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch,
                           batch_idx: int) -> None:
        self._samples += len(batch[1])
        self._write(self._state(trainer, batch_idx + 1, "train"))

    def on_validation_start(self, trainer: pl.Trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._write(self._state(trainer, trainer.num_training_batches, "val"), force=True)

    def _state(self, trainer: pl.Trainer, batch: int, stage: str) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self._epoch_start, 1e-9)
        total = trainer.num_training_batches
        return {"epoch": trainer.current_epoch + 1, "max_epochs": trainer.max_epochs,
                "batch": batch, "batches": int(total) if total != float("inf") else None,
                "samples_per_s": self._samples / elapsed, "stage": stage,
                "device": str(trainer.strategy.root_device), "pid": os.getpid()}


class PrintReportCallback(Callback):
    """The debug run's stand-in for Tune: prints what a trial would report."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        metrics = epoch_metrics(trainer, pl_module)
        shown = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in metrics.items())
        print(f"[trial report] {shown}", file=sys.stderr, flush=True)


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """A Lightning checkpoint's contents; None (with a warning) if it is damaged."""
    try:
        # weights_only: the checkpoint holds tensors and plain values (the metrics included),
        # so a damaged or foreign file cannot run code while it is read
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "state_dict" not in state or "epoch" not in state:
            raise ValueError("not a Lightning checkpoint")
    except Exception as err:
        print(f"textsearch: checkpoint {path} is damaged ({type(err).__name__}: {err}); "
              "not resuming from it", file=sys.stderr, flush=True)
        return None
    return state


def saved_epoch_metrics(state: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of the epoch a checkpoint holds (:class:`TuneReportCallback`'s state)."""
    for key, value in state.get("callbacks", {}).items():
        if "TuneReportCallback" in key and METRICS_KEY in value:
            return dict(value[METRICS_KEY])
    return None


def resume_point(latest: Path) -> tuple[str | None, dict[str, Any] | None]:
    """Where a trial goes on from: ``latest.ckpt`` and the metrics of the epoch it holds.

    ``(None, None)``: the trial starts from scratch, its old progress set aside.  So it does
    without a checkpoint, with a damaged one, and with one that holds no epoch metrics
    (written by an older textsearch), rather than log epochs it cannot name.  The
    checkpoint is read once here.
    """
    state = read_checkpoint(latest) if latest.exists() else None
    metrics = saved_epoch_metrics(state) if state is not None else None
    return (str(latest), metrics) if metrics is not None else (None, None)


def run_trial(params: dict[str, Any], fixed: dict[str, Any], bundle: DataBundle | None,
              run_dir: Path, *, in_tune: bool, cpu_threads: int | None = None,
              ckpt_path: str | None = None, progress: bool = False,
              callbacks: list[Callback] | None = None, metric: str = "val_acc",
              mode: str = "max", resumed: dict[str, Any] | None = None,
              startup: dict[str, float] | None = None,
              before_last_report: Callable[[], None] | None = None,
              accelerator=None) -> TrainResult:
    """Train ``fixed`` + ``params`` (params win), as one trial of a search.

    In Tune, ``run_dir`` is the trial's folder in the search directory, and ``ckpt_path``
    its ``latest.ckpt`` when it resumes, with ``resumed`` the metrics of the epoch it holds
    (:func:`resume_point`); ``metric``/``mode`` choose its ``best.ckpt``; ``accelerator``:
    the device the trial checked (:func:`textsearch.devices.trial_accelerator`).
    """
    cfg = TrainConfig.from_dict({**fixed, **params})
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    reporter = (TuneReportCallback(run_dir, metric, mode, resumed, startup, before_last_report)
                if in_tune else PrintReportCallback())
    if in_tune:  # the driver's live view reads where in its epoch the trial is
        callbacks = [LiveProgress(run_dir), *(callbacks or [])]
    # In Tune, the checkpoints are the reporter's (latest.ckpt and best.ckpt).
    result = train(cfg, run_dir, bundle=bundle,
                   callbacks=[reporter, ConfigFile(cfg, run_dir), *(callbacks or [])],
                   ckpt_path=ckpt_path, test=not in_tune, enable_progress_bar=progress,
                   enable_checkpointing=not in_tune, accelerator=accelerator)
    if in_tune:
        reporter.flush()
    return result


def trial_in_tune(config: dict[str, Any], bundle: DataBundle | None = None,
                  fixed: dict[str, Any] | None = None, cpu_threads: int = 1,
                  metric: str = "val_acc", mode: str = "max", search_dir: str = "",
                  started_at: float | None = None) -> None:
    """A trial in Ray Tune (entered through :func:`textsearch.trainable.tune_trial`).

    ``fixed["gpus"]`` is the trial's GPU share; the GPU itself is the one Ray assigned.
    ``search_dir``: the search folder (on a cluster, a path every node shares); the trial
    writes its progress, TensorBoard events and checkpoints straight to its folder there,
    named as the search named it (Ray's own trial folder is a staging copy on the node
    that runs it, synced only in some cases).  The trial continues from its folder's
    ``latest.ckpt`` when there is one: a search resumed, or Ray retrying the trial after a
    crash.  ``started_at``: when the trial's process took the trial (Unix s), reported with
    its other start-up times.
    """
    cli.quiet_library_logs()
    fixed = dict(fixed or {})
    if torch.cuda.is_available():  # this process may have run a trial before (reused actor)
        torch.cuda.reset_peak_memory_stats()
    accelerator = trial_accelerator(fixed.get("gpus", 0), ray.get_gpu_ids(),
                                    os.environ.get("CUDA_VISIBLE_DEVICES"), cuda())
    folder = Path(search_dir) / Path(tune.get_context().get_trial_dir()).name
    ckpt_path, resumed = resume_point(folder / LATEST_CHECKPOINT)
    startup = {"process_started_at": psutil.Process().create_time(),
               "modules_loaded_at": LOADED_AT, "trial_started_at": started_at or time.time()}
    run_trial(config, fixed, bundle, folder, in_tune=True, cpu_threads=cpu_threads,
              ckpt_path=ckpt_path, resumed=resumed, metric=metric, mode=mode, startup=startup,
              accelerator=accelerator,
              before_last_report=lambda: test_at_last_epoch(search_dir, bundle,
                                                            fixed.get("gpus", 0)))
