"""Finding, loading and checking search spaces.

A search space is a Python file with:

- a module docstring whose first line describes the search (shown by ``--list``);
- ``def space(trial) -> dict``: an Optuna define-by-run function.  It calls
  ``trial.suggest_*`` for what is searched and returns a dict of further fixed values
  (or ``None``).  Names must be :class:`textsearch.training.TrainConfig` fields;
- ``DEFAULTS``: the search's defaults (see :class:`SearchDefaults`).

Where ``--space NAME`` looks: ``$TEXTSEARCH_SPACES_DIR/NAME.py`` (the user's own spaces, if
that variable is set), then the built-in spaces shipped with textsearch (the repository's
``search_spaces/``).  ``--space path/to/file.py`` loads any file.

Space files are user code: they are executed when loaded, only from the path given.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from textsearch.config import TrainConfig, check_option, coerce
from textsearch.errors import UserError
from textsearch.metrics import parse_objectives
from textsearch.paths import builtin_spaces_dir

if TYPE_CHECKING:  # Optuna is imported where a space is sampled, not to list or resolve one
    import optuna

SPACES_DIR_ENV = "TEXTSEARCH_SPACES_DIR"


@dataclass
class SearchDefaults:
    """A search's defaults; every one can be overridden on the command line.

    fixed: TrainConfig values shared by all trials (dataset, model, ...).
    metric/mode: what the search optimises (a reported metric, 'max' or 'min').
    max_epochs: epochs of a trial that is never stopped. num_samples: trials.
    grace_period: epochs every trial gets before ASHA may stop it; reduction_factor: ASHA
    keeps the best 1/reduction_factor at each rung (None: both chosen from max_epochs by
    :func:`textsearch.budget.asha_from_budget`).
    data_fraction: share of the training split each trial trains on.
    max_concurrent: trials at once (0: as many as resources allow).
    objectives: 2 or 3 reported metrics searched together, e.g. ``{"val_acc": "max",
    "train_samples_per_s": "max"}`` (Optuna then proposes trials for the Pareto front, ASHA
    stops trials on the first one); None: the one objective ``metric``/``mode``.
    first_trial: a known-good config (searched parameters and their values), run as trial 0
    of a fresh search so no search starts blind; checked against the space when it loads.
    """

    fixed: dict[str, Any] = field(default_factory=dict)
    metric: str = "val_acc"
    mode: str = "max"
    max_epochs: int = 10
    num_samples: int = 20
    grace_period: int | None = None
    reduction_factor: float | None = None
    data_fraction: float = 1.0
    max_concurrent: int = 0
    objectives: dict[str, str] | None = None
    first_trial: dict[str, Any] | None = None

    def validate(self, where: str) -> None:
        if self.objectives is not None:
            pairs = parse_objectives(self.objectives, f"{where}: DEFAULTS")
            self.metric, self.mode = pairs[0]
        if self.mode not in ("max", "min"):
            raise UserError(f"{where}: DEFAULTS mode must be 'max' or 'min', got {self.mode!r}")
        for name in ("max_epochs", "num_samples", "grace_period"):
            value = getattr(self, name)
            if (value is not None or name != "grace_period") and (
                    not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise UserError(f"{where}: DEFAULTS {name} must be a positive integer")
        rf = self.reduction_factor
        if rf is not None and (not isinstance(rf, (int, float)) or isinstance(rf, bool) or rf <= 1):
            raise UserError(f"{where}: DEFAULTS reduction_factor must be > 1")
        if self.first_trial is not None and (
                not isinstance(self.first_trial, dict) or not self.first_trial):
            raise UserError(f"{where}: DEFAULTS first_trial must be a dict of parameter values")
        TrainConfig.from_dict(self.fixed)


@dataclass
class SearchSpace:
    name: str
    path: Path
    description: str
    space: Callable[[Any], dict[str, Any] | None]
    defaults: SearchDefaults

    def defaults_objectives(self) -> list[tuple[str, str]]:
        """The space's objectives: ``DEFAULTS["objectives"]``, else its metric and mode."""
        d = self.defaults
        if d.objectives:
            return parse_objectives(d.objectives, str(self.path))
        return [(d.metric, d.mode)]


def space_dirs() -> list[Path]:
    """Folders searched for ``--space NAME``, in order: the user's, then the built-in one."""
    user = os.environ.get(SPACES_DIR_ENV)
    return [*([Path(user).expanduser()] if user else []), builtin_spaces_dir()]


