"""One search trial: the same :func:`textsearch.training.train`, reporting once per epoch.

Inside Ray Tune (:func:`tune_trial`) each epoch's metrics go to ``tune.report`` together
with a Lightning checkpoint, so ASHA can stop the trial and a stopped, crashed or
interrupted trial keeps its state.  Outside Ray (:func:`run_trial` with ``in_tune=False``,
the ``--debug`` run) the same code prints each epoch's metrics instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from textsearch.data import DataBundle
from textsearch.data.util import atomic_path
from textsearch.errors import TrialGPUError
from textsearch.layout import CHECKPOINT_FILE, LATEST_CHECKPOINT, LATEST_METRICS
from textsearch.training import TrainConfig, TrainResult, device_name, train

log = logging.getLogger(__name__)

REPORTED = ("val_acc", "val_loss", "train_loss", "train_acc")


def epoch_metrics(trainer: pl.Trainer, pl_module) -> dict[str, float]:
    """The epoch's metrics as plain floats, plus throughput and the 1-based epoch."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k in REPORTED and v.numel() == 1}
    metrics.update(pl_module.compute_epoch_stats())
    dm = getattr(trainer, "datamodule", None)
    if dm is not None and dm.bundle is not None:
        metrics.update(pl_module.model_stats(tuple(dm.bundle.input_dims)))
    metrics["epoch"] = trainer.current_epoch + 1
    device = device_name(trainer)
    metrics["device"] = device
    metrics["gpu_mem_peak_mb"] = (torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
                                  if device.startswith("cuda") else 0.0)
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

    Just before it is reported, the checkpoint is also linked as ``latest.ckpt`` in the
    trial's folder, its metrics beside it in ``latest.json``.  Ray registers a reported
    checkpoint a moment after it logs the result; a search interrupted in between would
    resume the trial from the epoch before, and train an epoch twice.
    :func:`resume_point` takes whichever of the two is newer, and ``unreported`` (the
    metrics of a resumed epoch that the search never logged) is reported first.
    """

    def __init__(self, trial_dir: Path, unreported: dict[str, Any] | None = None) -> None:
        self.trial_dir = Path(trial_dir)
        self._pending: tuple[dict[str, float], Path] | None = None
        self._last_report_s = 0.0
        for stale in self.trial_dir.glob(".ckpt-*"):  # left by a worker that was killed
            shutil.rmtree(stale, ignore_errors=True)
        if unreported is not None:
            folder = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=self.trial_dir))
            shutil.copyfile(self.trial_dir / LATEST_CHECKPOINT, folder / CHECKPOINT_FILE)
            self._pending = (dict(unreported), folder)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        # in the trial's folder, so that latest.ckpt can be a hard link (no second write)
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=self.trial_dir))
        start = time.perf_counter()
        trainer.save_checkpoint(folder / CHECKPOINT_FILE)
        metrics = epoch_metrics(trainer, pl_module)
        # per-epoch cost beside the training loop: this epoch's checkpoint, and the previous
        # epoch's report (TensorBoard flush, latest.ckpt, tune.report with its checkpoint)
        metrics["checkpoint_s"] = time.perf_counter() - start
        metrics["report_s"] = self._last_report_s
        self._pending = (metrics, folder)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._report(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._report(trainer)

    def flush(self) -> None:
        """Report what is still pending: a resumed final epoch, which Lightning skips."""
        self._report(None)

    def _report(self, trainer: pl.Trainer | None) -> None:
        import ray
        from ray import tune

        if self._pending is None:
            return
        (metrics, folder), self._pending = self._pending, None
        metrics["node_id"] = ray.get_runtime_context().get_node_id()  # which machine trained it
        start = time.perf_counter()
        if trainer is not None and trainer.logger is not None:
            trainer.logger.save()
            trainer.logger.experiment.flush()
        try:
            keep_latest(folder / CHECKPOINT_FILE, metrics, self.trial_dir)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        # including the wait until the search has logged the result and registered the
        # checkpoint: tune.report returns only then, and the trial idles meanwhile
        self._last_report_s = time.perf_counter() - start


def keep_latest(checkpoint: Path, metrics: dict[str, Any], trial_dir: Path) -> None:
    """Make ``latest.ckpt`` the ``checkpoint`` about to be reported, with its metrics.

    Each file is replaced atomically; the checkpoint is a hard link where possible.
    """
    with atomic_path(trial_dir / LATEST_METRICS) as tmp:
        tmp.write_text(json.dumps(metrics))
    with atomic_path(trial_dir / LATEST_CHECKPOINT) as tmp:
        tmp.unlink()  # atomic_path made an empty file there; the link takes its name
        try:
            os.link(checkpoint, tmp)
        except OSError:
            shutil.copyfile(checkpoint, tmp)


def unreported_epoch(trial_dir: Path, resume_from: str | None, logged_epochs: int | None
                     ) -> dict[str, Any] | None:
    """The metrics of the epoch a trial resumes from, if the search never logged them.

    ``logged_epochs``: how many epochs the search had logged for this trial when it was
    resumed (None: not known, so the epoch is taken as logged).  Only ``latest.ckpt`` can
    be ahead of the log: it is linked just before its epoch is reported.
    """
    latest = trial_dir / LATEST_CHECKPOINT
    if logged_epochs is None or resume_from is None or Path(resume_from) != latest:
        return None
    try:
        metrics = json.loads((trial_dir / LATEST_METRICS).read_text())
    except (OSError, ValueError):
        return None
    epoch = checkpoint_epoch(latest)
    if epoch is None or metrics.get("epoch") != epoch + 1 or epoch + 1 <= logged_epochs:
        return None
    return metrics


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
    # on a tie, latest.ckpt: it has its metrics beside it (see unreported_epoch)
    candidates = [p for p in (latest, ray_checkpoint) if p is not None and p.exists()]
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
              callbacks: list[Callback] | None = None,
              unreported: dict[str, Any] | None = None) -> TrainResult:
    """Train ``fixed`` + ``params`` (params win), as one trial of a search.

    In Tune, ``run_dir`` is the trial's folder in the search directory; ``unreported``: see
    :class:`TuneReportCallback`.
    """
    cfg = TrainConfig.from_dict({**fixed, **params})
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    reporter = (TuneReportCallback(run_dir, unreported) if in_tune
                else PrintReportCallback())
    # In Tune, checkpoints are Tune's (one per epoch, best and latest kept).
    result = train(cfg, run_dir, bundle=bundle, callbacks=[reporter, *(callbacks or [])],
                   ckpt_path=ckpt_path, test=not in_tune, enable_progress_bar=progress,
                   enable_checkpointing=not in_tune)
    if in_tune:
        reporter.flush()
    return result


def tune_trial(config: dict[str, Any], bundle: DataBundle | None = None,
               fixed: dict[str, Any] | None = None, cpu_threads: int = 1,
               logged_epochs: dict[str, int] | None = None) -> None:
    """Ray Tune's entry point (wrapped with ``tune.with_parameters``).

    ``fixed["gpus"]`` is the trial's GPU share; the GPU itself is the one Ray assigned.
    ``logged_epochs``: on a resumed search, how many epochs of each trial were logged.
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
    trial_dir = Path(context.get_trial_dir())
    keep = stored_trial_dir(context.get_storage(), trial_dir)
    checkpoint = tune.get_checkpoint()
    # A local checkpoint is read where it is; a remote one is fetched and removed afterwards.
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as local:
        ckpt_path = resume_point(Path(local) / CHECKPOINT_FILE if local else None,
                                 keep / LATEST_CHECKPOINT)
        logged = (logged_epochs or {}).get(context.get_trial_id())
        run_trial(config, fixed, bundle, keep, in_tune=True, cpu_threads=cpu_threads,
                  ckpt_path=ckpt_path, unreported=unreported_epoch(keep, ckpt_path, logged))


def stored_trial_dir(storage, trial_dir: Path) -> Path:
    """The trial's folder in the search directory, as seen from the node that runs it.

    ``trial_dir`` is Ray's staging folder on that node.  Ray syncs it to the search
    directory only for a fresh trial process on the driver's node: not on another node, not
    in a reused process, and not across Ray sessions.  So a trial writes its TensorBoard
    events and ``latest.ckpt`` straight to the search directory (a path every node reaches,
    see ``--results_dir``).
    """
    if getattr(storage.storage_filesystem, "type_name", "") != "local":
        return trial_dir
    return Path(storage.trial_fs_path)
