"""Configs: every option a run takes, declared once, without importing torch or Lightning.

:class:`TrainConfig` is flat (model, data and optimisation options side by side) so a search
space can set any of them by name.  It is made of one dataclass per concern, each field
declared with :func:`textsearch.options.option`; ``textsearch.train``'s flags and the debug
run's ``--set`` checks are generated from them.  Command-line tools import this module, not
:mod:`textsearch.training`, so ``--help``, ``--list`` and bad input answer without torch.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

from textsearch.errors import UserError
from textsearch.metrics import checkpoint_metric, test_metrics
from textsearch.options import option, options_of, subset

MODEL_NAMES = ("MLP", "CNN", "LineCNN")  # built by textsearch.training.make_model
LINE_MODELS = ("LineCNN",)  # models that read whole lines (EMNISTLines), trained with CTC
DATA_NAMES = ("EMNIST", "MNIST", "EMNISTLines")  # textsearch.data.DATA_CLASSES
PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")
# auto: bf16-mixed where the device computes bf16 natively (a CUDA GPU of compute capability
# 8.0 or more, a CPU with AVX512-BF16 or AMX), else 32 (textsearch.training.resolve_precision)

BLOCKS = ("plain", "residual")
DOWNSAMPLES = ("maxpool", "stride")


@dataclass
class DataConfig:
    """Options shared by every DataModule, taken from a checked :class:`TrainConfig`.

    batch_size: examples per batch. num_workers: DataLoader worker processes (0 = main
    process). val_fraction: share of the training file held out for validation, split with
    ``split_seed``. data_fraction: share of the training split actually used (quick searches).
    seed: the training shuffle's seed (the run's seed; each epoch draws its own order).
    overfit: validate on the training batches (Lightning's overfit mode), unshuffled.
    """

    batch_size: int = 128
    num_workers: int = 0
    val_fraction: float = 0.2
    data_fraction: float = 1.0
    split_seed: int = 42
    seed: int = 0
    pin_memory: bool = False
    overfit: bool = False


@dataclass
class CNNConfig:
    """The CNN's options (``dropout`` is the MLP's too)."""

    num_blocks: int = option(2, "CNN: number of blocks (1..6)", minimum=0, above=True)
    block: str = option("plain", f"CNN: block type ({', '.join(BLOCKS)})", choices=BLOCKS)
    batchnorm: bool = option(False, "CNN: BatchNorm after convolutions")
    downsample: str = option("maxpool", f"CNN: how to halve the feature map "
                             f"({', '.join(DOWNSAMPLES)})", choices=DOWNSAMPLES)
    downsample_every: int = option(2, "CNN: halve the feature map after every n-th block",
                                   minimum=0, above=True)
    conv_dim: int = option(64, "CNN: channels per block", minimum=0, above=True)
    fc_dim: int = option(128, "CNN: hidden fully-connected width", minimum=0, above=True)
    dropout: float = option(0.5, "dropout probability in [0, 1) (CNN and MLP)", minimum=0,
                             below=1)

    def problem(self) -> str | None:
        """The first reason these options cannot build a CNN, as a sentence (None: they can).

        One home for the rules: :meth:`validate` raises it as a :class:`UserError`, the CNN
        as its own :class:`textsearch.models.errors.ModelConfigError`.
        """
        for f in options_of(CNNConfig):
            problem = option_problem(f, getattr(self, f.name))
            if problem:
                return problem
        if not 1 <= self.num_blocks <= 6:
            return f"num_blocks must be between 1 and 6, got {self.num_blocks}"
        if self.block not in BLOCKS:
            return f"block must be one of {', '.join(BLOCKS)}, got {self.block!r}"
        if self.downsample not in DOWNSAMPLES:
            return f"downsample must be one of {', '.join(DOWNSAMPLES)}, got {self.downsample!r}"
        if self.downsample_every < 1:
            return f"downsample_every must be >= 1, got {self.downsample_every}"
        if self.conv_dim <= 0 or self.fc_dim <= 0:
            return f"conv_dim and fc_dim must be positive, got {self.conv_dim}, {self.fc_dim}"
        return None

    def validate(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise UserError(problem)


@dataclass
class LineOptions:
    """How the line model slides the CNN across a line (pixels of the 28-pixel-high line)."""

    window_width: int = option(28, "LineCNN: width of the window the CNN reads, in pixels",
                               minimum=0, above=True)
    window_stride: int = option(14, "LineCNN: pixels between neighbouring windows (sets the "
                                "number of output steps)", minimum=0, above=True)


@dataclass
class LinesConfig:
    """How EMNIST Lines are generated (:mod:`textsearch.data.emnist_lines`): a line is a
    Brown-corpus snippet of at most ``max_length - 2`` characters, each drawn as an EMNIST
    image overlapping the next by a share in ``[min_overlap, max_overlap]`` of its width."""

    max_length: int = option(32, "EMNISTLines: tokens per label, <S> and <E> included (lines "
                             "are at most max_length - 2 characters, 28 * max_length pixels "
                             "wide)", minimum=3)
    min_overlap: float = option(0.0, "EMNISTLines: least share of a character's width drawn "
                                "over the next one", minimum=0, below=1)
    max_overlap: float = option(0.33, "EMNISTLines: largest share of a character's width "
                                "drawn over the next one (< 1)", minimum=0, below=1)
    num_train_lines: int = option(10_000, "EMNISTLines: training lines", minimum=0, above=True)
    num_val_lines: int = option(2_000, "EMNISTLines: validation lines", minimum=0, above=True)
    num_test_lines: int = option(2_000, "EMNISTLines: test lines", minimum=0, above=True)
    lines_seed: int = option(42, "EMNISTLines: seed of the generation (the same lines for "
                             "every run that names it)", minimum=0)

    def problem(self) -> str | None:
        """Why lines cannot be generated with these options (None: they can)."""
        for f in options_of(LinesConfig):
            problem = option_problem(f, getattr(self, f.name))
            if problem:
                return problem
        if self.min_overlap > self.max_overlap:
            return (f"--min_overlap {self.min_overlap:g} is above --max_overlap "
                    f"{self.max_overlap:g}: the least overlap cannot exceed the largest")
        return None

    def validate(self) -> None:
        problem = self.problem()
        if problem:
            raise UserError(problem)

    def key(self) -> str:
        """Every generation setting, as the cache of these lines records them."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def filename(self) -> str:
        return (f"lines_len{self.max_length}_ov{self.min_overlap:g}-{self.max_overlap:g}_"
                f"n{self.num_train_lines}-{self.num_val_lines}-{self.num_test_lines}_"
                f"s{self.lines_seed}.h5")


