"""What a search asks of the machine: CPUs per trial, GPU shares, concurrency, Ray's token."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from textsearch.cluster import token_available, use_token_auth
from textsearch.record import SearchSettings
from textsearch.search import default_concurrency, default_gpus_per_trial, trial_resources

SPACES = Path(__file__).parent / "spaces"


def settings(**kw) -> SearchSettings:
    base = dict(space="x", space_source="x", name="s", results_dir="/tmp", num_samples=4,
                max_epochs=1, grace_period=1, reduction_factor=2, metric="val_acc", mode="max")
    return SearchSettings(**{**base, **kw})


def test_a_trial_asks_for_its_loop_threads_plus_its_loader_workers():
    ask = trial_resources(settings(cpus_per_trial=2, gpus_per_trial=0.25), total_cpus=16)
    assert ask({"num_workers": 0}) == {"cpu": 2, "gpu": 0.25}
    assert ask({"num_workers": 3}) == {"cpu": 5, "gpu": 0.25}
    assert ask({}) == {"cpu": 2, "gpu": 0.25}  # the space does not search workers
    # never more than the cluster has: a 16-worker trial on 4 CPUs asks for 4
    assert trial_resources(settings(), total_cpus=4)({"num_workers": 16})["cpu"] == 4
    fixed = trial_resources(settings(fixed={"num_workers": 2}), total_cpus=8)
    assert fixed({})["cpu"] == 3


@pytest.mark.parametrize("cpus, gpus, cpus_per_trial, gpus_per_trial, slots", [
    (2, 0, 1, 0.0, 2),  # this machine: two one-thread trials
    (16, 0, 4, 0.0, 4),
    (16, 1, 1, 0.25, 4),  # four quarter-GPU trials, though the CPUs would hold 16
    (16, 2, 1, 0.5, 4),
    (3, 1, 2, 0.25, 1),  # the CPUs are the limit
    (1, 0, 4, 0.0, 1),  # never fewer than one
])
def test_concurrency_is_what_the_cluster_holds(cpus, gpus, cpus_per_trial, gpus_per_trial, slots):
    s = settings(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    assert default_concurrency(s, cpus, gpus) == slots


def test_gpu_share_defaults_to_a_quarter_where_gpus_exist():
    assert default_gpus_per_trial(0) == 0.0
    assert default_gpus_per_trial(1) == 0.25
    assert default_gpus_per_trial(8) == 0.25


def test_ray_receives_each_trials_cpus(tmp_path, capsys):
    """The CPUs Ray really assigned to each trial (reported from inside it)."""
    from tests.test_tune import run_search_cli

    summary = run_search_cli(tmp_path, capsys, "workers.py", "w", "--gpus_per_trial", "0",
                             "--max_concurrent", "1", "--seed", "1")
    seen = {}
    for t in summary["trials"]:
        rows = list(csv.DictReader((tmp_path / "w" / t["path"] / "progress.csv").open()))
        seen[int(t["config"]["num_workers"])] = {float(r["ray_cpus"]) for r in rows}
    assert seen, summary
    for workers, cpus in seen.items():
        assert cpus == {1.0 + workers}


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        # delenv of an absent variable records nothing to undo, so what the code under test
        # sets would outlive the test: setenv first records "absent" as the value to restore
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_no_token_anywhere(no_token):
    assert not token_available()
    use_token_auth("10.0.0.1:6379")
    import os

    assert "RAY_AUTH_MODE" not in os.environ


@pytest.mark.parametrize("source", ["env", "path", "home"])
def test_token_is_found_where_ray_looks(source, no_token, monkeypatch):
    import os

    if source == "env":
        monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    elif source == "path":
        token = no_token / "elsewhere" / "token"
        token.parent.mkdir()
        token.write_text("secret")
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    else:
        home = no_token / "home" / ".ray"
        home.mkdir(parents=True)
        (home / "auth_token").write_text("secret")
    assert token_available()
    use_token_auth("10.0.0.1:6379")  # an explicit address: token mode, as 'auto' would
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_token_mode_is_left_alone_for_auto_and_client_addresses(no_token, monkeypatch):
    import os

    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    use_token_auth("auto")
    use_token_auth("ray://10.0.0.1:10001")
    assert "RAY_AUTH_MODE" not in os.environ
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user's own choice wins
    use_token_auth("10.0.0.1:6379")
    assert os.environ["RAY_AUTH_MODE"] == "disabled"
