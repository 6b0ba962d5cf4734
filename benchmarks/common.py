"""What every benchmark shares: modes, statistics, running a search, reading its reports."""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from textsearch import spaces  # noqa: E402
from textsearch.data import EMNIST, DataConfig  # noqa: E402
from textsearch.record import SearchSettings  # noqa: E402
from textsearch.search import run_search  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
BENCH_SPACES = REPO / "benchmarks" / "spaces"


@dataclass
class Mode:
    name: str
    reps: int
    loader_batches: int
    overhead_fraction: float
    concurrency_fraction: float
    seeds: int
    search_samples: int
    search_epochs: int
    search_fraction: float
    accuracy_budget_s: float  # the accuracy item's search: wall-clock budget,
    accuracy_fraction: float  # share of the training split,
    accuracy_epochs: int  # max epochs per trial
    retrain_epochs: int  # at most this many epochs for the best config on retrain_fraction,
    retrain_budget_s: float  # and no more than fit in this many seconds at its measured rate
    retrain_fraction: float = 1.0  # share of the training split the best config retrains on
    startup_trials: int = 3  # random trials before TPE models the results (arm a)
    tpe_trials: int = 10  # TPE start-up item: trials per search,
    tpe_seeds: int = 3  # seeds,
    tpe_fraction: float = 0.05  # and share of the training split for the 1-epoch proxy
    gpu_fraction: float = 0.5  # GPU sharing: share of the training split per trial,
    gpu_epochs: int = 2  # and epochs per trial (the last epoch's rate is reported)
    plain_samples: int = 8  # textsearch against a plain Optuna loop: trials,
    plain_epochs: int = 3  # epochs per trial at most,
    plain_fraction: float = 0.05  # and share of the training split
    fixed_samples: int = 8  # same-configs run of that item: configs (at most 8),
    fixed_epochs: int = 2  # and epochs each
    fusion_k: int = 3  # fusing trials: models fused into one,
    fusion_seconds: float = 6.0  # and seconds of training steps per measurement
    precision_epochs: int = 2  # precision parity: epochs of each run,
    precision_fraction: float = 0.15  # on this share of the training split
    lines_budget_s: float = 1200  # lines search: wall-clock budget,
    lines_epochs: int = 6  # max epochs per trial,
    lines_fraction: float = 1.0  # share of the training lines,
    lines_retrain_epochs: int = 15  # then at most this many epochs for the best,
    lines_retrain_budget_s: float = 900  # fitting in this many seconds at its measured rate
    quality_seeds: int = 5  # search quality: seeds per budget, and budgets: (trials,
    # max epochs per trial, share of the training split)
    quality_budgets: tuple[tuple[int, int, float], ...] = ((8, 3, 0.05), (30, 6, 0.10))


QUICK = Mode("quick", reps=2, loader_batches=60, overhead_fraction=0.02, concurrency_fraction=0.02,
             seeds=1, search_samples=3, search_epochs=2, search_fraction=0.01,
             accuracy_budget_s=45, accuracy_fraction=0.01, accuracy_epochs=2, retrain_epochs=1,
             retrain_budget_s=30, retrain_fraction=0.02, startup_trials=2, tpe_trials=4,
             tpe_seeds=1, tpe_fraction=0.01, gpu_fraction=0.05,
             gpu_epochs=1, plain_samples=2, plain_epochs=1, plain_fraction=0.01,
             fixed_samples=2, fixed_epochs=1, fusion_seconds=1.0, precision_epochs=1,
             precision_fraction=0.01, lines_budget_s=60, lines_epochs=1, lines_fraction=0.05,
             lines_retrain_epochs=1, lines_retrain_budget_s=30, quality_seeds=2,
             quality_budgets=((3, 2, 0.01),))
FULL = Mode("full", reps=3, loader_batches=300, overhead_fraction=0.15, concurrency_fraction=0.15,
            seeds=3, search_samples=10, search_epochs=4, search_fraction=0.05,
            accuracy_budget_s=1800, accuracy_fraction=0.1, accuracy_epochs=6, retrain_epochs=20,
            retrain_budget_s=900)


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def samples_per_s(step, samples_per_step: int, seconds: float) -> float:
    """Training samples/s of ``step()`` repeated for ``seconds``, after one warm-up step
    (in which oneDNN picks its kernels)."""
    step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return n * samples_per_step / (time.perf_counter() - start)


def epochs_in_budget(budget_s: float, max_epochs: int, per_s: float, examples: int) -> int:
    """Epochs of ``examples`` at ``per_s`` that fit ``budget_s`` seconds: 1 to ``max_epochs``."""
    return max(1, min(max_epochs, int(budget_s * per_s / examples)))


