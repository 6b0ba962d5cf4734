"""The record of a search: its folder ``<results_dir>/<name>/``, every file name in it, and the
one reader and one writer of each file a search keeps.

- ``search.json``: the settings the search was started with (``--resume`` reads them);
- ``runs.jsonl``: when each run of the search (the first, each resume) started and ended;
- ``study.journal``: the Optuna study, each trial's true state (:mod:`textsearch.searcher`);
- ``space.py``: a copy of the space file, made when the search started (a resume and a
  later warm start read it, not the original);
- one ``trial_<number>/`` per trial, named after its number in the study: ``progress.csv``
  (one row per reported epoch, written by the trial), ``config.json`` (the full config it
  trains), TensorBoard events, ``latest.ckpt`` (the last epoch the trial reported, with its
  metrics: where a resume goes on), ``best.ckpt`` (its best epoch by the search's metric),
  ``test.json`` (that checkpoint's test metrics, once evaluated) and ``error.json`` (why it
  failed);
- ``summary.json`` and ``trials.csv``: the summary when the search last stopped
  (:func:`textsearch.summary.summarize` computes the same from the folder at any moment);
- ``report.html`` and ``plot_<name>.png``: :mod:`textsearch.report`;
- ``retrain/<trial>/``: ``model.pt`` and ``model.json``, :mod:`textsearch.retrain`;
- ``.search.lock``: held by the running search;
- Ray Tune's own files (``experiment_state-*``, ``tuner.pkl``, ...): written by each run, read
  by nothing of textsearch (a resume starts from the study and the trial folders).

Every command that reads a search (the summary, the report, retrain, the live view, warm
start, the dashboard) reads it through this module, and every process that writes one (the
driver, the trials, the testers) writes through it.  It imports neither torch, Ray nor
Lightning, nor any module of textsearch that does.

Files written while a search runs are whole or absent: ``live.json`` and ``test.json`` are
replaced atomically, ``progress.csv`` and ``runs.jsonl`` are appended one whole line at a
time (a reader skips a last line without its newline).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textsearch.errors import UserError
from textsearch.paths import atomic_path

SETTINGS_FILE = "search.json"
RUNS_FILE = "runs.jsonl"  # one line per run of the search: its start and end (Unix s)
STUDY_FILE = "study.journal"
SUMMARY_FILE = "summary.json"
TRIALS_FILE = "trials.csv"
REPORT_FILE = "report.html"
LOCK_FILE = ".search.lock"
TRIAL_PREFIX = "trial_"
SPACE_COPY = "space.py"  # the space file as it was when the search started
LIVE_FILE = "live.json"  # in a running trial's folder: where in its epoch it is (textsearch.live)
PROGRESS_FILE = "progress.csv"  # in a trial's folder: one row per reported epoch
LATEST_CHECKPOINT = "latest.ckpt"  # in a trial's folder: its last reported epoch
BEST_CHECKPOINT = "best.ckpt"  # its best epoch by the search's metric (a hard link)
TEST_METRICS = "test.json"  # that checkpoint's test metrics, once evaluated
TEST_CLAIM = ".testing"  # there while a process tests that checkpoint (others leave it be)
ERROR_FILE = "error.json"  # why the trial failed: exception type and line
RETRAIN_DIR = "retrain"  # retrain/<trial>/: the winner trained again (textsearch.retrain)
MODEL_FILE = "model.pt"  # in it: the exported model (TorchScript)
MODEL_INFO = "model.json"  # beside it: config, metrics, data, class mapping


def trial_id(number: int) -> str:
    """A trial's id in a search: its number in the study, as ``0007``."""
    return f"{number:04d}"


def trial_dir_name(number: int) -> str:
    return f"{TRIAL_PREFIX}{trial_id(number)}"


def trial_number(text: str) -> int | None:
    """The study number in a trial id or folder name (``7``, ``0007``, ``trial_0007``)."""
    text = Path(text).name.removeprefix(TRIAL_PREFIX)
    return int(text) if text.isdigit() else None


def plot_file(name: str) -> str:
    return f"plot_{name}.png"


def trial_dir(search_dir: Path, number: int) -> Path:
    """The folder of trial ``number`` in a search."""
    return Path(search_dir) / trial_dir_name(number)


