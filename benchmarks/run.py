"""Benchmarks of textsearch on the real EMNIST sample: one runner, one markdown table.

    python benchmarks/run.py --quick        # about 17 minutes on 2 cores
    python benchmarks/run.py                # the full run (about 1.5 hours on 2 cores)
    python benchmarks/run.py --only data_path,lines
    python benchmarks/run.py --table        # rewrite the table from the saved JSON

Needs EMNIST under ``$TEXTSEARCH_DATA_DIR/downloaded/emnist`` (and the Brown corpus through
``NLTK_DATA`` for the EMNIST Lines item).  Writes ``benchmarks/results/<mode>.md`` and
``.json`` (plus plots), and prints the table.  Ratios are measured in the same run,
alternating the arms; min/median/max are over the repetitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from textsearch import spaces  # noqa: E402
from textsearch.data import EMNIST, DataConfig  # noqa: E402
from textsearch.data.base import batch_loader, uint8_to_float  # noqa: E402
from textsearch.search import SearchSettings, run_search  # noqa: E402
from textsearch.training import TrainConfig, make_model, train  # noqa: E402

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


QUICK = Mode("quick", reps=2, loader_batches=60, overhead_fraction=0.02, concurrency_fraction=0.02,
             seeds=1, search_samples=3, search_epochs=2, search_fraction=0.01,
             accuracy_budget_s=45, accuracy_fraction=0.01, accuracy_epochs=2, retrain_epochs=1,
             retrain_budget_s=30, retrain_fraction=0.02, startup_trials=2, tpe_trials=4,
             tpe_seeds=1, tpe_fraction=0.01, gpu_fraction=0.05,
             gpu_epochs=1)
FULL = Mode("full", reps=3, loader_batches=300, overhead_fraction=0.15, concurrency_fraction=0.15,
            seeds=3, search_samples=10, search_epochs=4, search_fraction=0.05,
            accuracy_budget_s=1200, accuracy_fraction=0.1, accuracy_epochs=6, retrain_epochs=10,
            retrain_budget_s=720)


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def per_seed_fmt(values: list[float | None], digits: int = 0) -> str:
    """Each seed's value in seed order; "never" where the arm did not get there."""
    return ", ".join("never" if v is None else f"{v:.{digits}f}" for v in values)


def median_or_never(values: list[float | None]) -> float:
    return statistics.median(math.inf if v is None else v for v in values)


def fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


