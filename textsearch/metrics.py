"""What a run is measured by: metric names, their directions and labels, and which is better.

Every module that names a metric or compares two values of one reads it here: the trial's
epoch reports, the checkpoint a run keeps, the test split's figures, the searcher, the
summary's best trial, the live view and the plots.  Nothing here imports torch, Ray or
another module of textsearch but :mod:`textsearch.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from textsearch.errors import UserError

# What a trial reports each epoch that a search may optimise, and which way is better.
OBJECTIVE_METRICS = {
    "val_acc": "max", "val_loss": "min", "train_acc": "max", "train_loss": "min",
    "val_cer": "min",  # lines: character error rate of the greedy CTC reading
    "val_line_acc": "max",  # lines: share of lines read exactly
    "train_samples_per_s": "max", "epoch_s": "min",
    "params": "min",  # parameter count of the model
    "infer_ms_per_image": "min",  # inference time per image, batch of 256, on the trial's device
}
MAX_OBJECTIVES = 3

# What Lightning logs each epoch that a trial reports (beside its throughput and timings).
LOGGED = ("val_acc", "val_loss", "train_loss", "train_acc", "val_cer", "val_line_acc")

# The headline figures of the test split, and how the report names them.
TEST_LABELS = {"test_acc": "Test accuracy", "test_cer": "Test character error rate",
               "test_line_acc": "Test line accuracy"}


def checkpoint_metric(reads_lines: bool) -> tuple[str, str]:
    """The validation metric that picks a run's best checkpoint, and its direction."""
    return ("val_cer", "min") if reads_lines else ("val_acc", "max")


def training_metric(reads_lines: bool) -> tuple[str, str]:
    """What picks the best checkpoint of a run that does not validate."""
    return ("train_loss", "min") if reads_lines else ("train_acc", "max")


def test_metrics(reads_lines: bool) -> tuple[str, ...]:
    """What the test split is scored by, the headline first: ``test_acc`` for characters,
    ``test_cer`` and ``test_line_acc`` for lines."""
    return ("test_cer", "test_line_acc") if reads_lines else ("test_acc",)


def hparam_metrics(reads_lines: bool) -> list[str]:
    """The metrics TensorBoard's HParams view shows beside a run's hyperparameters."""
    if reads_lines:
        return ["val_cer", "val_line_acc", "val_loss", "train_loss", *test_metrics(True)]
    return ["val_acc", "val_loss", "train_loss", *test_metrics(False)]


def headline_test(tested: dict[str, Any]) -> tuple[str, float | None]:
    """(label, value) of the headline test figure among ``tested`` (value None: not tested)."""
    name = "test_cer" if "test_cer" in tested else "test_acc"
    return TEST_LABELS[name], tested.get(name)


def parse_objectives(value: Any, where: str) -> list[tuple[str, str]]:
    """``{"val_acc": "max", ...}``, ``[["val_acc", "max"], ...]`` or ``"val_acc:max,params:min"``
    -> ``[("val_acc", "max"), ...]``, checked (known metrics, max/min, 1 to 3, no repeats).

    In the text form the mode may be left out: each metric's natural direction is taken.
    """
    if isinstance(value, str):
        pairs = []
        for part in value.split(","):
            name, _, mode = part.strip().partition(":")
            pairs.append((name.strip(), mode.strip() or OBJECTIVE_METRICS.get(name.strip(), "")))
    elif isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2
                                                  for p in value):
        pairs = [tuple(p) for p in value]
    else:
        raise UserError(f"{where}: objectives must be a dict like {{'val_acc': 'max'}}")
    if not 1 <= len(pairs) <= MAX_OBJECTIVES:
        raise UserError(f"{where}: 1 to {MAX_OBJECTIVES} objectives, got {len(pairs)}")
    for name, mode in pairs:
        if name not in OBJECTIVE_METRICS:
            raise UserError(f"{where}: unknown objective {name!r}; known: "
                             f"{', '.join(OBJECTIVE_METRICS)}")
        if mode not in ("max", "min"):
            raise UserError(f"{where}: objective {name!r} must be 'max' or 'min', got {mode!r}")
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: an objective is named twice: {', '.join(names)}")
    return [(str(n), str(m)) for n, m in pairs]


def sign(mode: str) -> int:
    """+1 where larger is better (``max``), -1 where smaller is (``min``)."""
    return 1 if mode == "max" else -1


def better(a: float, b: float | None, mode: str) -> bool:
    """Whether ``a`` is strictly better than ``b`` (anything beats None)."""
    return b is None or sign(mode) * a > sign(mode) * b


def best(values: Iterable[float], mode: str) -> float | None:
    """The best of ``values`` (None: there are none)."""
    found = None
    for v in values:
        if better(v, found, mode):
            found = v
    return found


def best_index(values: Sequence[float | None], mode: str) -> int | None:
    """Where the best value of ``values`` is (None values skipped), ties to the earliest."""
    found = None
    for i, v in enumerate(values):
        if v is not None and (found is None or better(v, values[found], mode)):
            found = i
    return found


def running_best(values: Iterable[float], mode: str) -> list[float]:
    """The best value seen up to each position: a running maximum (minimum for ``min``)."""
    out: list[float] = []
    for v in values:
        out.append(v if not out or better(v, out[-1], mode) else out[-1])
    return out


def best_trial(rows: Sequence[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The best trial: the row whose ``best_<metric>`` (its best epoch) is best, ties to the
    lower trial ``number``."""
    ordered = sorted(rows, key=lambda r: r["number"])
    i = best_index([r[f"best_{metric}"] for r in ordered], mode)
    return None if i is None else ordered[i]