def finite_number(x: Any) -> float | None:
    """``x`` as a finite float, else None (a blank progress.csv cell, text, inf, NaN)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _replace_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all (a reader never sees half of it)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data))


# -- search.json ----------------------------------------------------------------------------
SEARCHERS = ("tpe", "gp", "random")  # Optuna's TPE, a Gaussian process, random search
SCHEDULERS = ("asha", "fifo")  # ASHA stops hopeless trials early; fifo runs every trial


@dataclass
class SearchSettings:
    """What a search runs with; saved in ``search.json`` so a resume uses the same.

    gpus_per_trial may be a fraction (0.25: four trials per GPU). cpus_per_trial: CPU
    threads for the training loop; a trial asks Ray for cpus_per_trial + num_workers CPUs.
    time_budget_s: 0 means no budget. max_failures: retries of a crashed trial.
    """

    space: str
    space_source: str  # --space as given: the space's name, or the file's path
    name: str
    results_dir: str
    num_samples: int
    max_epochs: int
    grace_period: int
    reduction_factor: float
    metric: str
    mode: str
    seed: int = 0
    max_concurrent: int = 0
    gpus_per_trial: float | None = None  # None: decided from the cluster's GPUs
    cpus_per_trial: int = 1
    time_budget_s: float = 0.0
    max_failures: int = 2
    searcher: str = "tpe"  # "tpe", "gp" or "random": Optuna's TPE, GP or random sampler
    scheduler: str = "asha"  # "asha" or "fifo" (no early stopping)
    startup_trials: int | None = None  # TPE/GP sample at random first (None: by num_samples)
    first_trial: bool = True  # a fresh search runs a known-good config first
    fixed: dict[str, Any] = field(default_factory=dict)
    # [[metric, mode], ...] when several objectives are searched (the first is metric/mode)
    objectives: list[list[str]] | None = None
    warm_start: list[str] = field(default_factory=list)  # searches whose trials were added

    @property
    def search_dir(self) -> Path:
        return Path(self.results_dir) / self.name

    @property
    def objective_list(self) -> list[tuple[str, str]]:
        """``[(metric, mode), ...]``: the searched objectives, the first one ASHA's."""
        if self.objectives:
            return [(m, d) for m, d in self.objectives]
        return [(self.metric, self.mode)]

    @property
    def multi_objective(self) -> bool:
        return len(self.objective_list) > 1

    def warm_start_saved(self) -> list[str]:
        """The ``--warm_start`` searches as ``search.json`` keeps them: relative to this one."""
        here = self.search_dir.resolve()
        return [os.path.relpath(Path(w).resolve(), here) for w in self.warm_start]

    def resume_command(self) -> str:
        """The command that continues this search."""
        return (f"python -m textsearch.tune --space {self.space} --name {self.name} "
                f"--results_dir {self.results_dir} --resume")

    def save(self) -> None:
        """Write ``search.json``: no absolute path, so the folder can move.

        The folder's own place and name are where it is found; older searches given to
        ``--warm_start`` are kept relative to it.
        """
        data = dataclasses.asdict(self)
        del data["results_dir"], data["name"]
        data["warm_start"] = self.warm_start_saved()
        (self.search_dir / SETTINGS_FILE).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, search_dir: Path) -> SearchSettings:
        """The settings of the search in ``search_dir``, wherever that folder is now."""
        search_dir = Path(search_dir)
        if not (search_dir / SETTINGS_FILE).is_file():
            raise UserError(f"{search_dir} is not a search folder (no {SETTINGS_FILE})")
        damaged = f"{search_dir / SETTINGS_FILE} is damaged"
        try:
            data = json.loads((search_dir / SETTINGS_FILE).read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{damaged}: {err}") from None
        if not isinstance(data, dict):
            raise UserError(f"{damaged}: not a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name, f in fields.items() if name not in data
                   and name not in ("results_dir", "name")
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        unknown = sorted(set(data) - set(fields))
        if missing or unknown:
            raise UserError(f"{damaged}: " + "; ".join(
                part for part in (missing and "missing " + ", ".join(missing),
                                  unknown and "unknown " + ", ".join(unknown)) if part))
        settings = cls(**{**data, "results_dir": str(search_dir.parent), "name": search_dir.name})
        settings.warm_start = [str((search_dir / w).resolve()) for w in settings.warm_start]
        return settings


@contextlib.contextmanager
def search_lock(search_dir: Path) -> Iterator[None]:
    """Hold ``.search.lock``: one process runs a search at a time (released even on SIGKILL)."""
    search_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(search_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise UserError(f"search {search_dir} is in use by another process (pid {owner}); "
                            "wait for it or choose another --name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


# -- runs.jsonl: written by the driver at the end of each run -------------------------------
def record_run(search_dir: Path, started: float, ended: float,
               steps: dict[str, float] | None = None) -> None:
    """Add one run's start and end (Unix s) to ``runs.jsonl``: the search's wall time.

    ``steps``: when its start-up steps ended (``ray_ready``, ``data_ready``,
    ``tune_started``); a trial's own steps are in its epoch reports (``process_started_at``,
    ``trial_started_at``, ``modules_loaded_at``, ``first_batch_at``).
    """
    with (Path(search_dir) / RUNS_FILE).open("a") as f:
        f.write(json.dumps({"started": started, "ended": ended, **(steps or {})}) + "\n")


def read_runs(search_dir: Path) -> list[dict[str, float]]:
    """The runs of the search that ended, from ``runs.jsonl``: ``started`` and ``ended``."""
    try:
        lines = (Path(search_dir) / RUNS_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip().endswith("}")]


def wall_seconds(search_dir: Path) -> float | None:
    """Wall time of the search's runs that ended; None: none ended yet."""
    runs = read_runs(search_dir)
    return sum(r["ended"] - r["started"] for r in runs) if runs else None


# -- progress.csv: appended by the trial after each epoch -----------------------------------
def read_progress(path: Path) -> list[dict[str, str]]:
    """The rows of a trial's ``progress.csv`` (a half-written last line left out)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return list(csv.DictReader(io.StringIO(text[:text.rfind("\n") + 1])))


class ProgressLog:
    """A trial's ``progress.csv``: one row per reported epoch, appended by the trial itself.

    The columns are the first row's.  Each row is one write of one whole line, so a trial
    killed mid-write leaves at most a last line without its newline, which reading skips
    and the next append replaces.
    """

    def __init__(self, trial_dir: Path) -> None:
        self.path = Path(trial_dir) / PROGRESS_FILE

    def rows(self) -> list[dict[str, str]]:
        return read_progress(self.path)

    def set_aside(self, stamp: str) -> None:
        """Keep the rows logged so far as ``progress.csv.<stamp>`` (a trial starting again)."""
        os.replace(self.path, self.path.with_name(f"{PROGRESS_FILE}.{stamp}"))

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


# -- live.json: rewritten by a running trial, read by the live view -------------------------
def write_live(trial_dir: Path, state: dict[str, Any]) -> None:
    """Replace the trial's ``live.json`` (where in its epoch it is); a failure is ignored:
    the view is a convenience, and a full disk is the search's business."""
    path = Path(trial_dir) / LIVE_FILE
    tmp = path.with_name(f".{LIVE_FILE}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)
    except OSError:
        pass


def read_live(trial_dir: Path) -> dict[str, Any] | None:
    return _read_json(Path(trial_dir) / LIVE_FILE)


# -- test.json: the test metrics of a trial's best.ckpt (textsearch.tester) -----------------
def write_test(trial_dir: Path, epoch: int, metrics: dict[str, float]) -> None:
    """The test metrics of the trial's ``best.ckpt``, which holds epoch ``epoch``."""
    _replace_json(Path(trial_dir) / TEST_METRICS, {"epoch": epoch, **metrics})


def read_test(trial_dir: Path, epoch: int | None = None) -> dict[str, Any] | None:
    """The trial's ``test.json``; with ``epoch``, only if it tested that epoch's checkpoint
    (a newer best makes it stale)."""
    tested = _read_json(Path(trial_dir) / TEST_METRICS)
    if tested is None or (epoch is not None and tested.get("epoch") != epoch):
        return None
    return tested


# -- error.json: why a trial failed (written by the driver, textsearch.stopper) -------------
def write_error(trial_dir: Path, kind: str, line: str) -> None:
    folder = Path(trial_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ERROR_FILE).write_text(json.dumps({"type": kind, "error": line}))


def read_error(trial_dir: Path) -> str | None:
    """The error line of a failed trial (None: none written)."""
    return (_read_json(Path(trial_dir) / ERROR_FILE) or {}).get("error")
