"""Ends a search early, and cleanly, when going on cannot help.

- A trial holds a GPU share it cannot use (:class:`textsearch.errors.TrialGPUError`): a node
  whose GPU is declared to Ray but invisible to CUDA would fail every trial sent to it.
- The disk holding the search directory is (nearly) full (an ``OSError`` of errno ENOSPC,
  or less than a few checkpoints' room left): checkpoints and Ray's own state
  could no longer be written.  The search is interrupted while there is still room, the way
  Ctrl-C interrupts it (Tune's own SIGINT handling), so every unfinished trial stays
  resumable from its last checkpoint instead of failing one write after another.

:class:`SearchGuard` is Tune's stopper and a callback at once.  The CLI turns its finding
into one line (exit 2); finished trials are kept, and ``--resume`` goes on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
from pathlib import Path

import cloudpickle
from ray.exceptions import RayError
from ray.tune import Callback, Stopper

from textsearch.errors import TrialGPUError
from textsearch.record import LATEST_CHECKPOINT, write_error

MIN_FREE_BYTES = 1 << 20  # never let a search fill its disk below this


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def out_of_space(path: Path) -> bool:
    """Whether the filesystem holding ``path`` has less than :data:`MIN_FREE_BYTES` left."""
    return free_bytes(path) < MIN_FREE_BYTES


def causes(error: BaseException | None) -> list[BaseException]:
    """``error`` and what caused it: a Ray task error's ``cause``, then Python's chain."""
    chain: list[BaseException] = []
    while error is not None and len(chain) < 10 and error not in chain:
        chain.append(error)
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return chain


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception that is not Ray's wrapper of it."""
    chain = causes(error)
    ours = [e for e in chain if not isinstance(e, RayError)]
    return ours[0] if ours else chain[-1]


def pickled_error(trial) -> BaseException | None:
    """The exception a trial failed with, as Ray pickled it for the trial.

    Ray writes it on the driver first (``Trial.pickled_error_file``) and copies it to the
    search folder later (``Trial.get_pickled_error`` reads that copy).
    """
    path = trial.pickled_error_file
    if path and Path(path).is_file():
        with contextlib.suppress(Exception):  # an exception that cannot be unpickled here
            with open(path, "rb") as f:
                return cloudpickle.load(f)
    return trial.get_pickled_error()


def is_disk_full(error: BaseException | None) -> bool:
    return any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in causes(error))


class SearchGuard(Stopper, Callback):
    """Watches trial errors and checkpoints; ``stop_all`` once the search should end.

    Every trial error passes here once, as the exception object Ray pickled for the trial
    (``Trial.get_pickled_error``): its type and message are written to the trial's
    ``error.json`` (what the summary shows), a :class:`TrialGPUError` stops the search
    (``gpu_error``), and a full disk interrupts it (``disk_full``).
    """

    def __init__(self, search_dir: str, searcher) -> None:
        self.search_dir = search_dir
        self.searcher = searcher  # textsearch.searcher.StudySearcher: told of a GPU failure
        self.gpu_trial_id: str | None = None  # the last trial that failed on its GPU,
        self.gpu_error: str | None = None  # and its error line
        self.disk_full = False
        self.largest_checkpoint = 0

    # Stopper
    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.gpu_trial_id is not None

    def _disk_is_full(self) -> None:
        if not self.disk_full:
            self.disk_full = True
            os.kill(os.getpid(), signal.SIGINT)  # interrupt as Ctrl-C does: trials stay resumable

    # Callback
    def needed_bytes(self) -> int:
        """Room a few more epoch reports need: three of the largest checkpoint, 1 MiB at least."""
        return max(MIN_FREE_BYTES, 3 * self.largest_checkpoint)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        # Checked once the epoch's checkpoint is written, so an interrupted trial resumes
        # after this epoch, not before it.
        latest = Path(trial.path) / LATEST_CHECKPOINT
        if latest.is_file():
            self.largest_checkpoint = max(self.largest_checkpoint, latest.stat().st_size)
        if free_bytes(Path(self.search_dir)) < self.needed_bytes():
            self._disk_is_full()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._check(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._check(trial)

    def _check(self, trial) -> None:
        error = pickled_error(trial)
        if error is None:
            return
        root = root_cause(error)
        line = f"{type(root).__name__}: {root}".splitlines()[0] if str(root) else type(root).__name__
        with contextlib.suppress(OSError):  # trial.path: its folder in the search directory
            write_error(Path(trial.path), type(root).__name__, line)
        if is_disk_full(error) or out_of_space(Path(self.search_dir)):
            self._disk_is_full()
        if any(isinstance(e, TrialGPUError) for e in causes(error)):
            # Stopped now, between its retries: Ray would not report it as errored.
            self.gpu_trial_id, self.gpu_error = trial.trial_id, line
            self.searcher.fail(trial.trial_id, line)
