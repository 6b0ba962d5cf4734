"""Every flag of every CLI gets a wrong type, an out-of-range value and an empty value.

The tables below are checked against the parsers, so a new flag without a test fails here.
Each bad value must end in exactly one line on stderr and exit code 2, before any work.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tests.conftest import run_main
from textsearch import cli
from textsearch import dashboard as dashboard_cli
from textsearch import predict as predict_cli
from textsearch import report as report_cli
from textsearch import retrain as retrain_cli
from textsearch import train as train_cli
from textsearch import tune as tune_cli
from textsearch.data import emnist_lines as lines_cli

NUMERIC = {cli.positive_int, cli.nonnegative_int, cli.positive_float, cli.nonnegative_float,
           cli.port}


BOOLEAN = (argparse.BooleanOptionalAction, argparse._StoreTrueAction)

# A boolean flag takes no value, so its "out of range" case is a misuse: the flag beside one
# it cannot go with, refused with a line that names both.  Flags that only hide output have
# no such combination.
MISUSE = {
    "train": {"batchnorm": ["--model_class", "MLP"], "balance": ["--data_class", "MNIST"]},
    "tune": {"debug": ["--address", "auto"], "resume": ["--warm_start", "/tmp"],
             "list": ["--resume"], "no_report": ["--debug"], "verbose": ["--debug"],
             "no_first_trial": ["--debug"]},
}
NO_MISUSE = {"no_progress_bar", "no_progress"}  # output switches: every combination is valid


# Just past each numeric type's lower bound: a number of the right kind that the range
# refuses (its message names the bound; "abc" is refused for its type instead)
BELOW = {cli.positive_int: "0", cli.nonnegative_int: "-1", cli.positive_float: "0",
         cli.nonnegative_float: "-0.5", cli.fraction: "0", cli.port: "0"}

# Every flag with an upper bound, written out with a value just past it: refused with one
# line like any other bad value, before any work (checked while parsing or right after)
ABOVE = {
    "train": {"val_fraction": "1.5", "data_fraction": "1.01", "dropout": "1",
              "max_overlap": "1", "min_overlap": "1", "gpus": "1"},
    "tune": {"data_fraction": "1.5", "gpus_per_trial": "1"},  # no GPU here: 1 is too many
    "retrain": {"data_fraction": "2", "gpus": "1"},
    "dashboard": {"port": "70000"},
    "emnist_lines": {"max_overlap": "1.5", "min_overlap": "0.9"},  # 0.9: above max's 0.33
}


def below(action: argparse.Action) -> str:
    if action.type in BELOW:
        return BELOW[action.type]
    if action.type.__name__.startswith("a number in [0,"):  # cli.number_below
        return "-0.5"
    minimum = int(action.type.__name__.removeprefix("an integer >= "))  # cli.int_at_least
    return str(minimum - 1)


def bad_values(command: str, action: argparse.Action, semantic: dict) -> dict[str, list[str]]:
    """The bad uses of one flag (argv pieces), by kind: a wrong type, values out of range
    (below its lower bound, above its upper one) or a misuse, an empty value."""
    flag = action.option_strings[0]
    if isinstance(action, BOOLEAN):
        other = MISUSE.get(command, {}).get(action.dest)
        misuse = [flag, *other] if other else [f"{flag}=-7"]
        return {"wrong-type": [f"{flag}=abc"], "misuse": misuse, "empty": [f"{flag}="]}
    if action.type is cli.folder_path:  # wrong type: a URI; out of range: unwritable
        values = {"wrong-type": "s3://bucket/runs", "unusable": semantic[action.dest][1]}
    elif action.type in NUMERIC or action.type is cli.fraction or \
            getattr(action.type, "__name__", "").startswith(("an integer >=", "a number in [0,")):
        values = {"wrong-type": "abc", "below": below(action)}
    elif action.choices:
        values = {"wrong-type": "abc", "unknown": f"{action.choices[0]}x"}
    else:  # free text: a malformed value, and a well-formed one that names nothing real
        malformed, unknown = semantic[action.dest]
        values = {"wrong-type": malformed, "unknown": unknown}
    if action.dest in ABOVE.get(command, {}):
        values["above"] = ABOVE[command][action.dest]
    values["empty"] = ""
    return {kind: [f"{flag}={v}"] for kind, v in values.items()}


def cases(command: str, parser: argparse.ArgumentParser, semantic: dict) -> list:
    out = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        for kind, argv in bad_values(command, action, semantic).items():
            out.append(pytest.param(argv, kind, id=f"{action.dest}-{kind}"))
    return out


# free-text flags: (malformed, well-formed but naming nothing that exists or fits)
TRAIN_SEMANTIC = {"runs_dir": (None, "/proc/1/forbidden/runs"), "name": ("../escape", "a/b")}
TUNE_SEMANTIC = {"space": ("no such space!", "no_such_space"), "name": ("a/b", ".."),
                 "results_dir": (None, "/proc/1/forbidden"),
                 "address": ("nonsense", "host:notaport"), "set": ("no-equals-sign", "=3"),
                 "objectives": ("val_acc:up", "bogus:max"),
                 "warm_start": ("/nonexistent/search", "/proc/1")}

TRAIN_CASES = cases("train", train_cli.build_parser(), TRAIN_SEMANTIC)
TUNE_CASES = cases("tune", tune_cli.build_parser(), TUNE_SEMANTIC)
RETRAIN_SEMANTIC = {"trial": ("no such trial", "9999")}
RETRAIN_CASES = cases("retrain", retrain_cli.build_parser(), RETRAIN_SEMANTIC)
PREDICT_CASES = cases("predict", predict_cli.build_parser(), {})
DASHBOARD_CASES = cases("dashboard", dashboard_cli.build_parser(), {})


def given(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(f"{flag}=") for a in argv)


@pytest.mark.parametrize("bad, kind", TRAIN_CASES)
def test_train_flag(bad, kind, tmp_path, capsys):
    argv = bad if given(bad, "--runs_dir") else [*bad, "--runs_dir", str(tmp_path / "r")]
    code, err = run_main(train_cli.main, argv, capsys)
    assert code == 2, err
    assert_one_line_naming(err, bad, kind)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("bad, kind", TUNE_CASES)
def test_tune_flag(bad, kind, tmp_path, capsys):
    argv = list(bad)
    if not given(bad, "--space"):
        argv += ["--space", "smoke"]
    if not given(bad, "--results_dir"):
        argv += ["--results_dir", str(tmp_path / "r")]
    if given(bad, "--set"):
        argv += ["--debug"]
    if given(bad, "--resume"):
        argv += ["--name", "nothing-here"]
    code, err = run_main(tune_cli.main, argv, capsys)
    assert code == 2, err
    assert_one_line_naming(err, bad, kind)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.json"))


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory, data_root) -> Path:
    """A search folder for retrain's flags to be refused against (made by hand: no search
    needs to run for a flag to be checked)."""
    import json as _json

    from textsearch.study import create_study, make_sampler

    folder = tmp_path_factory.mktemp("flags") / "s"
    study, _ = create_study(folder, "s", ["maximize"], make_sampler("tpe", 0, 2))
    (folder / "search.json").write_text(_json.dumps({
        "space": "smoke", "space_source": "smoke", "num_samples": 1, "max_epochs": 1,
        "grace_period": 1, "reduction_factor": 2, "metric": "val_acc", "mode": "max"}))
    return folder


@pytest.mark.parametrize("bad, kind", RETRAIN_CASES)
def test_retrain_flag(bad, kind, finished_search, capsys):
    code, err = run_main(retrain_cli.main, [str(finished_search), *bad], capsys)
    assert code == 2, err
    assert_one_line_naming(err, bad, kind)
    assert not (finished_search / "retrain").exists()


@pytest.mark.parametrize("bad, kind", PREDICT_CASES)
def test_predict_flag(bad, kind, tmp_path, capsys):
    code, err = run_main(predict_cli.main, [str(tmp_path / "model.pt"), "a.png", *bad], capsys)
    assert code == 2, err
    assert_one_line_naming(err, bad, kind)


@pytest.mark.parametrize("bad, kind", DASHBOARD_CASES)
def test_dashboard_flag(bad, kind, tmp_path, capsys):
    code, err = run_main(dashboard_cli.main, [str(tmp_path), *bad], capsys)
    assert code == 2, err
    assert_one_line_naming(err, bad, kind)


@pytest.mark.parametrize("module", ["emnist", "mnist", "emnist_lines"])
@pytest.mark.parametrize("value", ["abc", "-7", ""])
def test_data_command_flag(module, value, capsys):
    """``python -m textsearch.data.NAME --batch_size BAD``: one line naming it, exit 2."""
    import importlib

    mod = importlib.import_module(f"textsearch.data.{module}")
    code, err = run_main(mod.main, [f"--batch_size={value}"], capsys)
    assert code == 2, err
    assert err.startswith(f"textsearch.data.{module}: error:")
    assert_one_line_naming(err, [f"--batch_size={value}"])


LINES_DATA_CASES = cases("emnist_lines", lines_cli.build_parser(), {})


@pytest.mark.parametrize("bad, kind", LINES_DATA_CASES)
def test_emnist_lines_command_flag(bad, kind, capsys):
    """Every flag of ``python -m textsearch.data.emnist_lines`` (the generation options are
    ``textsearch.train``'s own): one line naming it, exit 2, before any line is drawn."""
    code, err = run_main(lines_cli.main, bad, capsys)
    assert code == 2, err
    assert err.startswith("textsearch.data.emnist_lines: error:")
    assert_one_line_naming(err, bad, kind)


def test_data_command_runs_without_a_warning(data_root):
    """A normal run of ``python -m textsearch.data.emnist`` prints its summary, no RuntimeWarning."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m",
                           "textsearch.data.emnist"], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO),
                                            "TEXTSEARCH_DATA_DIR": str(data_root)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RuntimeWarning" not in done.stderr and "found in sys.modules" not in done.stderr
    assert "batch x: (128, 1, 28, 28)" in done.stdout


@pytest.mark.parametrize("argv", [[""], ["/no/such/search"], ["--bogus"], []])
def test_report_arguments(argv, capsys):
    code, err = run_main(report_cli.main, argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err


# The flags each command is expected to have, written out: a flag removed or renamed, or one
# added without a bad-input case, fails test_every_flag_is_covered.
EXPECTED_FLAGS = {
    "train": {"balance", "batch_size", "batchnorm", "block", "conv_dim", "data_class",
              "data_fraction", "downsample", "downsample_every", "dropout", "fast_dev_run", "fc1",
              "fc2", "fc_dim", "gpus", "limit_train_batches", "limit_val_batches", "lr",
              "max_epochs", "model_class", "name", "no_progress_bar", "num_blocks", "num_workers",
              "one_cycle_max_lr", "overfit_batches", "precision", "runs_dir", "seed",
              "val_fraction", "weight_decay", "window_width", "window_stride", "max_length",
              "min_overlap", "max_overlap", "num_train_lines", "num_val_lines",
              "num_test_lines", "lines_seed"},
    "tune": {"address", "cpus_per_trial", "data_fraction", "debug", "fast_dev_run",
             "gpus_per_trial", "grace_period", "limit_train_batches", "list", "max_concurrent",
             "max_epochs", "max_failures", "name", "no_first_trial", "no_report", "num_samples",
             "objectives",
             "overfit_batches", "precision", "reduction_factor", "results_dir", "resume",
             "scheduler", "searcher", "seed", "set", "space", "startup_trials", "time_budget_s",
             "warm_start", "verbose", "live_interval_s"},
    "retrain": {"data_fraction", "gpus", "lr", "max_epochs", "no_progress", "one_cycle_max_lr",
                "seed", "trial", "weight_decay"},
    "predict": {"top"},
    "emnist_lines": {"max_length", "min_overlap", "max_overlap", "num_train_lines",
                     "num_val_lines", "num_test_lines", "lines_seed", "batch_size"},
    "dashboard": {"port"},
}


def option_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.option_strings and a.dest != "help"}


@pytest.mark.parametrize("command, parser, table", [
    ("train", train_cli.build_parser(), TRAIN_CASES), ("tune", tune_cli.build_parser(), TUNE_CASES),
    ("retrain", retrain_cli.build_parser(), RETRAIN_CASES),
    ("predict", predict_cli.build_parser(), PREDICT_CASES),
    ("dashboard", dashboard_cli.build_parser(), DASHBOARD_CASES),
    ("emnist_lines", lines_cli.build_parser(), LINES_DATA_CASES)])
def test_every_flag_is_covered(command, parser, table):
    assert option_flags(parser) == EXPECTED_FLAGS[command]
    assert set(ABOVE.get(command, {})) <= EXPECTED_FLAGS[command]  # no bound of a flag gone
    for flag in EXPECTED_FLAGS[command]:
        kinds = {case.id.removeprefix(f"{flag}-") for case in table
                 if case.id.startswith(f"{flag}-")}
        assert "wrong-type" in kinds and "empty" in kinds and len(kinds) >= 3, (flag, kinds)
    booleans = {a.dest for a in parser._actions if isinstance(a, BOOLEAN)}
    # every boolean flag has its misuse case, or is listed as one that has none
    assert booleans == set(MISUSE.get(command, {})) | (booleans & NO_MISUSE), (command, booleans)


def assert_one_line_naming(err: str, bad: list[str], kind: str = "") -> None:
    """One line on stderr, naming the flag of ``bad`` and its bad value (or that it is empty);
    for a misuse (a flag beside another), naming both flags.  A number out of range is
    refused for its range, not as a value of the wrong type."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    if kind in ("below", "above"):
        assert "expected" not in lines[0] and "invalid" not in lines[0], (bad, lines[0])
    flag, _, value = bad[0].partition("=")
    for name in [flag, *(a for a in bad[1:] if a.startswith("--"))]:
        spellings = (name, name.replace("-", "_").replace("__", "--"), name.replace("_", "-"))
        assert any(n in lines[0] for n in spellings), (bad, lines[0])
    if len(bad) > 1:
        return
    if value:  # the value, or the part of it that is wrong (bogus of bogus:max)
        parts = [value, *(t for t in re.split(r"[:,=/]", value) if len(t) > 1)]
        assert any(t in lines[0] for t in parts), (bad, lines[0])
    else:
        assert any(w in lines[0] for w in ("empty", "''", "expected", "got ''")), (bad, lines[0])


HEAVY = ("torch", "pytorch_lightning", "ray", "optuna")


@pytest.mark.parametrize("code", [
    "from textsearch.tune import main; main(['--help'])",
    "from textsearch.tune import main; main(['--list'])",
    "from textsearch.tune import main; main(['--space', 'smoke', '--num_samples', '0'])",
    "from textsearch.train import main; main(['--help'])",
    "from textsearch.train import main; main(['--max_epochs', '0'])",
])
def test_help_list_and_bad_input_import_no_framework(code):
    """--help, --list and bad input answer at once: torch, Lightning, Ray and Optuna stay unloaded."""
    assert modules_loaded(code, HEAVY) == "[]"


@pytest.mark.parametrize("module", ["textsearch.summary", "textsearch.report", "textsearch.plots",
                                    "textsearch.record"])
def test_reading_a_search_loads_neither_torch_nor_ray(module):
    """The modules that read a search folder (Optuna and pandas are theirs to load)."""
    assert modules_loaded(f"import {module}", ("torch", "pytorch_lightning", "ray")) == "[]"


def modules_loaded(code: str, heavy: tuple[str, ...]) -> str:
    """Which of ``heavy`` a fresh interpreter has loaded after running ``code``."""
    import subprocess
    import sys

    from tests.conftest import REPO

    probe = (f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
             f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                         timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0 and out.stdout.strip(), out.stdout + out.stderr
    return out.stdout.strip().splitlines()[-1]