@dataclass
class MLPConfig:
    """The MLP's own options (its dropout is :class:`textsearch.models.cnn.CNNConfig`'s)."""

    fc1: int = option(1024, "MLP: first hidden layer width", minimum=0, above=True)
    fc2: int = option(128, "MLP: second hidden layer width", minimum=0, above=True)


@dataclass
class RunOptions:
    """What to train, and how long."""

    model_class: str = option("CNN", f"model to train: {', '.join(MODEL_NAMES)}",
                              choices=MODEL_NAMES)
    data_class: str = option("EMNIST", f"dataset: {', '.join(DATA_NAMES)}", choices=DATA_NAMES)
    max_epochs: int = option(5, "number of training epochs", minimum=0, above=True)
    seed: int = option(0, "random seed (weights, training order)", minimum=0)


@dataclass
class OptimOptions:
    """Adam and its schedule.  Units: lr per step."""

    lr: float = option(1e-3, "learning rate (Adam)", minimum=0, above=True)
    one_cycle_max_lr: float = option(0.0, "peak learning rate of a one-cycle schedule "
                                     "(0: constant lr)", minimum=0)
    weight_decay: float = option(0.0, "Adam weight decay", minimum=0)


@dataclass
class HardwareOptions:
    """Where a run trains."""

    gpus: float = option(0.0, "GPUs to train on (0: CPU; a search trial may hold a share of one)",
                         minimum=0)
    precision: str = option("auto", "Lightning precision; auto: bf16-mixed where the device has "
                            "native bf16 (CUDA compute capability >= 8.0, a CPU with AVX512-BF16 "
                            "or AMX), else 32 (16-mixed needs a GPU)", choices=PRECISIONS)
    num_workers: int = option(0, "DataLoader worker processes (0: load in the main process)",
                              minimum=0)


@dataclass
class DataOptions:
    """The data a run sees."""

    batch_size: int = option(128, "examples per batch", minimum=0, above=True)
    val_fraction: float = option(0.2, "share of the training file held out for validation",
                                 fraction=True)
    data_fraction: float = option(1.0, "share of the training split to use", fraction=True)
    balance: bool = option(False, "EMNIST: cap every class at the mean class count, in train, "
                           "val and test alike (default: NIST's natural class mix)")


