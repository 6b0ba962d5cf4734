"""Finding, loading and checking search spaces.

A search space is a Python file in ``search_spaces/`` (or anywhere, given by path) with:

- a module docstring whose first line describes the search (shown by ``--list``);
- ``def space(trial) -> dict``: an Optuna define-by-run function.  It calls
  ``trial.suggest_*`` for what is searched and returns a dict of further fixed values
  (or ``None``).  Names must be :class:`textsearch.training.TrainConfig` fields;
- ``DEFAULTS``: the search's defaults (see :class:`SearchDefaults`).

Space files are user code: they are executed when loaded, only from the path given.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna

from textsearch.errors import UserError
from textsearch.paths import REPO_DIR
from textsearch.training import TrainConfig

SPACES_DIR = REPO_DIR / "search_spaces"


@dataclass
class SearchDefaults:
    """A search's defaults; every one can be overridden on the command line.

    fixed: TrainConfig values shared by all trials (dataset, model, ...).
    metric/mode: what the search optimises (a reported metric, 'max' or 'min').
    max_epochs: epochs of a trial that is never stopped. num_samples: trials.
    grace_period: epochs every trial gets before ASHA may stop it.
    reduction_factor: ASHA keeps the best 1/reduction_factor at each rung.
    data_fraction: share of the training split each trial trains on.
    max_concurrent: trials at once (0: as many as resources allow).
    """

    fixed: dict[str, Any] = field(default_factory=dict)
    metric: str = "val_acc"
    mode: str = "max"
    max_epochs: int = 10
    num_samples: int = 20
    grace_period: int = 1
    reduction_factor: int = 3
    data_fraction: float = 1.0
    max_concurrent: int = 0

    def validate(self, where: str) -> None:
        if self.mode not in ("max", "min"):
            raise UserError(f"{where}: DEFAULTS mode must be 'max' or 'min', got {self.mode!r}")
        for name in ("max_epochs", "num_samples", "grace_period"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise UserError(f"{where}: DEFAULTS {name} must be a positive integer")
        if not isinstance(self.reduction_factor, (int, float)) or self.reduction_factor <= 1:
            raise UserError(f"{where}: DEFAULTS reduction_factor must be > 1")
        TrainConfig.from_dict(self.fixed)


@dataclass
class SearchSpace:
    name: str
    path: Path
    description: str
    space: Callable[[Any], dict[str, Any] | None]
    defaults: SearchDefaults


def known_spaces() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SPACES_DIR.glob("*.py")) if not p.stem.startswith("_")}


def describe(path: Path) -> str:
    """The first docstring line of a space file, read without executing it."""
    import ast

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
            raise UserError(f"search space file {path} does not exist")
        return path.resolve()
    spaces = known_spaces()
    if name_or_path not in spaces:
        raise UserError(f"unknown search space {name_or_path!r}; known: {', '.join(spaces)}")
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
    return s


def sample(space: SearchSpace, seed: int, pinned: dict[str, Any] | None = None
           ) -> tuple[dict[str, Any], dict[str, optuna.distributions.BaseDistribution]]:
    """The space's first sample under ``seed`` (as the search's first trial would draw it).

    ``pinned`` fixes parameters (values already typed).  Returns the parameters (searched
    and returned constants) and the distributions of the searched ones.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    if pinned:
        study.enqueue_trial(pinned, skip_if_exists=False)
    trial = study.ask()
    try:
        ret = space.space(trial)
    except Exception as err:
        raise _user_code_error(space.path, err) from None
    if ret is not None and not isinstance(ret, dict):
        raise UserError(f"search space {space.path}: space() must return a dict or None, "
                        f"got {type(ret).__name__}")
    params = {**trial.params, **(ret or {})}
    if pinned:
        params.update({k: v for k, v in pinned.items() if k not in trial.distributions})
    config = {**space.defaults.fixed, **params}
    try:
        TrainConfig.from_dict(config)
    except UserError as err:
        raise UserError(f"search space {space.path}: {err}") from None
    return params, dict(trial.distributions)


def parse_pins(pairs: list[str], space: SearchSpace) -> dict[str, Any]:
    """``key=value`` strings -> typed values, checked against the space's distributions."""
    _, dists = sample(space, seed=0)
    types = TrainConfig.field_types()
    pins: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {pair!r}")
        if key in dists:
            pins[key] = _typed_for_distribution(key, text, dists[key])
        elif key in types:
            from textsearch.training import coerce

            pins[key] = coerce(key, text, types[key])
        else:
            raise UserError(f"--set: unknown parameter {key!r}; the space searches "
                            f"{', '.join(dists) or 'nothing'}; other config keys: "
                            f"{', '.join(types)}")
    return pins


def _typed_for_distribution(key: str, text: str, dist) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        for choice in dist.choices:
            if str(choice) == text or (isinstance(choice, bool) and text.lower() == str(choice).lower()):
                return choice
        raise UserError(f"--set {key}: {text!r} is not one of {list(dist.choices)}")
    try:
        value = int(text) if isinstance(dist, IntDistribution) else float(text)
    except ValueError:
        kind = "an integer" if isinstance(dist, IntDistribution) else "a number"
        raise UserError(f"--set {key}: expected {kind}, got {text!r}") from None
    if isinstance(dist, (IntDistribution, FloatDistribution)) and not dist.low <= value <= dist.high:
        raise UserError(f"--set {key}: {value} is outside the space's range [{dist.low}, {dist.high}]")
    return value
