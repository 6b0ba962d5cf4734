"""Every flag of every CLI gets a wrong type, an out-of-range value and an empty value.

The tables below are checked against the parsers, so a new flag without a test fails here.
Each bad value must end in exactly one line on stderr and exit code 2, before any work.
"""

from __future__ import annotations

import argparse

import pytest

from tests.conftest import run_main
from textsearch import cli
from textsearch import report as report_cli
from textsearch import train as train_cli
from textsearch import tune as tune_cli

NUMERIC = {cli.positive_int, cli.nonnegative_int, cli.positive_float, cli.nonnegative_float}


def bad_values(action: argparse.Action, semantic: dict[str, str]) -> list[str]:
    """Three bad spellings of one flag: wrong type, out of range, empty."""
    flag = action.option_strings[0]
    if isinstance(action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction)):
        return [f"{flag}=abc", f"{flag}=-7", f"{flag}="]
    if action.type is cli.folder_path:  # wrong type: a URI; out of range: unwritable
        values = ["s3://bucket/runs", semantic[action.dest], ""]
    elif action.type in NUMERIC:
        values = ["abc", "-7", ""]
    elif action.type is cli.fraction:
        values = ["abc", "7", ""]
    elif action.choices:
        values = ["abc", "-7", ""]
    else:  # free text: its wrong value is a semantic one
        values = [semantic[action.dest], semantic[action.dest], ""]
    return [f"{flag}={v}" for v in values]


def cases(parser: argparse.ArgumentParser, semantic: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        kinds = ("wrong-type", "out-of-range", "empty")
        for kind, arg in zip(kinds, bad_values(action, semantic)):
            out.append((f"{action.dest}-{kind}", arg))
    return out


TRAIN_SEMANTIC = {"runs_dir": "/proc/1/forbidden/runs", "name": "../escape"}
TUNE_SEMANTIC = {"space": "no_such_space", "name": "a/b", "results_dir": "/proc/1/forbidden",
                 "address": "nonsense", "set": "no-equals-sign", "objectives": "bogus:max",
                 "warm_start": "/nonexistent/search"}

TRAIN_CASES = cases(train_cli.build_parser(), TRAIN_SEMANTIC)
TUNE_CASES = cases(tune_cli.build_parser(), TUNE_SEMANTIC)


@pytest.mark.parametrize("arg", [a for _, a in TRAIN_CASES], ids=[i for i, _ in TRAIN_CASES])
def test_train_flag(arg, tmp_path, capsys):
    argv = [arg] if arg.startswith("--runs_dir") else [arg, "--runs_dir", str(tmp_path / "r")]
    code, err = run_main(train_cli.main, argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("arg", [a for _, a in TUNE_CASES], ids=[i for i, _ in TUNE_CASES])
def test_tune_flag(arg, tmp_path, capsys):
    argv = [arg]
    if not arg.startswith("--space"):
        argv += ["--space", "smoke"]
    if not arg.startswith("--results_dir"):
        argv += ["--results_dir", str(tmp_path / "r")]
    if arg.startswith("--set"):
        argv += ["--debug"]
    if arg.startswith("--resume"):
        argv += ["--name", "nothing-here"]
    code, err = run_main(tune_cli.main, argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.json"))


@pytest.mark.parametrize("argv", [[""], ["/no/such/search"], ["--bogus"], []])
def test_report_arguments(argv, capsys):
    code, err = run_main(report_cli.main, argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_every_flag_is_covered():
    for parser, cases_ in ((train_cli.build_parser(), TRAIN_CASES), (tune_cli.build_parser(), TUNE_CASES)):
        flags = {a.dest for a in parser._actions if a.option_strings and a.dest != "help"}
        covered = {i.rsplit("-", 2)[0] if i.endswith(("wrong-type", "out-of-range")) else i.rsplit("-", 1)[0]
                   for i, _ in cases_}
        assert flags <= covered


HEAVY = ("torch", "pytorch_lightning", "ray", "optuna")


@pytest.mark.parametrize("code", [
    "from textsearch.tune import main; main(['--help'])",
    "from textsearch.tune import main; main(['--list'])",
    "from textsearch.tune import main; main(['--space', 'smoke', '--num_samples', '0'])",
    "from textsearch.train import main; main(['--help'])",
    "from textsearch.train import main; main(['--max_epochs', '0'])",
    "import textsearch.report",
])
def test_help_list_and_bad_input_import_no_framework(code):
    """--help, --list and bad input answer at once: torch, Lightning, Ray and Optuna stay unloaded."""
    import subprocess
    import sys

    from tests.conftest import REPO

    probe = (f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                         timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
