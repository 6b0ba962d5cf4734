"""Trial overhead: a bare PyTorch loop against the same default CNN inside a Tune trial."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from benchmarks.common import (
    BENCH_SPACES,
    Mode,
    fmt,
    progress,
    search,
    stats,
)
from textsearch.data import EMNIST
from textsearch.data.base import uint8_to_float
from textsearch.training import TrainConfig, make_model


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


def run(mode: Mode, results: Path) -> dict:
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


def rows(r: dict) -> list[str]:
    """This item's rows of the results table."""
    lines: list[str] = []

    lines.append(f"| trial overhead: plain PyTorch loop / Tune trial, train samples/s (default CNN, 1 thread) | "
                 f"{fmt(r['plain_samples_per_s'])} / {fmt(r['trial_samples_per_s'])} = **{fmt(r['slowdown'], 3)}x** | <= 1.10x | {'yes' if r['slowdown']['median'] <= 1.10 else 'no'} |")
    return lines