@dataclass
class DebugOptions:
    """Lightning's debugging switches."""

    overfit_batches: float = option(0.0, "overfit this many batches (>= 1) or this fraction "
                                    "(< 1) of the data, validating on them", minimum=0)
    fast_dev_run: int = option(0, "run this many batches of train/val as a smoke check "
                               "(no value: 1)", minimum=0, flag_const=1)
    limit_train_batches: float = option(1.0, "train on this many batches (> 1) or this fraction "
                                        "(<= 1) per epoch", minimum=0, above=True)
    limit_val_batches: float = option(1.0, "validate on this many batches (> 1) or this "
                                      "fraction (<= 1)", minimum=0)


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@dataclass
class TrainConfig(LinesConfig, LineOptions, CNNConfig, MLPConfig, DebugOptions, DataOptions, HardwareOptions, OptimOptions,
                  RunOptions):
    """Everything one training run needs, flat, so a search space can set any of it by name.

    Each concern declares its options once (:func:`textsearch.options.option`): the
    dataclasses above and the models' :class:`CNNConfig` and :class:`MLPConfig`.
    """

    @classmethod
    def field_types(cls) -> dict[str, type]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config, checking names and types; an unknown name is an error."""
        types = cls.field_types()
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in types:
                raise UserError(f"unknown config key {name!r}; known: {', '.join(types)}")
            kwargs[name] = check_option(name, coerce(name, value, types[name]))
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def unused_option(self, names: set[str]) -> str | None:
        """The first of ``names`` that this run's model or data class never reads (None: all
        are read), e.g. ``batchnorm`` for the MLP or ``balance`` for MNIST."""
        owners = {name: ("CNN", "LineCNN") for name in option_names(CNNConfig)
                  if name != "dropout"}
        owners.update({name: ("MLP",) for name in option_names(MLPConfig)})
        owners.update({name: ("LineCNN",) for name in option_names(LineOptions)})
        owners.update({name: ("EMNISTLines",) for name in option_names(LinesConfig)})
        owners["balance"] = ("EMNIST",)
        for name in sorted(names):
            users = owners.get(name)
            if users and self.model_class not in users and self.data_class not in users:
                return name
        return None

    def validate(self) -> None:
        """The one check of a run's options: each against its declaration (type aside: see
        :meth:`from_dict`), then the rules between options.  One :class:`UserError`, the
        first problem found."""
        for f in options_of(TrainConfig):
            problem = option_problem(f, getattr(self, f.name))
            if problem:
                raise UserError(problem)
        if self.reads_lines and self.data_class != "EMNISTLines":
            raise UserError(f"--model_class {self.model_class} reads whole lines: use "
                            f"--data_class EMNISTLines (not {self.data_class})")
        if self.data_class == "EMNISTLines" and not self.reads_lines:
            raise UserError(f"--data_class EMNISTLines yields whole lines; --model_class "
                            f"{self.model_class} classifies single characters: use "
                            "--model_class LineCNN, or --data_class EMNIST or MNIST")
        if self.reads_lines:
            problem = self.line_problem()
            if problem:
                raise UserError(problem)
        if self.val_fraction >= 1:
            raise UserError(f"val_fraction must be below 1 (some data must train), got "
                            f"{self.val_fraction:g}")
        if self.precision == "16-mixed" and self.gpus == 0:
            raise UserError("precision 16-mixed needs a GPU; on the CPU use bf16-mixed or 32")
        self.cnn_config().validate()

    def data_config(self) -> DataConfig:
        return DataConfig(batch_size=self.batch_size, num_workers=self.num_workers,
                          val_fraction=self.val_fraction, data_fraction=self.data_fraction,
                          seed=self.seed, pin_memory=self.gpus > 0,
                          overfit=bool(self.overfit_batches))

    def cnn_config(self) -> CNNConfig:
        return subset(CNNConfig, self)

    @property
    def reads_lines(self) -> bool:
        return self.model_class in LINE_MODELS

    def line_problem(self) -> str | None:
        """Why this run's lines cannot be made, or its window cannot slide across them
        (None: all is well)."""
        problem = self.lines_config().problem()
        if problem:
            return problem
        width = 28 * self.max_length
        if self.window_width > width:
            return (f"window_width {self.window_width} is wider than the line ({width} pixels: "
                    f"28 * max_length {self.max_length})")
        if self.window_stride > self.window_width:
            return (f"window_stride {self.window_stride} is larger than window_width "
                    f"{self.window_width}: the windows would skip pixels of the line")
        return None

    def lines_config(self) -> LinesConfig:
        """The EMNIST Lines generation settings of this run."""
        return subset(LinesConfig, self)

    @property
    def monitor(self) -> tuple[str, str]:
        """The validation metric that picks a run's best checkpoint, and its direction."""
        return checkpoint_metric(self.reads_lines)

    @property
    def test_metrics(self) -> tuple[str, ...]:
        """What the test split is scored by, the headline first."""
        return test_metrics(self.reads_lines)


def reads_lines(config: dict[str, Any]) -> bool:
    """Whether a config (a trial's fixed and searched values) trains a line model."""
    return config.get("model_class") in LINE_MODELS


def option_problem(f: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` is outside what option ``f`` declares (None: it is within)."""
    m, name = f.metadata, f.name
    if m.get("choices") is not None and value not in m["choices"]:
        return f"{name} must be one of {', '.join(map(str, m['choices']))}, got {value!r}"
    if isinstance(value, bool):
        return None
    if m.get("fraction") and not 0 < value <= 1:
        return f"{name} must be a fraction in (0, 1], got {value}"
    low, high = m.get("minimum"), m.get("below")
    if low is not None and (value <= low if m["above"] else value < low):
        return f"{name} must be {'>' if m['above'] else '>='} {low:g}, got {value}"
    if high is not None and value >= high:
        return f"{name} must be < {high:g}, got {value}"
    return None


def check_option(name: str, value: Any) -> Any:
    """``value`` if it is within what option ``name`` of :class:`TrainConfig` declares."""
    problem = option_problem(OPTIONS[name], value)
    if problem:
        raise UserError(problem)
    return value


def coerce(name: str, value: Any, typ: type) -> Any:
    """Check ``value`` against a config field's type (ints accepted for floats)."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str) and value:
            return value
    raise UserError(f"{name} must be of type {typ.__name__}, got {value!r}")




OPTIONS = {f.name: f for f in options_of(TrainConfig)}
