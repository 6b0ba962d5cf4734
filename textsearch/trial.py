"""One search trial: the same :func:`textsearch.training.train`, reporting once per epoch.

Inside Ray Tune (:func:`trial_in_tune`) each epoch's metrics go to ``tune.report``, after the
trial wrote them to its folder with a Lightning checkpoint, so ASHA can stop the trial and
a stopped, crashed or interrupted trial keeps its state.  Outside Ray (:func:`run_trial` with ``in_tune=False``,
the ``--debug`` run) the same code prints each epoch's metrics instead.
"""

from __future__ import annotations

import csv
import io
import json
import logging
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
import torch
from pytorch_lightning.callbacks import Callback

from textsearch.data import DataBundle
from textsearch.data.util import atomic_path
from textsearch.errors import TrialGPUError
from textsearch.layout import (
    BEST_CHECKPOINT,
    LATEST_CHECKPOINT,
    LIVE_FILE,
    PROGRESS_FILE,
    TEST_METRICS,
)
from textsearch.summary import evaluate_best_meanwhile, finite_number, read_progress
from textsearch.training import (
    ConfigFile,
    TrainConfig,
    TrainResult,
    device_name,
    train,
    trainer_precision,
)

LOADED_AT = time.time()  # when this module (and torch and Lightning with it) finished loading
LIVE_EVERY_S = 0.5
REPORTED = ("val_acc", "val_loss", "train_loss", "train_acc", "val_cer", "val_line_acc")


def epoch_metrics(trainer: pl.Trainer, pl_module) -> dict[str, float]:
    """The epoch's metrics as plain floats, plus throughput and the 1-based epoch."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k in REPORTED and v.numel() == 1}
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


class ProgressLog:
    """A trial's ``progress.csv``: one row per reported epoch, appended by the trial itself.

    The columns are the first row's.  Each row is one write of one whole line, so a trial
    killed mid-write leaves at most a last line without its newline, which reading skips
    and the next append replaces.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, str]]:
        return read_progress(self.path)

    def append(self, row: dict[str, Any]) -> None:
        text = self.path.read_text() if self.path.exists() else ""
        whole = text[:text.rfind("\n") + 1]  # a half-written last line is dropped
        if whole != text:
            self.path.write_text(whole)
        header = whole.split("\n", 1)[0].split(",") if whole else list(row)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if not whole:
            writer.writerow(header)
        writer.writerow(["" if row.get(k) is None else row.get(k) for k in header])
        with self.path.open("a") as f:
            f.write(out.getvalue())
            f.flush()
            os.fsync(f.fileno())


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
        self.metric, self.sign = metric, 1.0 if mode == "max" else -1.0
        self.progress = ProgressLog(self.trial_dir / PROGRESS_FILE)
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
            stamp = time.strftime("%Y%m%d-%H%M%S")
            os.replace(self.progress.path, self.progress.path.with_name(f"{PROGRESS_FILE}.{stamp}"))
            for stale in (BEST_CHECKPOINT, TEST_METRICS):
                (self.trial_dir / stale).unlink(missing_ok=True)
            rows = []
        values = [finite_number(r.get(metric)) for r in rows]
        self.best = max((self.sign * v for v in values if v is not None), default=None)
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
        import ray
        from ray import tune

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
        if not logged and value is not None and (self.best is None or
                                                 self.sign * value > self.best):
            self.best = self.sign * value
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
        self.path = Path(trial_dir) / LIVE_FILE
        self._written = 0.0
        self._epoch_start = time.perf_counter()
        self._samples = 0

    def _write(self, state: dict[str, Any], force: bool = False) -> None:
        now = time.time()
        if not force and now - self._written < LIVE_EVERY_S:
            return
        self._written = now
        tmp = self.path.with_name(f".{LIVE_FILE}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps({**state, "updated": now}))
            os.replace(tmp, self.path)
        except OSError:  # the view is a convenience: a full disk is the search's business
            pass

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

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        metrics = epoch_metrics(trainer, pl_module)
        self.history.append(metrics)
        shown = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in metrics.items())
        print(f"[trial report] {shown}", file=sys.stderr, flush=True)


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """A Lightning checkpoint's contents; None (with a warning) if it is damaged."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
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
              callbacks: list[Callback] | None = None, metric: str = "val_acc",
              mode: str = "max", resumed: dict[str, Any] | None = None,
              startup: dict[str, float] | None = None,
              before_last_report: Callable[[], None] | None = None) -> TrainResult:
    """Train ``fixed`` + ``params`` (params win), as one trial of a search.

    In Tune, ``run_dir`` is the trial's folder in the search directory, and ``ckpt_path``
    its ``latest.ckpt`` when it resumes, with ``resumed`` the metrics of the epoch it holds
    (:func:`resume_point`); ``metric``/``mode`` choose its ``best.ckpt``.
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
                   enable_checkpointing=not in_tune)
    if in_tune:
        reporter.flush()
    return result


