"""Ray Tune's entry point of a trial, in a module that imports nothing heavy.

The driver hands :func:`tune_trial` to Tune without loading torch or Lightning, which load
(seconds) in the trial's own process, with :mod:`textsearch.trial`.
"""

from __future__ import annotations

import time
from typing import Any


def tune_trial(config: dict[str, Any], bundle=None, fixed: dict[str, Any] | None = None,
               cpu_threads: int = 1, metric: str = "val_acc", mode: str = "max",
               search_dir: str = "") -> None:
    """One trial: :func:`textsearch.trial.trial_in_tune` (wrapped with
    ``tune.with_parameters``, which hands over the data and the shared config)."""
    started_at = time.time()  # the trial's process took it (its start-up steps are reported)
    from textsearch.trial import trial_in_tune  # torch and Lightning load here, in the trial

    trial_in_tune(config, bundle=bundle, fixed=fixed, cpu_threads=cpu_threads, metric=metric,
                  mode=mode, search_dir=search_dir, started_at=started_at)
