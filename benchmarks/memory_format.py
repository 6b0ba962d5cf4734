"""Memory format: the CNNs' training steps in channels_last (their format) against NCHW.

The eight configs of ``benchmarks/spaces/fixed_cnn.py`` (random draws from `cnn_emnist`),
one thread as in a search trial, random batches of each config's batch size; each format
alternately, ``mode.reps`` times.  Reported: training samples/s, channels_last / NCHW.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.common import Mode, compare_rates, fmt, samples_per_s
from benchmarks.spaces.fixed_cnn import CONFIGS
from textsearch.training import TrainConfig, make_model

CLASSES = 62


def train_rate(config: dict, channels_last: bool, seconds: float) -> float:
    cfg = TrainConfig.from_dict({"data_class": "EMNIST", "model_class": "CNN", **config})
    torch.manual_seed(0)
    model = make_model(cfg, (1, 28, 28), CLASSES)  # channels_last, as it trains
    fmt_ = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt_)
    forward = model.forward if channels_last else (lambda x: model.head(model.features(x)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(cfg.batch_size, 1, 28, 28)
    y = torch.randint(0, CLASSES, (cfg.batch_size,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(forward(x), y).backward()
        opt.step()

    return samples_per_s(step, cfg.batch_size, seconds)


def run(mode: Mode, results: Path | None) -> dict:
    return {"configs": compare_rates(CONFIGS[: mode.fixed_samples], train_rate,
                                     ("nchw", "channels_last"), mode.reps,
                                     mode.fusion_seconds / 2)}


def rows(r: dict) -> list[str]:
    ratios = sorted(c["ratio"]["median"] for c in r["configs"])
    return [f"| CNN training samples/s, channels_last / NCHW, {len(ratios)} `cnn_emnist` configs, "
            f"1 thread | {ratios[len(ratios) // 2]:.2f}x median ({ratios[0]:.2f}-{ratios[-1]:.2f}x)"
            f" | - | - |"]


def section(r: dict) -> list[str]:
    lines = ["", "CNN training samples/s by memory format (1 thread), the configs of "
             "`benchmarks/spaces/fixed_cnn.py`, median (min-max):", "",
             "| blocks | block | channels | batch | NCHW | channels_last | ratio |",
             "|---|---|---|---|---|---|---|"]
    for c in r["configs"]:
        k = c["config"]
        lines.append(f"| {k['num_blocks']} | {k['block']} | {k['conv_dim']} | {k['batch_size']} | "
                     f"{fmt(c['nchw'])} | {fmt(c['channels_last'])} | {fmt(c['ratio'], 2)}x |")
    return lines
