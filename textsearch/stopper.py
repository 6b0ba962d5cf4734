"""Ends a search early, and cleanly, when going on cannot help.

- A trial holds a GPU share it cannot use (:class:`textsearch.errors.TrialGPUError`): a node
  whose GPU is declared to Ray but invisible to CUDA would fail every trial sent to it.
- The disk holding the search directory is (nearly) full: checkpoints and Ray's own state
  could no longer be written.  The search is interrupted while there is still room, the way
  Ctrl-C interrupts it (Tune's own SIGINT handling), so every unfinished trial stays
  resumable from its last checkpoint instead of failing one write after another.

:class:`SearchGuard` is Tune's stopper and a callback at once.  The CLI turns its finding
into one line (exit 2); finished trials are kept, and ``--resume`` goes on.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from ray.tune import Callback, Stopper

MIN_FREE_BYTES = 1 << 20  # never let a search fill its disk below this
ENOSPC_TEXT = "No space left on device"


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def out_of_space(path: Path) -> bool:
    """Whether the filesystem holding ``path`` has less than :data:`MIN_FREE_BYTES` left."""
    return free_bytes(path) < MIN_FREE_BYTES


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class SearchGuard(Stopper, Callback):
    """Watches results and trial errors; ``stop_all`` once the search should end."""

    active: SearchGuard | None = None  # the guard of the search running in this process

    def __init__(self, search_dir: str) -> None:
        self.search_dir = search_dir
        self._reset()

    def _reset(self) -> None:
        self.gpu_trial_id: str | None = None  # the last trial that failed on its GPU,
        self.gpu_error: str | None = None  # and its TrialGPUError line
        self.disk_full = False
        self.largest_checkpoint = 0
        SearchGuard.active = self

    def __setstate__(self, state: dict) -> None:  # restored with the search on --resume
        self.__dict__.update(state)
        self._reset()

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

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        # Checked once the epoch's checkpoint is registered, so an interrupted trial
        # resumes after this epoch, not before it.
        if Path(checkpoint.path).is_dir():
            self.largest_checkpoint = max(self.largest_checkpoint, folder_bytes(checkpoint.path))
        if free_bytes(Path(self.search_dir)) < self.needed_bytes():
            self._disk_is_full()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._check(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._check(trial)

    def _check(self, trial) -> None:
        path = trial.error_file
        try:
            text = Path(path).read_text(errors="replace") if path and Path(path).exists() else ""
        except OSError:
            text = ""
        if ENOSPC_TEXT in text or out_of_space(Path(self.search_dir)):
            self._disk_is_full()
        lines = [ln.strip() for ln in text.splitlines() if "TrialGPUError" in ln]
        if lines:
            self.gpu_trial_id, self.gpu_error = trial.trial_id, lines[-1]