def known_spaces() -> dict[str, Path]:
    """Space names and their files (a user space hides a built-in one of the same name)."""
    found: dict[str, Path] = {}
    for folder in reversed(space_dirs()):
        for p in sorted(folder.glob("*.py")):
            if not p.stem.startswith("_"):
                found[p.stem] = p
    return dict(sorted(found.items()))


def describe(path: Path) -> str:
    """The first docstring line of a space file, read without executing it."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except SyntaxError:
        return "(cannot be parsed)"
    return doc.strip().splitlines()[0] if doc else ""


def resolve(name_or_path: str) -> Path:
    """``NAME`` -> ``search_spaces/NAME.py``; a path ending in ``.py`` is taken as it is."""
    if not name_or_path.strip():
        raise UserError("--space must not be empty")
    if name_or_path.endswith(".py") or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UserError(f"--space: search space file {path} does not exist")
        return path.resolve()
    spaces = known_spaces()
    if name_or_path not in spaces:
        raise UserError(f"--space: unknown search space {name_or_path!r}; known: {', '.join(spaces)}")
    return spaces[name_or_path]


def _user_code_error(path: Path, err: BaseException) -> UserError:
    """'file:line: reason' for the innermost frame inside the space file."""
    line = getattr(err, "lineno", None) if isinstance(err, SyntaxError) else None
    for frame in traceback.extract_tb(err.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    where = f"{path}:{line}" if line else str(path)
    reason = err.msg if isinstance(err, SyntaxError) else f"{type(err).__name__}: {err}"
    return UserError(f"search space {where}: {reason}")


def _import(path: Path) -> ModuleType:
    module_name = f"textsearch_space_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot load search space {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise _user_code_error(path, err) from None
    sys.modules[module_name] = module  # so Ray can pickle functions defined in it
    return module


def load(name_or_path: str) -> SearchSpace:
    """Import a space file and check it (its function runs once on a throwaway trial)."""
    path = resolve(name_or_path)
    module = _import(path)
    fn = getattr(module, "space", None)
    if not callable(fn):
        raise UserError(f"search space {path} defines no function space(trial)")
    raw = getattr(module, "DEFAULTS", {})
    if not isinstance(raw, dict):
        raise UserError(f"search space {path}: DEFAULTS must be a dict")
    known = {f.name for f in dataclasses.fields(SearchDefaults)}
    unknown = set(raw) - known
    if unknown:
        raise UserError(f"search space {path}: unknown DEFAULTS keys {sorted(unknown)}; "
                        f"known: {', '.join(sorted(known))}")
    try:
        defaults = SearchDefaults(**raw)
        defaults.validate(str(path))
    except UserError as err:
        raise UserError(f"search space {path}: {err}") from None
    s = SearchSpace(path.stem, path, describe(path), fn, defaults)
    sample(s, seed=0)  # fail now, with file and line, rather than inside the search
    if defaults.first_trial:
        check_first_trial(s)
    return s


def check_first_trial(space: SearchSpace) -> None:
    """``DEFAULTS["first_trial"]`` must be a config the space can propose: each value inside
    the range the space gives it (conditional ranges included), each name one it searches."""
    first = space.defaults.first_trial or {}
    replay = AnsweringTrial(first, strict=True)
    where = f"search space {space.path}: DEFAULTS first_trial"
    try:
        ret = space.space(replay)
    except AnswerOutOfRange as err:
        raise UserError(f"{where}: {err}") from None
    except Exception as err:
        raise _user_code_error(space.path, err) from None
    unknown = sorted(set(first) - replay.asked)
    if unknown:
        raise UserError(f"{where}: {', '.join(unknown)} not searched by the space; it searches "
                        f"{', '.join(sorted(replay.asked))}")
    try:
        TrainConfig.from_dict({**space.defaults.fixed, **first, **(ret or {})})
    except UserError as err:
        raise UserError(f"{where}: {err}") from None


def sample(space: SearchSpace, seed: int, pinned: dict[str, str] | None = None
           ) -> tuple[dict[str, Any], dict[str, optuna.distributions.BaseDistribution]]:
    """One sample of the space under ``seed`` (as the search's first trial would draw it).

    ``pinned``: ``{name: text}`` values that replace what the space would suggest, each
    checked against the range or choices the space gives that parameter *in this sample*
    (:class:`PinOutOfRange` if outside).  Returns the parameters (searched, pinned and
    returned constants) and the distributions of the searched and pinned ones.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    trial = AnsweringTrial(pinned or {}, study.ask(), strict=True, convert=_typed_for_distribution)
    try:
        ret = space.space(trial)
    except AnswerOutOfRange as err:
        raise PinOutOfRange(_out_of_range_text(err)) from None
    except PinError:
        raise
    except Exception as err:
        raise _user_code_error(space.path, err) from None
    if ret is not None and not isinstance(ret, dict):
        raise UserError(f"search space {space.path}: space() must return a dict or None, "
                        f"got {type(ret).__name__}")
    params = {**trial.params, **(ret or {})}
    config = {**space.defaults.fixed, **params}
    try:
        TrainConfig.from_dict(config)
    except UserError as err:
        raise UserError(f"search space {space.path}: {err}") from None
    return params, dict(trial.distributions)


class PinError(UserError):
    """A ``--set`` value that the space cannot take."""


class PinOutOfRange(PinError):
    """A ``--set`` value outside the range the space gives it in one sample."""


class AnswerOutOfRange(ValueError):
    """A given value that the distribution a space asks for it with cannot take."""

    def __init__(self, name: str, value: Any,
                 distribution: optuna.distributions.BaseDistribution) -> None:
        super().__init__(f"{name}: {value!r} is not in {distribution}")
        self.name, self.value, self.distribution = name, value, distribution


def in_distribution(value: Any, distribution: optuna.distributions.BaseDistribution) -> bool:
    """Whether ``distribution`` can take ``value``: one of its choices (a bool only as a
    bool), or a number within its bounds and on its step (a whole number for an int one)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    d = distribution
    if isinstance(d, CategoricalDistribution):
        return any(c == value and isinstance(c, bool) == isinstance(value, bool) for c in d.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not d.low <= value <= d.high:
        return False
    if isinstance(d, IntDistribution):
        return float(value).is_integer() and (int(value) - d.low) % d.step == 0
    if isinstance(d, FloatDistribution):
        if d.step is None:
            return True
        k = (value - d.low) / d.step
        return abs(k - round(k)) < 1e-8  # Optuna's own tolerance for a stepped float
    return False


class AnsweringTrial:
    """Stands in for an Optuna trial, answering ``suggest_*`` from values given beforehand.

    A space function asks for each parameter with the distribution that follows from the
    answers before it (a conditional range), so each given value is checked against exactly
    that distribution (:func:`in_distribution`):

    - inside it, the value is the answer, recorded in ``params`` and ``distributions``;
    - outside it, ``strict`` raises :class:`AnswerOutOfRange`; otherwise the value is still
      the answer (the space goes on with it) and its name goes to ``dropped``.

    A parameter without a given value is drawn by ``trial`` (an Optuna trial, and recorded
    like a given one) or, without a trial, answered with the low end or the first choice
    and left unrecorded.  ``asked``: every parameter the space asked for.
    ``convert(name, value, distribution)``: turns a given value into the distribution's
    type before the check (the text of ``--set``); it may raise.

    ``--set`` pins: the pins are the given values, ``trial`` draws the rest, ``strict``.
    Warm start: an old trial's values, no trial, not strict.
    """

    def __init__(self, answers: dict[str, Any], trial: optuna.Trial | None = None, *,
                 strict: bool = False,
                 convert: Callable[[str, Any, Any], Any] | None = None) -> None:
        self._answers, self._trial, self._strict, self._convert = answers, trial, strict, convert
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, optuna.distributions.BaseDistribution] = {}
        self.dropped: list[str] = []
        self.asked: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        trial = self.__dict__.get("_trial")
        if trial is None:
            raise AttributeError(f"{type(self).__name__} without a trial offers suggest_* only, "
                                 f"not {name}")
        return getattr(trial, name)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        from optuna.distributions import IntDistribution

        return self._answer(name, IntDistribution(low, high, step=step, log=log),
                            lambda t: t.suggest_int(name, low, high, step=step, log=log))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        from optuna.distributions import FloatDistribution

        return self._answer(name, FloatDistribution(low, high, step=step, log=log),
                            lambda t: t.suggest_float(name, low, high, step=step, log=log))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        from optuna.distributions import CategoricalDistribution

        return self._answer(name, CategoricalDistribution(list(choices)),
                            lambda t: t.suggest_categorical(name, choices))

    def _answer(self, name: str, dist: optuna.distributions.BaseDistribution,
                draw: Callable[[optuna.Trial], Any]) -> Any:
        self.asked.add(name)
        if name in self._answers:
            value = self._answers[name]
            if self._convert is not None:
                value = self._convert(name, value, dist)
            if not in_distribution(value, dist):
                if self._strict:
                    raise AnswerOutOfRange(name, value, dist)
                self.dropped.append(name)
                return value
        elif self._trial is not None:
            value = draw(self._trial)
        else:
            return _first(dist)
        self.params[name], self.distributions[name] = value, dist
        return value


PIN_TRIES = 64  # samples tried for one that agrees with every pin


def sample_pinned(space: SearchSpace, seed: int, pairs: list[str]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The debug run's sample: ``--set key=value`` pins applied and checked.

    Each pin is checked against the range the space gives it once the other pins are in
    place (``num_blocks=6`` narrows ``downsample_every``).  Unpinned parameters are drawn
    with ``seed``; where a draw makes a pin impossible (say an unpinned ``num_blocks``
    that rules out the pinned ``downsample_every``), the next seed is tried.  Pins the
    space does not search are plain config values, typed by :class:`TrainConfig`.
    Returns (params, other pinned config values).
    """
    pins: dict[str, str] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {pair!r}")
        pins[key] = text.strip()
    types = TrainConfig.field_types()
    first_error: PinOutOfRange | None = None
    samples: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for s in range(seed, seed + PIN_TRIES):
        try:
            samples.append(sample(space, s, pinned=pins))
        except PinOutOfRange as err:
            first_error = first_error or err
    if not samples:
        raise first_error  # type: ignore[misc]
    searched = set().union(*(set(d) for _, d in samples))
    # prefer the first sample that uses every pinned parameter the space searches
    wanted = {k for k in pins if k in searched}
    params, drawn = next(((p, d) for p, d in samples if wanted <= set(d)), samples[0])
    fixed: dict[str, Any] = {}
    for key, text in pins.items():
        if key in drawn:
            continue
        if key not in types:
            raise UserError(f"--set: unknown parameter {key!r}; the space searches "
                            f"{', '.join(sorted(searched)) or 'nothing'}; other config keys: "
                            f"{', '.join(types)}")
        value = check_option(key, coerce(key, text, types[key]))
        if key in params:  # a value the space returns rather than draws: the pin wins
            params[key] = value
        else:
            fixed[key] = value
    return params, fixed


def _first(dist: optuna.distributions.BaseDistribution) -> Any:
    """The answer to a parameter nothing answers: the first choice, or the low end."""
    from optuna.distributions import CategoricalDistribution

    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low


def _typed_for_distribution(key: str, text: str, dist) -> Any:
    """A ``--set`` text as the distribution's type: the choice it names, or a number."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        for choice in dist.choices:
            if str(choice) == text or (isinstance(choice, bool) and text.lower() == str(choice).lower()):
                return choice
            if isinstance(choice, (int, float)) and not isinstance(choice, bool):
                try:
                    if float(text) == choice:
                        return choice
                except ValueError:
                    pass
        raise PinOutOfRange(f"--set {key}: {text!r} is not one of {list(dist.choices)}")
    try:
        return int(text) if isinstance(dist, IntDistribution) else float(text)
    except ValueError:
        kind = "an integer" if isinstance(dist, IntDistribution) else "a number"
        raise PinError(f"--set {key}: expected {kind}, got {text!r}") from None


def _out_of_range_text(err: AnswerOutOfRange) -> str:
    """The ``--set`` error for a pin outside what the space gives it in one sample."""
    from optuna.distributions import CategoricalDistribution

    dist = err.distribution
    if isinstance(dist, CategoricalDistribution):
        return f"--set {err.name}: {err.value!r} is not one of {list(dist.choices)}"
    step = f" in steps of {dist.step}" if getattr(dist, "step", None) not in (None, 1) else ""
    return (f"--set {err.name}: {err.value} is outside the range [{dist.low}, {dist.high}]"
            f"{step} that the space gives it with the other values pinned")
