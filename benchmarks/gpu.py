"""GPU sharing: 1, 2, 4, 8 concurrent default-CNN trials on one GPU, fp32 and bf16-mixed."""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

import torch

from benchmarks.common import (
    BENCH_SPACES,
    Mode,
    Sampler,
    aggregate_rate,
    progress,
    search,
)

GPU_COUNTS = (1, 2, 4, 8)
GPU_PRECISIONS = ("32", "bf16-mixed")


class GPUSampler(Sampler):
    """GPU utilisation (%) and memory used (MiB) from ``nvidia-smi``, every 0.5 s."""

    COMMAND = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
               "--format=csv,noheader,nounits", "--id=0"]

    def __init__(self) -> None:
        super().__init__()
        self.util: list[float] = []
        self.mem: list[float] = []

    def sample(self) -> bool:
        try:
            out = subprocess.run(self.COMMAND, capture_output=True, text=True, timeout=5).stdout
            util, mem = (float(v) for v in out.strip().split(","))
        except (OSError, ValueError, subprocess.SubprocessError):
            return False  # no nvidia-smi (a CPU machine): nothing to sample
        self.util.append(util)
        self.mem.append(mem)
        return True


def run(mode: Mode, results: Path, counts: tuple[int, ...] = GPU_COUNTS,
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
                       scheduler="fifo", max_failures=0, precision=precision)
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


def section(r: dict) -> list[str]:
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


def rows(r: dict) -> list[str]:
    if "skipped" in r:
        return ["| 1, 2, 4, 8 trials sharing one GPU | not measured: no GPU on this machine | - | - |"]
    return []
