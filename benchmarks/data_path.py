"""Data path: train-loader images/s, ours against the lab's per-item ``ToTensor`` loader."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    Mode,
    fmt,
    stats,
)
from textsearch.data import EMNIST, DataConfig
from textsearch.data.base import batch_loader, uint8_to_float


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


def run(mode: Mode, results: Path | None = None) -> dict:
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


def rows(r: dict) -> list[str]:
    """This item's rows of the results table."""
    lines: list[str] = []

    lines.append(f"| data path: train-loader images/s, ours vs lab's per-item ToTensor | "
                 f"{fmt(r['ours_images_per_s'])} vs {fmt(r['lab_images_per_s'])}: "
                 f"**{fmt(r['speedup'], 1)}x** | >= 10x | {'yes' if r['speedup']['median'] >= 10 else 'no'} |")
    return lines
