"""Ends a search at the first trial that holds a GPU share it cannot use.

A node whose GPU is declared to Ray but invisible to CUDA would fail every trial sent to
it (:class:`textsearch.errors.TrialGPUError`); the search stops at once instead of
retrying each trial, and the CLI reports the trial's one-line error.
"""

from __future__ import annotations

from pathlib import Path

from ray.tune import Callback, Stopper


class StopOnGPUError(Stopper, Callback):
    """Tune's stopper and a callback at once: trial errors are watched, all trials stopped."""

    def __init__(self) -> None:
        self.message: str | None = None  # "trial <id>: <error>"
        self.trial_id: str | None = None
        self.error: str | None = None

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.message is not None

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._check(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._check(trial)

    def _check(self, trial) -> None:
        path = trial.error_file
        text = Path(path).read_text(errors="replace") if path and Path(path).exists() else ""
        if "TrialGPUError" not in text:
            return
        lines = [ln.strip() for ln in text.splitlines() if "TrialGPUError" in ln]
        self.trial_id, self.error = trial.trial_id, lines[-1]
        self.message = f"trial {trial.trial_id}: {lines[-1].split('TrialGPUError: ', 1)[-1]}"