# -- 1. data path ---------------------------------------------------------------------------
class PerItemDataset(torch.utils.data.Dataset):
    """The lab's way: one PIL image and one ToTensor call per item."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        from torchvision import transforms

        self.x, self.y, self.transform = x, y, transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def loader_rate(loader, batches: int, convert) -> float:
    n, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(loader):
        x = convert(x)
        n += len(x)
        if i + 1 >= batches:
            break
    return n / (time.perf_counter() - start)


def bench_data_path(mode: Mode) -> dict:
    torch.set_num_threads(1)
    dm = EMNIST(DataConfig(batch_size=128))
    dm.setup()
    ds = dm.data_train
    lab = torch.utils.data.DataLoader(PerItemDataset(ds.x[ds.indices], ds.y[ds.indices]),
                                      batch_size=128, shuffle=True, num_workers=0)
    ours = batch_loader(ds, 128, shuffle=True, num_workers=0)
    lab_rates, our_rates = [], []
    for _ in range(mode.reps):
        lab_rates.append(loader_rate(lab, mode.loader_batches, lambda x: x))
        our_rates.append(loader_rate(ours, mode.loader_batches, uint8_to_float))
    ratios = [o / lab for o, lab in zip(our_rates, lab_rates)]
    return {"lab_images_per_s": stats(lab_rates), "ours_images_per_s": stats(our_rates),
            "speedup": stats(ratios), "batches": mode.loader_batches, "reps": mode.reps}


# -- EMNIST Lines generation ----------------------------------------------------------------
def bench_lines(mode: Mode) -> dict:
    from textsearch.data.emnist_lines import LinesConfig, generate
    from textsearch.data.sentences import SentenceGenerator

    bundle = EMNIST().get_bundle()
    cfg = LinesConfig()
    sentences = SentenceGenerator(cfg.max_length - 2, seed=0)
    times = []
    for rep in range(mode.reps):
        start = time.perf_counter()
        generate(cfg, bundle, 10_000, "train", sentences, np.random.default_rng(rep))
        times.append(time.perf_counter() - start)
    return {"seconds_for_10000_lines": stats(times), "reps": mode.reps}


# -- searches, run in this process ----------------------------------------------------------
def settings_for(space_name: str, name: str, results: Path, **kw) -> tuple[SearchSettings, spaces.SearchSpace]:
    space = spaces.load(space_name)
    d = space.defaults
    fixed = {**d.fixed, "max_epochs": kw.pop("max_epochs", d.max_epochs),
             "data_fraction": kw.pop("data_fraction", d.data_fraction), **kw.pop("fixed", {})}
    s = SearchSettings(space=space.name, space_path=str(space.path), name=name,
                       results_dir=str(results), num_samples=kw.pop("num_samples", d.num_samples),
                       max_epochs=fixed["max_epochs"], grace_period=d.grace_period,
                       reduction_factor=d.reduction_factor, metric=d.metric, mode=d.mode,
                       fixed=fixed, **kw)
    return s, space


def search(space_name: str, name: str, results: Path, **kw) -> dict:
    """Run one search, or reuse it if this results folder already holds it finished."""
    done = results / name / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    settings, space = settings_for(space_name, name, results, **kw)
    settings.search_dir.mkdir(parents=True, exist_ok=True)
    return run_search(settings, space)


def progress(search_dir: Path) -> list[dict]:
    """Every epoch report of a search: trial, epoch, val_acc, timing, samples/s."""
    import pandas as pd

    rows = []
    for f in search_dir.glob("trial_*/progress.csv"):
        df = pd.read_csv(f)
        df["trial"] = f.parent.name
        rows.extend(df.to_dict("records"))
    return rows


# -- 3. trial overhead ----------------------------------------------------------------------
def plain_loop_rate(fraction: float) -> float:
    """One epoch of the default CNN in a bare PyTorch loop, same batches and threads."""
    torch.set_num_threads(1)
    cfg = TrainConfig(data_fraction=fraction)
    dm = EMNIST(cfg.data_config())
    dm.setup()
    model = make_model(cfg, (1, 28, 28), 83)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    n, start = 0, time.perf_counter()
    for x, y in dm.train_dataloader():
        x = uint8_to_float(x)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        n += len(y)
    return n / (time.perf_counter() - start)


def bench_overhead(mode: Mode, results: Path) -> dict:
    plain, trial, first_result = [], [], []
    for rep in range(mode.reps):
        plain.append(plain_loop_rate(mode.overhead_fraction))
        start = time.time()
        summary = search(str(BENCH_SPACES / "default_cnn.py"), f"overhead-{rep}", results,
                         data_fraction=mode.overhead_fraction, max_concurrent=1)
        rows = progress(results / f"overhead-{rep}")
        trial.append(rows[0]["train_samples_per_s"])
        first_result.append(rows[0]["timestamp"] - start)
        assert summary["num_trials"] == 1
    ratio = [p / t for p, t in zip(plain, trial)]
    return {"plain_samples_per_s": stats(plain), "trial_samples_per_s": stats(trial),
            "slowdown": stats(ratio), "fraction": mode.overhead_fraction, "reps": mode.reps,
            "in_process_seconds_to_first_result": stats(first_result)}


def bench_startup(mode: Mode, results: Path) -> dict:
    """The smoke search as a user runs it: seconds to the first reported result and in all."""
    firsts, totals = [], []
    for rep in range(mode.reps):
        name = f"smoke-{rep}"
        start = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "textsearch.tune", "--space", "smoke",
                                 "--results_dir", str(results), "--name", name, "--no_report"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        first = None
        while proc.poll() is None:
            if first is None and any(f.stat().st_size > 0 for f in
                                     (results / name).glob("trial_*/progress.csv")):
                first = time.time() - start
            time.sleep(0.1)
        assert proc.returncode == 0, f"smoke search failed ({proc.returncode})"
        totals.append(time.time() - start)
        firsts.append(first if first is not None else totals[-1])
    return {"seconds_to_first_result": stats(firsts), "smoke_total_seconds": stats(totals),
            "reps": mode.reps}


# -- 4 + 5. concurrency and memory ------------------------------------------------------------
class MemorySampler:
    """Peak summed PSS of this process and every Ray process, sampled every 0.2 s."""

    def __init__(self) -> None:
        self.peak_pss = 0
        self.peak_worker_uss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            total = 0
            for p in psutil.process_iter(["pid", "cmdline"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if p.info["pid"] == me or "ray" in cmd:
                    try:
                        info = p.memory_full_info()
                    except (psutil.Error, OSError):
                        continue
                    total += info.pss
                    if "ray::tune_trial" in cmd or "ray::ImplicitFunc" in cmd:
                        self.peak_worker_uss = max(self.peak_worker_uss, info.uss)
            self.peak_pss = max(self.peak_pss, total)
            self._stop.wait(0.2)


def training_rate(search_dir: Path, concurrent: bool) -> float:
    """Training-loop samples/s: summed over trials that ran together, else per trial."""
    rates = [r["train_samples_per_s"] for r in progress(search_dir)]
    return sum(rates) if concurrent else statistics.mean(rates)


def aggregate_rate(search_dir: Path, fraction: float) -> float:
    rows = progress(search_dir)
    n_train = len(EMNIST(DataConfig(data_fraction=fraction)).split_indices()[0])
    starts = [r["timestamp"] - r["time_total_s"] for r in rows]
    ends = [r["timestamp"] for r in rows]
    return n_train * len(rows) / (max(ends) - min(starts))


def bench_concurrency(mode: Mode, results: Path) -> dict:
    import ray

    rates = {1: [], 2: []}
    loop_rates = {1: [], 2: []}
    shared = []
    memory = {1: [], 2: []}
    worker_uss = []
    for rep in range(mode.reps):
        for conc in (1, 2):
            ray.shutdown()  # a fresh Ray per run, so memory counts the same processes
            name = f"concurrency-{conc}-{rep}"
            with MemorySampler() as mem:
                search(str(BENCH_SPACES / "default_cnn.py"), name, results, num_samples=2,
                       max_concurrent=conc, data_fraction=mode.concurrency_fraction,
                       scheduler="fifo")
            rates[conc].append(aggregate_rate(results / name, mode.concurrency_fraction))
            loop_rates[conc].append(training_rate(results / name, conc == 2))
            shared += [r.get("data_shared", 0.0) for r in progress(results / name)]
            memory[conc].append(mem.peak_pss / 2**20)
            worker_uss.append(mem.peak_worker_uss / 2**20)
    ray.shutdown()
    bundle = EMNIST().get_bundle()
    speedup = [b / a for a, b in zip(rates[1], rates[2])]
    loop_speedup = [b / a for a, b in zip(loop_rates[1], loop_rates[2])]
    return {"sequential_samples_per_s": stats(rates[1]), "concurrent_samples_per_s": stats(rates[2]),
            "speedup": stats(speedup), "loop_sequential": stats(loop_rates[1]),
            "loop_concurrent": stats(loop_rates[2]), "loop_speedup": stats(loop_speedup),
            "trials_with_shared_data": f"{int(sum(shared))}/{len(shared)} reports", "peak_pss_mib_1": stats(memory[1]),
            "peak_pss_mib_2": stats(memory[2]),
            "added_by_second_trial_mib": stats([b - a for a, b in zip(memory[1], memory[2])]),
            "peak_trial_worker_uss_mib": stats(worker_uss),
            "dataset_mib": bundle.nbytes / 2**20, "reps": mode.reps}


# -- TPE's start-up trials -------------------------------------------------------------------
STARTUP_CHOICES = (2, 3, 5, 10)


def proxy_objective(fraction: float, cache: dict):
    """``cnn_emnist``'s parameters -> val_acc after 1 epoch on ``fraction`` of the data.

    A plain PyTorch loop, 1 thread, seeded: the same parameters give the same value, so
    results are cached across arms (their random start-up trials coincide).
    """
    dm = EMNIST(DataConfig(data_fraction=fraction))
    dm.setup()
    space = spaces.load("cnn_emnist")

    def objective(trial) -> float:
        ret = space.space(trial) or {}
        params = {**trial.params, **ret}
        key = json.dumps(params, sort_keys=True)
        if key not in cache:
            torch.manual_seed(0)
            cfg = TrainConfig.from_dict({**space.defaults.fixed, **params, "data_fraction": fraction})
            dm.config.batch_size = cfg.batch_size
            model = make_model(cfg, (1, 28, 28), 83)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            model.train()
            for x, y in dm._loader(dm.data_train, shuffle=True):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(uint8_to_float(x)), y).backward()
                opt.step()
            model.eval()
            correct = total = 0
            with torch.inference_mode():
                for x, y in dm._loader(dm.data_val, shuffle=False):
                    correct += int((model(uint8_to_float(x)).argmax(1) == y).sum())
                    total += len(y)
            cache[key] = correct / total
        return cache[key]

    return objective


def bench_tpe_startup(mode: Mode, results: Path) -> dict:
    """Best val_acc of a 10-trial TPE search (multivariate, group) for each start-up count."""
    import optuna

    from textsearch.searcher import default_startup_trials, make_sampler

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cache: dict = {}
    objective = proxy_objective(mode.tpe_fraction, cache)
    best: dict[int, list[float]] = {k: [] for k in STARTUP_CHOICES}
    after: dict[int, list[float]] = {k: [] for k in STARTUP_CHOICES}
    mean_all: dict[int, list[float]] = {k: [] for k in STARTUP_CHOICES}
    for seed in range(mode.tpe_seeds):
        for k in STARTUP_CHOICES:
            study = optuna.create_study(direction="maximize",
                                        sampler=make_sampler("tpe", seed, k))
            study.optimize(objective, n_trials=mode.tpe_trials)
            values = [t.value for t in study.trials]
            best[k].append(max(values))
            after[k].append(statistics.mean(values[k:]) if k < len(values) else float("nan"))
            mean_all[k].append(statistics.mean(values))
            print(f"[tpe_startup] seed {seed} start-up {k}: best {max(values):.3f}",
                  file=sys.stderr, flush=True)
    return {"trials": mode.tpe_trials, "seeds": mode.tpe_seeds, "fraction": mode.tpe_fraction,
            "best_val_acc": {k: stats(v) for k, v in best.items()},
            "best_per_seed": best, "mean_after_startup": {k: stats(v) for k, v in after.items()},
            "mean_all": {k: stats(v) for k, v in mean_all.items()},
            "default_for_trials": default_startup_trials(mode.tpe_trials),
            "distinct_configs_trained": len(cache)}


def tpe_startup_markdown(r: dict) -> list[str]:
    lines = ["", f"TPE start-up trials: best val_acc of a {r['trials']}-trial TPE search (multivariate, "
             f"grouped) of `cnn_emnist`'s parameters, each trial 1 epoch on {r['fraction']:.0%} of the "
             f"training split (plain loop, seeded), {r['seeds']} seeds; {r['trials']} start-up trials "
             "is a random search:", "",
             "| start-up trials | best val_acc, median (min-max) | per seed | mean val_acc of all trials | of the TPE-proposed trials |",
             "|---|---|---|---|---|"]
    for k, v in r["best_val_acc"].items():
        m = r["mean_after_startup"][k]
        after = "-" if m is None or math.isnan(m["median"]) else fmt(m, 3)
        lines.append(f"| {k} | {fmt(v, 3)} | {', '.join(f'{x:.3f}' for x in r['best_per_seed'][k])} | "
                     f"{fmt(r['mean_all'][k], 3)} | {after} |")
    from textsearch.searcher import STARTUP_RULE, default_startup_trials

    lines.append(f"\nDefault for {r['trials']} trials: {default_startup_trials(r['trials'])} "
                 f"({STARTUP_RULE}).")
    return lines


# -- GPU sharing --------------------------------------------------------------------------
GPU_COUNTS = (1, 2, 4, 8)
GPU_PRECISIONS = ("32", "bf16-mixed")


class GPUSampler:
    """GPU utilisation (%) and memory used (MiB) from ``nvidia-smi``, every 0.5 s."""

    def __init__(self) -> None:
        self.util: list[float] = []
        self.mem: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
               "--id=0"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
                util, mem = (float(v) for v in out.strip().split(","))
                self.util.append(util)
                self.mem.append(mem)
            except (OSError, ValueError, subprocess.SubprocessError):
                return  # no nvidia-smi (a CPU machine): nothing to sample
            self._stop.wait(0.5)


def bench_gpu(mode: Mode, results: Path, counts: tuple[int, ...] = GPU_COUNTS,
              use_gpu: bool = True) -> dict:
    """1, 2, 4, 8 concurrent default-CNN trials sharing one GPU (1/n of it each), in two precisions.

    ``use_gpu=False`` runs the same measurement on the CPU (to check the runner itself).
    """
    if use_gpu and not torch.cuda.is_available():
        return {"skipped": "no CUDA GPU on this machine"}
    out: dict = {"device": torch.cuda.get_device_name(0) if use_gpu else "cpu", "counts": list(counts),
                 "fraction": mode.gpu_fraction, "epochs": mode.gpu_epochs, "runs": {}}
    for precision in GPU_PRECISIONS:
        runs = out["runs"][precision] = {}
        for n in counts:
            name = f"gpu-{precision}-{n}"
            with GPUSampler() as gpu:
                search(str(BENCH_SPACES / "default_cnn.py"), name, results, num_samples=n,
                       max_concurrent=n, gpus_per_trial=(1 / n if use_gpu else 0.0),
                       data_fraction=mode.gpu_fraction, max_epochs=mode.gpu_epochs,
                       scheduler="fifo", max_failures=0, fixed={"precision": precision})
            rows = progress(results / name)
            last = {}
            for r in rows:  # each trial's last epoch: warm, and all trials running together
                if r["epoch"] == mode.gpu_epochs:
                    last[r["trial"]] = r
            runs[n] = {
                "trials": len(last),
                "loop_samples_per_s": sum(r["train_samples_per_s"] for r in last.values()),
                "wall_samples_per_s": aggregate_rate(results / name, mode.gpu_fraction),
                "gpu_mem_peak_mb_per_trial": max((r["gpu_mem_peak_mb"] for r in rows), default=0.0),
                "gpu_util_mean": statistics.mean(gpu.util) if gpu.util else None,
                "gpu_util_max": max(gpu.util) if gpu.util else None,
                "gpu_mem_used_max_mib": max(gpu.mem) if gpu.mem else None,
                "devices": sorted({str(r["device"]) for r in rows}),
                "reports": len(rows),
                "reports_on_cuda": sum(str(r["device"]).startswith("cuda") for r in rows),
            }
        base = runs[counts[0]]["loop_samples_per_s"]
        for n in counts:
            runs[n]["speedup_vs_1"] = runs[n]["loop_samples_per_s"] / base if base else None
    return out


def gpu_markdown(r: dict) -> list[str]:
    if "skipped" in r:
        return ["", f"GPU sharing: not measured ({r['skipped']})."]
    lines = ["", f"GPU sharing on one {r['device']}: the default CNN, {r['epochs']} epoch(s) per trial on "
             f"{r['fraction']:.0%} of the training split, n concurrent trials holding 1/n of the GPU "
             "each; samples/s are summed over the trials' last epochs (training loops), "
             "wall-clock from the first trial's start to the last report.", "",
             "| precision | trials | aggregate train samples/s | vs 1 trial | wall-clock samples/s | "
             "peak GPU memory per trial (MiB) | GPU util mean / max (%) | reports on cuda |",
             "|---|---|---|---|---|---|---|---|"]
    for precision, runs in r["runs"].items():
        for n, x in runs.items():
            util = ("-" if x["gpu_util_mean"] is None
                    else f"{x['gpu_util_mean']:.0f} / {x['gpu_util_max']:.0f}")
            lines.append(f"| {precision} | {n} | {x['loop_samples_per_s']:,.0f} | "
                         f"{x['speedup_vs_1']:.2f}x | {x['wall_samples_per_s']:,.0f} | "
                         f"{x['gpu_mem_peak_mb_per_trial']:,.0f} | {util} | "
                         f"{x['reports_on_cuda']}/{x['reports']} |")
    four = {p: runs.get(4, runs.get("4")) for p, runs in r["runs"].items()}
    for p, x in four.items():
        if x is not None:
            met = "met" if x["speedup_vs_1"] and x["speedup_vs_1"] >= 2.5 else "not met"
            lines.append(f"\n{p}: 4 trials on one GPU give {x['speedup_vs_1']:.2f}x the aggregate "
                         f"samples/s of 1 trial (target >= 2.5x: {met}).")
    return lines


# -- 1 (issue 5). search efficiency -----------------------------------------------------------
ARM_A, ARM_B, ARM_C = "a: TPE + ASHA", "b: random + ASHA", "c: random, no early stopping"
ARMS = {ARM_A: ("tpe", "asha"), ARM_B: ("random", "asha"), ARM_C: ("random", "fifo")}


def epochs_to_reach(search_dir: Path, target: float) -> int | None:
    rows = sorted(progress(search_dir), key=lambda r: r["timestamp"])
    best = -1.0
    for i, r in enumerate(rows, 1):
        best = max(best, r["val_acc"])
        if best >= target:
            return i
    return None


def bench_search(mode: Mode, results: Path, plots: Path = RESULTS) -> dict:
    per_seed = []
    for seed in range(mode.seeds):
        runs = {}
        for arm, (searcher, scheduler) in ARMS.items():
            name = f"search-{searcher}-{scheduler}-{seed}"
            summary = search("cnn_emnist", name, results, num_samples=mode.search_samples,
                             max_epochs=mode.search_epochs, data_fraction=mode.search_fraction,
                             seed=seed, searcher=searcher, scheduler=scheduler, max_failures=0,
                             startup_trials=mode.startup_trials)
            best = summary["best"] or {}
            runs[arm] = {"dir": str(results / name), "epochs": summary["total_epochs"],
                         "wall_s": summary["wall_s"], "best_val_acc": best.get("val_acc"),
                         "test_acc": best.get("test_acc")}
        overall = max(r["best_val_acc"] for r in runs.values())
        c_best = runs[ARM_C]["best_val_acc"]
        for r in runs.values():
            r["epochs_to_within_1pt"] = epochs_to_reach(Path(r["dir"]), overall - 0.01)
            r["epochs_to_within_1pt_of_c"] = epochs_to_reach(Path(r["dir"]), c_best - 0.01)
        per_seed.append(runs)
    out = {}
    for arm in ARMS:
        vals = [s[arm] for s in per_seed]
        out[arm] = {k: stats([v[k] for v in vals if v[k] is not None])
                    for k in ("epochs", "wall_s", "best_val_acc", "test_acc")}
        # Per seed, None where the arm never got there: a median over such values would mislead.
        for k in ("epochs_to_within_1pt", "epochs_to_within_1pt_of_c"):
            out[arm][k] = [v[k] for v in vals]
    pairs = [(s[ARM_A], s[ARM_C]) for s in per_seed]
    out["a_epochs_over_c_epochs"] = stats([a["epochs"] / c["epochs"] for a, c in pairs])
    out["a_epochs_to_c_best_over_c_epochs"] = [
        None if a["epochs_to_within_1pt_of_c"] is None
        else a["epochs_to_within_1pt_of_c"] / c["epochs"] for a, c in pairs]
    out["per_seed"] = per_seed
    out["settings"] = {"num_samples": mode.search_samples, "max_epochs": mode.search_epochs,
                       "data_fraction": mode.search_fraction, "seeds": mode.seeds,
                       "tpe_startup_trials": mode.startup_trials}
    plot_search(per_seed, plots / f"search_efficiency_{mode.name}.png")
    return out


def plot_search(per_seed: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(per_seed), figsize=(5 * len(per_seed), 3.8), squeeze=False)
    for ax, runs, seed in zip(axes.flat, per_seed, range(len(per_seed))):
        for (arm, r), style in zip(runs.items(), ("-", "--", ":")):
            rows = sorted(progress(Path(r["dir"])), key=lambda x: x["timestamp"])
            best = np.maximum.accumulate([x["val_acc"] for x in rows])
            ax.step(range(1, len(best) + 1), best, where="post", label=arm, linestyle=style,
                    lw=2.5 if style == "-" else 1.8)
        ax.set(title=f"seed {seed}", xlabel="epochs trained (all trials)", ylabel="best val_acc")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(loc="lower right", fontsize=9)
    fig.suptitle("Best val_acc against epochs trained")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


# -- 6. accuracy ----------------------------------------------------------------------------
def retrain_epochs(mode: Mode, samples_per_s: float, train_size: int) -> int:
    """Epochs of the full-split retraining that fit its time budget at the measured rate."""
    return max(1, min(mode.retrain_epochs, int(mode.retrain_budget_s * samples_per_s / train_size)))


def bench_accuracy(mode: Mode, results: Path) -> dict:
    """A time-boxed TPE + ASHA search on a slice, then its best config retrained on the full split."""
    import ray

    ray.shutdown()
    summary = search("cnn_emnist", "accuracy-search", results, num_samples=1000,
                     max_epochs=mode.accuracy_epochs, data_fraction=mode.accuracy_fraction,
                     time_budget_s=mode.accuracy_budget_s, max_failures=0)
    ray.shutdown()
    best = summary["best"]
    rows = [r for r in progress(results / "accuracy-search") if r["trial"] == f"trial_{best['trial_id']}"]
    rate = statistics.median(r["train_samples_per_s"] for r in rows)  # 1 thread, in the search
    train_size = len(EMNIST(DataConfig(data_fraction=mode.retrain_fraction)).split_indices()[0])
    epochs = retrain_epochs(mode, rate, train_size)
    cfg = TrainConfig.from_dict({**best["config"], "data_fraction": mode.retrain_fraction,
                                 "max_epochs": epochs})
    torch.set_num_threads(2)
    start = time.time()
    result = train(cfg, results / "accuracy-retrain", enable_progress_bar=False)
    return {"search_trials": summary["num_trials"], "search_budget_s": mode.accuracy_budget_s,
            "search_epochs": summary["total_epochs"], "search_max_epochs": mode.accuracy_epochs,
            "search_fraction": mode.accuracy_fraction, "search_status": summary["status_counts"],
            "search_best_val_acc": best["val_acc"], "search_best_test_acc": best["test_acc"],
            "best_config": best["params"], "best_samples_per_s": rate,
            "retrain_train_size": train_size, "retrain_epochs": epochs,
            "retrain_fraction": mode.retrain_fraction, "retrain_s": time.time() - start,
            "retrain_val_acc": result.metrics.get("best_val_acc"),
            "test_acc": result.test_acc, "paper_byclass_opium": 0.6971}


ITEMS = ["data_path", "lines", "startup", "overhead", "concurrency", "search", "tpe_startup",
         "accuracy", "gpu"]


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPU cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}, "
            f"torch {torch.__version__}, no GPU" if not torch.cuda.is_available() else
            f"GPU {torch.cuda.get_device_name(0)}")


def markdown(mode: Mode, res: dict) -> str:
    lines = [f"### Benchmarks ({mode.name} mode)", "",
             f"Machine: {machine()}. Figures: median (min-max) over {mode.reps} repetitions "
             "unless stated; arms alternate within one run.", "",
             "| item | measured | target | met |", "|---|---|---|---|"]
    if "data_path" in res:
        r = res["data_path"]
        lines.append(f"| data path: train-loader images/s, ours vs lab's per-item ToTensor | "
                     f"{fmt(r['ours_images_per_s'])} vs {fmt(r['lab_images_per_s'])}: "
                     f"**{fmt(r['speedup'], 1)}x** | >= 10x | {'yes' if r['speedup']['median'] >= 10 else 'no'} |")
    if "lines" in res:
        r = res["lines"]
        lines.append(f"| EMNIST Lines: seconds to generate 10,000 lines | {fmt(r['seconds_for_10000_lines'], 2)} s | - | - |")
    if "startup" in res:
        r = res["startup"]
        lines.append(f"| `smoke` search: seconds to first reported result | {fmt(r['seconds_to_first_result'], 1)} s | - | - |")
        lines.append(f"| `smoke` search: total wall time | {fmt(r['smoke_total_seconds'], 1)} s | well under 60 s | {'yes' if r['smoke_total_seconds']['median'] < 60 else 'no'} |")
    if "overhead" in res:
        r = res["overhead"]
        lines.append(f"| trial overhead: plain PyTorch loop / Tune trial, train samples/s (default CNN, 1 thread) | "
                     f"{fmt(r['plain_samples_per_s'])} / {fmt(r['trial_samples_per_s'])} = **{fmt(r['slowdown'], 3)}x** | <= 1.10x | {'yes' if r['slowdown']['median'] <= 1.10 else 'no'} |")
    if "concurrency" in res:
        r = res["concurrency"]
        lines.append(f"| 2 concurrent 1-CPU trials vs 2 sequential: aggregate training-loop samples/s | "
                     f"{fmt(r['loop_concurrent'])} vs {fmt(r['loop_sequential'])}: **{fmt(r['loop_speedup'], 2)}x** | >= 1.7x | {'yes' if r['loop_speedup']['median'] >= 1.7 else 'no'} |")
        lines.append(f"| same, wall clock from first trial start to last result (incl. trial start-up, validation) | "
                     f"{fmt(r['concurrent_samples_per_s'])} vs {fmt(r['sequential_samples_per_s'])}: **{fmt(r['speedup'], 2)}x** | - | - |")
        lines.append(f"| peak memory (PSS, driver + Ray), 1 vs 2 concurrent trials | {fmt(r['peak_pss_mib_1'])} vs {fmt(r['peak_pss_mib_2'])} MiB; "
                     f"the 2nd trial adds {fmt(r['added_by_second_trial_mib'])} MiB; a trial's private memory (USS) {fmt(r['peak_trial_worker_uss_mib'])} MiB; dataset {r['dataset_mib']:.0f} MiB, read-only shared view in {r['trials_with_shared_data']} | no 2nd dataset copy | {'yes' if r['trials_with_shared_data'].split('/')[0] == r['trials_with_shared_data'].split('/')[1].split()[0] else 'no'} |")
    if "accuracy" in res:
        r = res["accuracy"]
        lines.append(f"| accuracy: best config of a {r['search_budget_s'] / 60:.0f}-min search, retrained "
                     f"{r['retrain_epochs']} epochs on {r['retrain_fraction']:.0%} of the training split: test accuracy | "
                     f"**{r['test_acc']:.4f}** (1 run) | EMNIST paper ByClass baseline {r['paper_byclass_opium']:.2%} | "
                     f"{'above' if r['test_acc'] > r['paper_byclass_opium'] else 'below'} (see below) |")
    if "gpu" not in res or "skipped" in res["gpu"]:
        lines.append("| 1, 2, 4, 8 trials sharing one GPU | not measured: no GPU on this machine | - | - |")
    if "search" in res:
        r = res["search"]
        s = r["settings"]
        lines += ["", f"Search efficiency: `cnn_emnist`, {s['num_samples']} trials, max {s['max_epochs']} epochs, "
                  f"{s['data_fraction']:.0%} of the training split, {s['seeds']} seeds, TPE's first "
                  f"{s['tpe_startup_trials']} trials random. Epochs, wall time and accuracies are "
                  "median (min-max) over the seeds; the epochs-to-reach columns list each seed "
                  "(epochs trained by all trials of the arm, in time order):", "",
                  "| arm | epochs trained | wall s | best val_acc | test acc of best | epochs to within 1 pt of best of any arm | epochs to within 1 pt of (c)'s best |",
                  "|---|---|---|---|---|---|---|"]
        for arm in ARMS:
            a = r[arm]
            lines.append(f"| {arm} | {fmt(a['epochs'])} | {fmt(a['wall_s'])} | {fmt(a['best_val_acc'], 3)} | "
                         f"{fmt(a['test_acc'], 3)} | {per_seed_fmt(a['epochs_to_within_1pt'])} | "
                         f"{per_seed_fmt(a['epochs_to_within_1pt_of_c'])} |")
        q = r["a_epochs_to_c_best_over_c_epochs"]
        met = sum(v is not None and v <= 1 / 3 for v in q)
        lines += ["", f"(a) trained {fmt(r['a_epochs_over_c_epochs'], 2)} of (c)'s epochs. It came within 1 point of "
                  f"(c)'s best after this share of (c)'s epochs, per seed: {per_seed_fmt(q, 2)} "
                  f"(target <= 0.33 met in {met} of {len(q)} seeds; median "
                  f"{'met' if median_or_never(q) <= 1 / 3 else 'not met'})."]
    if "accuracy" in res:
        r = res["accuracy"]
        lines += ["", f"Accuracy: a {r['search_budget_s'] / 60:.0f}-minute TPE + ASHA search of `cnn_emnist` "
                  f"({r['search_trials']} trials, {r['search_epochs']} epochs, at most {r['search_max_epochs']} "
                  f"per trial, on {r['search_fraction']:.0%} of the training split) found "
                  f"`{json.dumps(r['best_config'], sort_keys=True)}` (val_acc {r['search_best_val_acc']:.3f}). "
                  f"Retrained for {r['retrain_epochs']} epochs on {r['retrain_fraction']:.0%} of the sample's "
                  f"training split ({r['retrain_train_size']:,} images, {r['retrain_s'] / 60:.1f} min): "
                  f"**test accuracy {r['test_acc']:.4f}** on the sample's test split (23,265 images), beside the "
                  f"EMNIST paper's ByClass baseline of {r['paper_byclass_opium']:.2%} (OPIUM, Cohen et al. 2017, "
                  "trained on the full 698k-image training split, so not a like-for-like comparison)."]
    if "tpe_startup" in res:
        lines += tpe_startup_markdown(res["tpe_startup"])
    if "gpu" in res:
        lines += gpu_markdown(res["gpu"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small fractions, few trials")
    parser.add_argument("--only", default=",".join(ITEMS), help=f"comma list of {ITEMS}")
    parser.add_argument("--results", default=None,
                        help="folder for the searches it runs (finished ones there are reused)")
    parser.add_argument("--table", action="store_true",
                        help="only rewrite the table from the mode's saved JSON; run nothing")
    parser.add_argument("--seeds", type=int, help="override the mode's number of search seeds")
    parser.add_argument("--accuracy_budget_s", type=float, help="override the accuracy search budget")
    parser.add_argument("--retrain_epochs", type=int, help="override the accuracy retraining epochs")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    overrides = {k: getattr(args, k) for k in ("seeds", "accuracy_budget_s", "retrain_epochs")
                 if getattr(args, k) is not None}
    mode = dataclasses.replace(mode, **overrides)
    items = [] if args.table else [i.strip() for i in args.only.split(",") if i.strip()]
    unknown = set(items) - set(ITEMS)
    if unknown:
        parser.error(f"unknown items {sorted(unknown)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(args.results or RESULTS / "raw" / f"{mode.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if items:
        work.mkdir(parents=True, exist_ok=True)
        EMNIST().prepare_data()
    previous = RESULTS / f"{mode.name}.json"
    res: dict = json.loads(previous.read_text()) if previous.exists() else {}
    for item in items:
        start = time.time()
        fn = globals()[f"bench_{item}"]
        res[item] = fn(mode, work) if item not in ("data_path", "lines") else fn(mode)
        res[item]["seconds"] = time.time() - start
        print(f"[{item}] done in {res[item]['seconds']:.0f} s", file=sys.stderr, flush=True)
        # merged into the file as it is now: another runner may have saved an item meanwhile
        saved = json.loads(previous.read_text()) if previous.exists() else {}
        res = {**saved, item: res[item]}
        previous.write_text(json.dumps(res, indent=1, default=str))
    res = {k: res[k] for k in ITEMS if k in res}
    text = markdown(mode, res)
    (RESULTS / f"{mode.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