def compare_rates(configs: list[dict], rate, names: tuple[str, str], reps: int,
                  seconds: float) -> list[dict]:
    """For each config, ``rate(config, arm, seconds)`` of two arms (False, then True),
    alternating ``reps`` times, on one thread: both arms' stats and the second / first ratio."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = []
    try:
        for config in configs:
            first, second = [], []
            for _ in range(reps):
                first.append(rate(config, False, seconds))
                second.append(rate(config, True, seconds))
            out.append({"config": config, names[0]: stats(first), names[1]: stats(second),
                        "ratio": stats([b / a for a, b in zip(first, second)])})
    finally:
        torch.set_num_threads(before)
    return out


def rates_table(compared: list[dict], names: tuple[str, str],
                headers: tuple[str, str]) -> list[str]:
    """:func:`compare_rates`' results as a markdown table, one row per config."""
    lines = [f"| blocks | block | channels | batch | {headers[0]} | {headers[1]} | ratio |",
             "|---|---|---|---|---|---|---|"]
    for c in compared:
        k = c["config"]
        lines.append(f"| {k['num_blocks']} | {k['block']} | {k['conv_dim']} | {k['batch_size']} | "
                     f"{fmt(c[names[0]])} | {fmt(c[names[1]])} | {fmt(c['ratio'], 2)}x |")
    return lines


def ratio_range(compared: list[dict]) -> str:
    """The per-config median ratios: their median and range."""
    ratios = sorted(c["ratio"]["median"] for c in compared)
    return f"{ratios[len(ratios) // 2]:.2f}x median ({ratios[0]:.2f}-{ratios[-1]:.2f}x)"


def per_seed_fmt(values: list[float | None], digits: int = 0) -> str:
    """Each seed's value in seed order; "never" where the arm did not get there."""
    return ", ".join("never" if v is None else f"{v:.{digits}f}" for v in values)


def median_or_never(values: list[float | None]) -> float:
    return statistics.median(math.inf if v is None else v for v in values)


def fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


FLAGS = ("num_samples", "max_epochs", "data_fraction", "seed", "searcher", "scheduler",
         "startup_trials", "max_concurrent", "gpus_per_trial", "time_budget_s", "max_failures",
         "precision", "warm_start")


def settings_for(space_name: str, name: str, results: Path, **kw) -> tuple[SearchSettings, spaces.SearchSpace]:
    """A search's settings, built by the CLI's own function from the flags a user would type."""
    from textsearch.tune import build_parser, make_settings

    unknown = set(kw) - set(FLAGS)
    if unknown:
        raise TypeError(f"not textsearch.tune flags: {sorted(unknown)}")
    argv = ["--space", space_name, "--name", name, "--results_dir", str(results), "--no_report"]
    for key, value in kw.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
    args = build_parser().parse_args(argv)
    space = spaces.load(space_name)
    return make_settings(args, space), space


def search(space_name: str, name: str, results: Path, **kw) -> dict:
    """Run one search, or reuse it if this results folder already holds it finished.  The
    Ray session it starts ends with it (a caller's own session is left running)."""
    done = results / name / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    settings, space = settings_for(space_name, name, results, **kw)
    settings.search_dir.mkdir(parents=True, exist_ok=True)
    # Ray is imported by the search itself (it reads its authentication mode then)
    ours = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    try:
        return run_search(settings, space)
    finally:
        ray = sys.modules.get("ray")
        if ours and ray is not None and ray.is_initialized():
            ray.shutdown()


def progress(search_dir: Path) -> list[dict]:
    """Every epoch report of a search: trial, epoch, val_acc, timing, samples/s."""
    import pandas as pd

    rows = []
    for f in search_dir.glob("trial_*/progress.csv"):
        df = pd.read_csv(f)
        df["trial"] = f.parent.name
        rows.extend(df.to_dict("records"))
    return rows


def aggregate_rate(search_dir: Path, fraction: float) -> float:
    rows = progress(search_dir)
    n_train = len(EMNIST(DataConfig(data_fraction=fraction)).split_indices()[0])
    starts = [r["timestamp"] - r["time_total_s"] for r in rows]
    ends = [r["timestamp"] for r in rows]
    return n_train * len(rows) / (max(ends) - min(starts))


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``platform`` says only x86_64)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """This machine in one line: CPU (and whether it computes bf16 natively), RAM, GPU."""
    from textsearch.devices import cpu_has_native_bf16

    bf16 = "with" if cpu_has_native_bf16() else "without"
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_model()} ({bf16} native bf16), {psutil.cpu_count()} CPU cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python "
            f"{platform.python_version()}, torch {torch.__version__}, {gpu}")


class Sampler:
    """Calls :meth:`sample` every ``interval_s`` seconds, in a thread, while a ``with`` block runs."""

    interval_s = 0.5

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.sample() is False:  # nothing to sample here
                return
            self._stop.wait(self.interval_s)

    def sample(self) -> bool | None:
        raise NotImplementedError