def trial_in_tune(config: dict[str, Any], bundle: DataBundle | None = None,
                  fixed: dict[str, Any] | None = None, cpu_threads: int = 1,
                  metric: str = "val_acc", mode: str = "max",
                  started_at: float | None = None) -> None:
    """A trial in Ray Tune (entered through :func:`textsearch.trainable.tune_trial`).

    ``fixed["gpus"]`` is the trial's GPU share; the GPU itself is the one Ray assigned.
    The trial continues from its folder's ``latest.ckpt`` when there is one: a search
    resumed, or Ray retrying the trial after a crash.  ``started_at``: when the trial's
    process took the trial (Unix s), reported with its other start-up times.
    """
    import ray
    from ray import tune

    for name in ("pytorch_lightning", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    fixed = dict(fixed or {})
    if torch.cuda.is_available():  # this process may have run a trial before (reused actor)
        torch.cuda.reset_peak_memory_stats()
    accelerator, devices = lightning_devices(ray.get_gpu_ids(),
                                             os.environ.get("CUDA_VISIBLE_DEVICES"),
                                             torch.cuda.device_count())
    if accelerator == "cpu" and fixed.get("gpus", 0) > 0:
        raise TrialGPUError(f"this trial holds {fixed['gpus']:g} GPU but Ray assigned it none")
    context = tune.get_context()
    folder = stored_trial_dir(context.get_storage(), Path(context.get_trial_dir()))
    ckpt_path, resumed = resume_point(folder / LATEST_CHECKPOINT)
    startup = {"process_started_at": psutil.Process().create_time(),
               "modules_loaded_at": LOADED_AT, "trial_started_at": started_at or time.time()}
    run_trial(config, fixed, bundle, folder, in_tune=True, cpu_threads=cpu_threads,
              ckpt_path=ckpt_path, resumed=resumed, metric=metric, mode=mode, startup=startup,
              before_last_report=lambda: test_the_best(folder.parent, bundle,
                                                       fixed.get("gpus", 0)))


def test_the_best(search_dir: Path, bundle: DataBundle | None, gpus: float) -> None:
    """Once the search has handed out all its trials, a trial at its last epoch (logged, not
    yet reported) tests the search's best checkpoint so far (its own or another trial's),
    unless it was tested already.

    No trial waits for this trial's slot then, so the test runs on the core (or GPU share)
    the search's tail leaves idle, while the last trials still train, in a process that has
    torch, Lightning and the data loaded.  A trial that ends as the new best tests itself; a
    best another process is testing is left to it (:class:`textsearch.tail.TailTest` tests
    on the slots that trials stopped early free), and the search's end tests the final best
    only if nobody did.  A test that fails here is left to the end (the trial's own epochs
    are all logged by then).
    """
    evaluate_best_meanwhile(search_dir, bundle, gpus=gpus,  # not while trials are to come:
                            ready=lambda summary: summary["num_trials"] >= summary["num_samples"])


def stored_trial_dir(storage, trial_dir: Path) -> Path:
    """The trial's folder in the search directory, as seen from the node that runs it.

    ``trial_dir`` is Ray's staging folder on that node, which Ray syncs to the search
    directory only in some cases (not from another node, not from a reused process).  So a
    trial writes its progress, TensorBoard events and checkpoints straight to the search
    directory (a path every node reaches, see ``--results_dir``).
    """
    if getattr(storage.storage_filesystem, "type_name", "") != "local":
        return trial_dir
    return Path(storage.trial_fs_path)
