"""Memory format: the CNNs' training steps in channels_last (their format) against NCHW.

The eight configs of ``benchmarks/spaces/fixed_cnn.py`` (random draws from `cnn_emnist`),
one thread as in a search trial, random batches of each config's batch size; each format
alternately, ``mode.reps`` times.  Reported: training samples/s, channels_last / NCHW.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.common import Mode, compare_rates, rates_table, ratio_range, samples_per_s
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
    return [f"| CNN training samples/s, channels_last / NCHW, {len(r['configs'])} `cnn_emnist` "
            f"configs, 1 thread | {ratio_range(r['configs'])} | - | - |"]


def section(r: dict) -> list[str]:
    return ["", "CNN training samples/s by memory format (1 thread), the configs of "
            "`benchmarks/spaces/fixed_cnn.py`, median (min-max):", "",
            *rates_table(r["configs"], ("nchw", "channels_last"), ("NCHW", "channels_last"))]
