"""EMNIST Lines: seconds to generate 10,000 lines."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    Mode,
    fmt,
    stats,
)
from textsearch.data import EMNIST


def run(mode: Mode, results: Path | None = None) -> dict:
    from textsearch.config import LinesConfig
    from textsearch.data.emnist_lines import generate
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


def rows(r: dict) -> list[str]:
    """This item's rows of the results table."""
    lines: list[str] = []

    lines.append(f"| EMNIST Lines: seconds to generate 10,000 lines | {fmt(r['seconds_for_10000_lines'], 2)} s | - | - |")
    return lines
