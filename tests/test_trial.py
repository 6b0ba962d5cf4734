"""A trial's device: Ray's GPU assignment becomes Lightning's arguments, or a clear error.

The wiring is checked without a GPU on a real Ray cluster that declares one the machine
lacks; the tests marked ``gpu`` need CUDA and run in ``bash .ci/gpu-check``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, run_main
from textsearch.devices import Cuda, trial_accelerator
from textsearch.errors import TrialGPUError


def lightning_devices(assigned, visible, count, share=0.25):
    """(accelerator, devices) for a trial holding ``share`` of a GPU, Ray's assignment
    ``assigned`` and ``visible``, on a node where CUDA sees ``count`` devices."""
    return tuple(trial_accelerator(share if assigned else 0, assigned, visible,
                                   Cuda(count, None, torch.__version__)))

SPACES = Path(__file__).parent / "spaces"


@pytest.mark.parametrize("assigned,visible,count,expected", [
    ([], None, 0, ("cpu", 1)),  # no GPU share: the CPU
    ([], "", 2, ("cpu", 1)),  # GPUs on the node, none for this trial
    ([0], "0", 1, ("gpu", 1)),  # a share of GPU 0: Ray shows the trial only that device
    (["3"], "3", 1, ("gpu", 1)),  # Ray may hand ids out as strings
    ([0, 1], "0,1", 2, ("gpu", 2)),  # two whole GPUs
])
def test_ray_assignment_becomes_lightning_arguments(assigned, visible, count, expected):
    assert lightning_devices(assigned, visible, count) == expected


def test_a_gpu_share_that_ray_did_not_assign_is_an_error():
    with pytest.raises(TrialGPUError, match="holds 0.5 GPU but Ray assigned it none"):
        trial_accelerator(0.5, [], None, Cuda(0, None, torch.__version__))


def test_assigned_gpu_that_cuda_cannot_see_is_an_error_naming_it():
    with pytest.raises(TrialGPUError, match=r"Ray assigned GPU 0 to this trial "
                       r"\(CUDA_VISIBLE_DEVICES=0\), but torch .* sees no CUDA device"):
        lightning_devices([0], "0", 0)
    with pytest.raises(TrialGPUError, match="GPU 0,1 .* sees only 1 CUDA device"):
        lightning_devices([0, 1], "0,1", 1)


def test_what_ray_really_assigns_a_gpu_share():
    """A real Ray cluster declaring one GPU: a half-GPU task sees GPU 0, a CPU task none."""
    import ray

    # ray.init turns token authentication on for the whole process (RAY_AUTH_MODE=token):
    # put the variable back as it was for the next test
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, configure_logging=False)
    try:
        @ray.remote(num_gpus=0.5, num_cpus=0)
        def gpu_probe():
            import torch

            return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count()

        @ray.remote(num_cpus=0)
        def cpu_probe():
            import torch

            return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count()

        gpu, cpu = ray.get([gpu_probe.remote(), cpu_probe.remote()])
    finally:
        ray.shutdown()
        if auth_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth_mode
    ids, visible, count = gpu
    assert [str(i) for i in ids] == ["0"] and visible == "0"
    if count == 0:  # this machine has no usable GPU: the trial must fail, naming GPU 0
        with pytest.raises(TrialGPUError, match=r"GPU 0 .*CUDA_VISIBLE_DEVICES=0"):
            lightning_devices(*gpu)
    else:
        assert lightning_devices(*gpu) == ("gpu", 1)
    assert lightning_devices(*cpu) == ("cpu", 1)


DRIVER = """
import sys, ray
ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
from textsearch.tune import main
sys.exit(main(sys.argv[1:]))
"""


TWO_GPU_DRIVER = DRIVER.replace("num_gpus=1", "num_gpus=2")


@pytest.mark.parametrize("share, says", [
    ("3", "--gpus_per_trial 3 is more than the 2 GPUs present on the Ray cluster"),
    ("1.5", "--gpus_per_trial above 1 must be a whole number, got 1.5")])
def test_gpu_share_the_cluster_cannot_give_is_refused_before_any_trial(share, says, tmp_path):
    """A real Ray cluster declaring 2 GPUs: more GPUs than it has, or a share above 1 that is
    not whole, end in one line and exit 2 before any trial starts."""
    proc = subprocess.run(
        [sys.executable, "-c", TWO_GPU_DRIVER, "--space", str(SPACES / "asha_certain.py"),
         "--gpus_per_trial", share, "--results_dir", str(tmp_path), "--name", "g", "--no_report"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"textsearch.tune: error: {says}", proc.stderr[-3000:]
    assert not list(tmp_path.glob("g/trial_*"))  # no trial started


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU CUDA can see")
def test_search_on_a_gpu_cuda_cannot_see_stops_with_one_clear_line(tmp_path):
    """A cluster declaring a GPU the machine lacks: the search stops; nothing trains on the CPU."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, "--space", str(SPACES / "asha_certain.py"),
         "--gpus_per_trial", "0.5", "--results_dir", str(tmp_path), "--name", "g", "--no_report"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("textsearch.tune: error: search stopped: trial ")
    assert "Ray assigned GPU 0 to this trial (CUDA_VISIBLE_DEVICES=0)" in last
    assert "sees no CUDA device" in last and "--gpus_per_trial 0" in last
    search = tmp_path / "g"
    # no trial trained a single epoch (on the CPU or anywhere)
    for f in search.glob("trial_*/progress.csv"):
        assert f.stat().st_size == 0 or len(f.read_text().strip().splitlines()) <= 1
    summary = json.loads((search / "summary.json").read_text())
    assert summary["total_epochs"] == 0
    errored = [t for t in summary["trials"] if t["status"] == "errored"]
    assert errored and "Ray assigned GPU 0" in errored[0]["error"]
    from optuna.trial import TrialState

    from textsearch.study import load_study

    failed = [f"{t.number:04d}" for t in load_study(search).trials if t.state == TrialState.FAIL]
    assert failed == [errored[0]["trial_id"]]


# -- on a CUDA GPU (bash .ci/gpu-check) -------------------------------------------------------
@pytest.mark.gpu
def test_trials_train_on_their_gpu_share(tmp_path, capsys):
    from textsearch.tune import main as tune_main

    code, err = run_main(tune_main, ["--space", str(SPACES / "asha_certain.py"), "--gpus_per_trial",
                                     "0.5", "--results_dir", str(tmp_path), "--name", "g",
                                     "--no_report", "--max_concurrent", "2"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    for t in summary["trials"]:
        rows = list(csv.DictReader((tmp_path / "g" / t["path"] / "progress.csv").open()))
        assert rows and all(r["device"] == "cuda:0" for r in rows)
        assert all(float(r["gpu_mem_peak_mb"]) > 0 for r in rows)
    assert summary["best"]["test_acc"] is not None


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed", "32", "auto"])
def test_training_on_the_gpu_with_each_precision(tmp_path, precision):
    from tests.test_training import Spy, tiny
    from textsearch.training import train

    spy = Spy()
    result = train(tiny(gpus=1, precision=precision, max_epochs=2), tmp_path / "run",
                   enable_progress_bar=False, callbacks=[spy])
    # Lightning's names; auto: bf16-mixed from compute capability 8.0 (Ampere) on
    import torch

    native = torch.cuda.get_device_capability() >= (8, 0)
    expected = {"32": "32-true", "auto": "bf16-mixed" if native else "32-true"}.get(precision,
                                                                                   precision)
    assert spy.seen["device"] == "cuda:0" and spy.seen["precision"] == expected
    assert result.precision == expected.removesuffix("-true")
    assert result.test_acc > 0.3
