"""A real two-node Ray cluster on this machine, started as the README tells a user to.

The head and a second node each bring one CPU and their own token-authenticated raylet;
``textsearch.tune --address host:port`` runs a search on it, is interrupted, and resumed.
Only the processes of the cluster this test started are stopped at the end.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

SPACES = Path(__file__).parent / "spaces"
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_cluster(temp_dir: Path) -> None:
    """Kill the processes of the cluster whose temp dir is ``temp_dir`` (and only those)."""
    procs = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if str(temp_dir) in " ".join(p.info["cmdline"] or []):
                procs.add(p)
                procs.update(p.children(recursive=True))
        except psutil.Error:
            continue
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(procs), timeout=10)


@pytest.fixture
def cluster(data_root):
    """(address, env for a client) of a head node and a second node, token auth on."""
    # a short path: Ray's unix sockets live under it
    temp_dir = Path(tempfile.mkdtemp(prefix="tsray-", dir="/tmp"))
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base["PYTHONPATH"] = str(REPO)
    # the nodes have no data root with EMNIST: trials must get their data from the driver
    base["TEXTSEARCH_DATA_DIR"] = str(temp_dir / "no-data-here")
    node_env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    try:
        head = subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", "1",
                               "--temp-dir", str(temp_dir / "ray"), "--include-dashboard=false",
                               "--disable-usage-stats"], env=node_env, capture_output=True,
                              text=True, timeout=120)
        assert head.returncode == 0, head.stderr[-2000:]
        address = f"127.0.0.1:{port}"
        # as a new user finds: a node without token mode is refused
        refused = subprocess.run([RAY, "start", "--address", address, "--num-cpus", "1",
                                  "--disable-usage-stats"], env=base, capture_output=True,
                                 text=True, timeout=120)
        assert refused.returncode != 0
        assert "Authentication token is missing" in refused.stdout + refused.stderr
        second_port = free_port()  # names the second node's raylet, for the node-death drill
        second = subprocess.run([RAY, "start", "--address", address, "--num-cpus", "1",
                                 "--node-manager-port", str(second_port),
                                 "--disable-usage-stats"], env=node_env, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 0, second.stderr[-2000:]
        # the driver: the token is readable here, RAY_AUTH_MODE is not set
        client = {**base, "RAY_AUTH_TOKEN_PATH": str(token), "TEXTSEARCH_DATA_DIR": str(data_root)}
        client["TEXTSEARCH_TEST_SECOND_NODE_PORT"] = str(second_port)
        yield address, client
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def tune(address: str, env: dict, results: Path, *args: str, **kw):
    cmd = [sys.executable, "-m", "textsearch.tune", "--address", address, "--results_dir",
           str(results), "--no_report", *args]
    return subprocess.Popen(cmd, env=env, cwd=REPO, **kw)


def reports(search: Path) -> dict[str, list[dict]]:
    out = {}
    for f in search.glob("trial_*/progress.csv"):
        out[f.parent.name] = list(csv.DictReader(f.open())) if f.stat().st_size else []
    return out


def test_search_on_two_nodes_is_interrupted_and_resumed(cluster, tmp_path):
    address, env = cluster
    log = (tmp_path / "first.log").open("w")
    proc = tune(address, env, tmp_path, "--space", str(SPACES / "retry.py"), "--name", "c",
                "--max_concurrent", "2", stdout=log, stderr=subprocess.STDOUT)
    search = tmp_path / "c"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        rows = reports(search)
        if sum(1 for r in rows.values() if len(r) == 5) >= 1 and len(rows) >= 3:
            break
        time.sleep(0.5)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=180) == 130, (tmp_path / "first.log").read_text()[-3000:]
    before = {t: len(r) for t, r in reports(search).items()}
    assert min(before.values()) < 5  # a trial was cut short

    done = tune(address, env, tmp_path, "--name", "c", "--resume", stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err[-3000:]
    summary = json.loads((search / "summary.json").read_text())
    assert summary["status_counts"] == {"completed": 3}
    ids = [t["trial_id"] for t in summary["trials"]]
    assert len(ids) == len(set(ids)) == 3
    after = reports(search)
    for trial, n in before.items():
        if n == 5:
            assert len(after[trial]) == 5  # finished before the interruption: not rerun
    nodes = set()
    for rows in after.values():
        epochs = [int(r["epoch"]) for r in rows]
        assert epochs == [1, 2, 3, 4, 5]  # interrupted trials went on from their checkpoints
        nodes |= {r["node_id"] for r in rows}
        assert all(r["data_shared"] == "1.0" for r in rows)  # the driver's data, not the node's
    assert len(nodes) == 2  # trials ran on both nodes
    for trial in after:  # each trial's TensorBoard events reached the search folder
        assert list((search / trial / "tensorboard").glob("events.out.tfevents.*")), trial
    assert summary["best"]["test_acc"] is not None
    assert (search / summary["best"]["checkpoint"]).is_file()
    assert "Best config" in out


def test_explicit_address_without_a_token_says_what_to_set(cluster, tmp_path):
    address, env = cluster
    env = {**env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing"), "HOME": str(tmp_path)}
    proc = tune(address, env, tmp_path, "--space", "smoke", "--name", "x",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"textsearch.tune: error: cannot connect to the Ray cluster at {address}")
    assert "set RAY_AUTH_MODE=token" in last and "RAY_AUTH_TOKEN_PATH" in last


def second_raylet(port: str) -> tuple[psutil.Process, str]:
    """The raylet of the node started with ``--node-manager-port port``, and its node id."""
    for p in psutil.process_iter(["name", "cmdline"]):
        args = p.info["cmdline"] or []
        if "raylet" in (p.info["name"] or "") and f"--node_manager_port={port}" in args:
            node_id = next(a.split("=", 1)[1] for a in args if a.startswith("--node_id="))
            return p, node_id
    raise AssertionError(f"no raylet with node manager port {port}")


def test_worker_node_dies_mid_search(cluster, tmp_path):
    """The second node dies (its raylet and workers killed) while a trial trains there: the
    trial is retried on the head node from its last checkpoint, each epoch is logged once,
    and the search ends with every trial counted once."""
    address, env = cluster
    raylet, second_node = second_raylet(env["TEXTSEARCH_TEST_SECOND_NODE_PORT"])
    log = (tmp_path / "search.log").open("w")
    proc = tune(address, env, tmp_path, "--space", str(SPACES / "retry.py"), "--name", "n",
                "--max_concurrent", "2", "--max_failures", "2", stdout=log,
                stderr=subprocess.STDOUT)
    search = tmp_path / "n"
    victim, deadline = None, time.time() + 300
    while time.time() < deadline and proc.poll() is None and victim is None:
        for trial, rs in reports(search).items():  # a trial training there, epochs to go
            if rs and len(rs) < 4 and rs[-1]["node_id"] == second_node:
                victim, worker = trial, int(rs[-1]["pid"])
        time.sleep(0.2)
    assert victim is not None, (tmp_path / "search.log").read_text()[-3000:]
    # the node dies: its raylet and the workers it started, the trial's among them, at once
    # (a worker left alone notices its raylet's death only within a second, long enough on a
    # fast CPU to finish the trial's last epochs there)
    node = [raylet, *raylet.children(recursive=True)]
    assert worker in {p.pid for p in node}  # the process that trained the victim's epochs
    for p in node:
        p.kill()
    psutil.wait_procs(node, timeout=10)
    assert proc.wait(timeout=600) == 0, (tmp_path / "search.log").read_text()[-3000:]
    summary = json.loads((search / "summary.json").read_text())
    assert summary["status_counts"] == {"completed": 3}
    ids = [t["trial_id"] for t in summary["trials"]]
    assert len(ids) == len(set(ids)) == 3
    rows = reports(search)
    assert sorted(rows) == sorted(f"trial_{i}" for i in ids)
    for trial, rs in rows.items():
        assert [int(r["epoch"]) for r in rs] == [1, 2, 3, 4, 5], trial  # each epoch once
    moved = rows[victim]
    assert len({r["node_id"] for r in moved}) == 2  # it went on elsewhere, from its checkpoint
    from optuna.trial import TrialState

    from textsearch.study import load_study

    study = load_study(search)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert all(sorted(t.intermediate_values) == [1, 2, 3, 4, 5] for t in study.trials)
