"""Configs: every option a run takes, declared once, without importing torch or Lightning.

:class:`TrainConfig` is flat (model, data and optimisation options side by side) so a search
space can set any of them by name.  It is made of one dataclass per concern, each field
declared with :func:`textsearch.options.option`; ``textsearch.train``'s flags and the debug
run's ``--set`` checks are generated from them.  Command-line tools import this module, not
:mod:`textsearch.training`, so ``--help``, ``--list`` and bad input answer without torch.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from textsearch.errors import UserError
from textsearch.options import option, subset

MODEL_NAMES = ("MLP", "CNN", "LineCNN")  # built by textsearch.training.make_model
LINE_MODELS = ("LineCNN",)  # models that read whole lines (EMNISTLines), trained with CTC
DATA_NAMES = ("EMNIST", "MNIST", "EMNISTLines")  # textsearch.data.DATA_CLASSES
PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")
# auto: bf16-mixed where the device computes bf16 natively (a CUDA GPU of compute capability
# 8.0 or more, a CPU with AVX512-BF16 or AMX), else 32 (textsearch.training.resolve_precision)

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


BLOCKS = ("plain", "residual")
DOWNSAMPLES = ("maxpool", "stride")


@dataclass
class DataConfig:
    """Options shared by every DataModule.

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

    def validate(self) -> None:
        if self.batch_size <= 0:
            raise UserError(f"batch_size must be a positive integer, got {self.batch_size}")
        if self.num_workers < 0:
            raise UserError(f"num_workers must be >= 0, got {self.num_workers}")
        if not 0.0 < self.val_fraction < 1.0:
            raise UserError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.data_fraction <= 1.0:
            raise UserError(f"data_fraction must be in (0, 1], got {self.data_fraction}")


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
    dropout: float = option(0.5, "dropout probability in [0, 1) (CNN and MLP)", minimum=0)

    def problem(self) -> str | None:
        """The first reason these options cannot build a CNN, as a sentence (None: they can).

        One home for the rules: :meth:`validate` raises it as a :class:`UserError`, the CNN
        as its own :class:`textsearch.models.errors.ModelConfigError`.
        """
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
        if not 0.0 <= self.dropout < 1.0:
            return f"dropout must be in [0, 1), got {self.dropout}"
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
class LinesOptions:
    """How EMNIST Lines are generated (:mod:`textsearch.data.emnist_lines`)."""

    max_length: int = option(32, "EMNISTLines: tokens per label, <S> and <E> included (lines "
                             "are at most max_length - 2 characters, 28 * max_length pixels "
                             "wide)", minimum=3)
    min_overlap: float = option(0.0, "EMNISTLines: least share of a character's width drawn "
                                "over the next one", minimum=0)
    max_overlap: float = option(0.33, "EMNISTLines: largest share of a character's width "
                                "drawn over the next one (< 1)", minimum=0)
    num_train_lines: int = option(10_000, "EMNISTLines: training lines", minimum=0, above=True)
    num_val_lines: int = option(2_000, "EMNISTLines: validation lines", minimum=0, above=True)
    num_test_lines: int = option(2_000, "EMNISTLines: test lines", minimum=0, above=True)


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
class TrainConfig(LinesOptions, LineOptions, CNNConfig, MLPConfig, DebugOptions, DataOptions, HardwareOptions, OptimOptions,
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
        owners.update({name: ("EMNISTLines",) for name in option_names(LinesOptions)})
        owners["balance"] = ("EMNIST",)
        for name in sorted(names):
            users = owners.get(name)
            if users and self.model_class not in users and self.data_class not in users:
                return name
        return None

    def validate(self) -> None:
        if self.model_class not in MODEL_NAMES:
            raise UserError(f"unknown model class {self.model_class!r}; known: "
                            f"{', '.join(MODEL_NAMES)}")
        if self.data_class not in DATA_NAMES:
            raise UserError(f"unknown data class {self.data_class!r}; known: "
                            f"{', '.join(DATA_NAMES)}")
        reads_lines = self.model_class in LINE_MODELS
        if reads_lines and self.data_class != "EMNISTLines":
            raise UserError(f"--model_class {self.model_class} reads whole lines: use "
                            f"--data_class EMNISTLines (not {self.data_class})")
        if self.data_class == "EMNISTLines" and not reads_lines:
            raise UserError(f"--data_class EMNISTLines yields whole lines; --model_class "
                            f"{self.model_class} classifies single characters: use "
                            "--model_class LineCNN, or --data_class EMNIST or MNIST")
        if reads_lines:
            problem = self.line_problem()
            if problem:
                raise UserError(problem)
        for name in ("max_epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"lr must be positive, got {self.lr}")
        if self.gpus < 0:
            raise UserError(f"gpus must be >= 0, got {self.gpus}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "16-mixed" and self.gpus == 0:
            raise UserError("precision 16-mixed needs a GPU; on the CPU use bf16-mixed or 32")
        if self.overfit_batches < 0 or self.fast_dev_run < 0:
            raise UserError("overfit_batches and fast_dev_run must be >= 0")
        if self.limit_train_batches <= 0 or self.limit_val_batches < 0:
            raise UserError("limit_train_batches must be > 0 and limit_val_batches >= 0")
        self.data_config().validate()
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
        """Why the window cannot slide across this run's lines (None: it can)."""
        width = 28 * self.max_length
        if self.window_width > width:
            return (f"window_width {self.window_width} is wider than the line ({width} pixels: "
                    f"28 * max_length {self.max_length})")
        if self.window_stride > self.window_width:
            return (f"window_stride {self.window_stride} is larger than window_width "
                    f"{self.window_width}: the windows would skip pixels of the line")
        if not self.min_overlap <= self.max_overlap < 1:
            return (f"overlaps must satisfy min_overlap <= max_overlap < 1, got "
                    f"{self.min_overlap:g}, {self.max_overlap:g}")
        return None

    def lines_config(self):
        """The EMNIST Lines generation settings of this run."""
        from textsearch.data.emnist_lines import LinesConfig

        return LinesConfig(max_length=self.max_length, min_overlap=self.min_overlap,
                           max_overlap=self.max_overlap, num_train=self.num_train_lines,
                           num_val=self.num_val_lines, num_test=self.num_test_lines)

    @property
    def monitor(self) -> tuple[str, str]:
        """The validation metric that picks a run's best checkpoint, and its direction."""
        return ("val_cer", "min") if self.reads_lines else ("val_acc", "max")

    @property
    def test_metrics(self) -> tuple[str, ...]:
        """What the test split is scored by, the headline first."""
        return test_metrics_of(self.model_class)


def test_metrics_of(model_class: str) -> tuple[str, ...]:
    """What a model class's test split is scored by, the headline first: ``test_acc`` for
    characters, ``test_cer`` and ``test_line_acc`` for lines."""
    return ("test_cer", "test_line_acc") if model_class in LINE_MODELS else ("test_acc",)


def check_option(name: str, value: Any) -> Any:
    """``value`` if it is within what the option declares (choices, minimum, fraction)."""
    m = {f.name: f.metadata for f in dataclasses.fields(TrainConfig)}[name]
    if m.get("choices") is not None and value not in m["choices"]:
        raise UserError(f"{name} must be one of {', '.join(map(str, m['choices']))}, got {value!r}")
    if m.get("fraction") and not 0 < value <= 1:
        raise UserError(f"{name} must be a fraction in (0, 1], got {value}")
    low = m.get("minimum")
    if low is not None and not isinstance(value, bool) and (value <= low if m["above"] else value < low):
        raise UserError(f"{name} must be {'>' if m['above'] else '>='} {low:g}, got {value}")
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


