"""Concurrency and memory: 2 concurrent 1-CPU trials against 2 sequential ones."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import psutil

from benchmarks.common import (
    BENCH_SPACES,
    Mode,
    Sampler,
    aggregate_rate,
    fmt,
    progress,
    search,
    stats,
)
from textsearch.data import EMNIST


class MemorySampler(Sampler):
    """Peak summed PSS of this process and every Ray process, sampled every 0.2 s."""

    interval_s = 0.2

    def __init__(self) -> None:
        super().__init__()
        self.peak_pss = 0
        self.peak_worker_uss = 0

    def sample(self) -> None:
        me = os.getpid()
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


def training_rate(search_dir: Path, concurrent: bool) -> float:
    """Training-loop samples/s: summed over trials that ran together, else per trial."""
    rates = [r["train_samples_per_s"] for r in progress(search_dir)]
    return sum(rates) if concurrent else statistics.mean(rates)


def run(mode: Mode, results: Path) -> dict:
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


def rows(r: dict) -> list[str]:
    """This item's rows of the results table."""
    lines: list[str] = []

    lines.append(f"| 2 concurrent 1-CPU trials vs 2 sequential: aggregate training-loop samples/s | "
                 f"{fmt(r['loop_concurrent'])} vs {fmt(r['loop_sequential'])}: **{fmt(r['loop_speedup'], 2)}x** | >= 1.7x | {'yes' if r['loop_speedup']['median'] >= 1.7 else 'no'} |")
    lines.append(f"| same, wall clock from first trial start to last result (incl. trial start-up, validation) | "
                 f"{fmt(r['concurrent_samples_per_s'])} vs {fmt(r['sequential_samples_per_s'])}: **{fmt(r['speedup'], 2)}x** | - | - |")
    lines.append(f"| peak memory (PSS, driver + Ray), 1 vs 2 concurrent trials | {fmt(r['peak_pss_mib_1'])} vs {fmt(r['peak_pss_mib_2'])} MiB; "
                 f"the 2nd trial adds {fmt(r['added_by_second_trial_mib'])} MiB; a trial's private memory (USS) {fmt(r['peak_trial_worker_uss_mib'])} MiB; dataset {r['dataset_mib']:.0f} MiB, read-only shared view in {r['trials_with_shared_data']} | no 2nd dataset copy | {'yes' if r['trials_with_shared_data'].split('/')[0] == r['trials_with_shared_data'].split('/')[1].split()[0] else 'no'} |")
    return lines
