"""The layout of a search directory, ``<results_dir>/<name>/``: every file name in one place.

- ``search.json``: the settings the search was started with (``--resume`` reads them);
- ``study.journal``: the Optuna study, each trial's true state (:mod:`textsearch.searcher`);
- one ``trial_<id>/`` per trial: ``params.json``, ``progress.csv`` (one row per epoch),
  TensorBoard events, ``checkpoint_*/model.ckpt`` (best and latest, kept by Ray) and
  ``latest.ckpt`` and ``latest.json`` (the last epoch the trial reported, and its metrics,
  which a resume starts from);
- ``summary.json`` and ``trials.csv``: written at the end (also after Ctrl-C);
- ``report.html`` and ``plot_<name>.png``: :mod:`textsearch.report`;
- ``retrain/<trial>/``: ``model.pt`` and ``model.json``, :mod:`textsearch.retrain`;
- ``.search.lock``: held by the running search; ``.stopped_disk_full``: the search stopped on
  a full disk, so ``--resume`` retries the trials that failed for lack of space.

Nothing here imports torch, Ray or Lightning.
"""

from __future__ import annotations

from pathlib import Path

SETTINGS_FILE = "search.json"
STUDY_FILE = "study.journal"
SUMMARY_FILE = "summary.json"
TRIALS_FILE = "trials.csv"
REPORT_FILE = "report.html"
LOCK_FILE = ".search.lock"
DISK_FULL_MARKER = ".stopped_disk_full"
TRIAL_PREFIX = "trial_"
PROGRESS_FILE = "progress.csv"  # Ray Tune's CSV logger, one row per reported epoch
CHECKPOINT_FILE = "model.ckpt"  # inside each of a trial's checkpoint_* folders
LATEST_CHECKPOINT = "latest.ckpt"  # in a trial's folder: its last reported epoch (a hard link)
LATEST_METRICS = "latest.json"  # beside it: that epoch's metrics
RETRAIN_DIR = "retrain"  # retrain/<trial>/: the winner trained again (textsearch.retrain)
MODEL_FILE = "model.pt"  # in it: the exported model (TorchScript)
MODEL_INFO = "model.json"  # beside it: config, metrics, data, class mapping


def logged_epochs(search_dir: Path) -> dict[str, int]:
    """How many epochs the search logged for each trial (rows of its ``progress.csv``)."""
    out = {}
    for progress in Path(search_dir).glob(f"{TRIAL_PREFIX}*/{PROGRESS_FILE}"):
        with progress.open() as f:
            out[trial_id_of(progress.parent)] = max(0, sum(1 for line in f if line.strip()) - 1)
    return out


def trial_dir_name(trial_id: str) -> str:
    return f"{TRIAL_PREFIX}{trial_id}"


def trial_id_of(folder: str | Path) -> str:
    return Path(folder).name.removeprefix(TRIAL_PREFIX)


def plot_file(name: str) -> str:
    return f"plot_{name}.png"
