"""textsearch as a normal (non-editable) install: built as a wheel, run outside the repository."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from textsearch import spaces


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv holding the wheel; its dependencies are this environment's."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp / "dist"), str(REPO)],
                   check=True, capture_output=True, timeout=300, env=env)
    wheel = next((tmp / "dist").glob("textsearch-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300, env=env)
    # then reuse the installed dependencies (torch, Ray...) rather than installing them again
    # (after the install, so that pip does not take this environment's textsearch for it)
    (Path(venv_site) / "_textsearch_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def run_installed(venv: Path, *args: str, cwd: Path, data_root: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TEXTSEARCH_SPACES_DIR")}
    env["TEXTSEARCH_DATA_DIR"] = str(data_root)
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_wheel_lists_spaces_and_finds_metadata_outside_the_repo(installed, tmp_path, data_root):
    python = str(installed / "bin" / "python")
    where = run_installed(installed, python, "-c", "import textsearch; print(textsearch.__file__)",
                          cwd=tmp_path, data_root=data_root)
    assert str(installed) in where.stdout and str(REPO) not in where.stdout  # not the checkout
    listed = run_installed(installed, str(installed / "bin" / "textsearch-tune"), "--list",
                           cwd=tmp_path, data_root=data_root)
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()}
    assert names == set(spaces.known_spaces()) >= {"cnn_emnist", "resnet_emnist", "mlp_mnist", "smoke"}
    meta = run_installed(installed, python, "-c", "from textsearch.data.util import load_metadata; "
                         "print(load_metadata('emnist')['checksum'])", cwd=tmp_path, data_root=data_root)
    assert meta.stdout.strip() == "58c8d27c78d21e728a6bc7b3cc06412e", meta.stderr
    for script in ("textsearch-train", "textsearch-report", "textsearch-dashboard",
                   "textsearch-retrain", "textsearch-predict"):
        help_ = run_installed(installed, str(installed / "bin" / script), "--help", cwd=tmp_path,
                              data_root=data_root)
        assert help_.returncode == 0 and "usage:" in help_.stdout


def test_wheel_starts_cnn_emnist(installed, tmp_path, data_root):
    """``--space cnn_emnist`` from the installed package: one trial, in-process, one batch."""
    started = run_installed(installed, str(installed / "bin" / "python"), "-m", "textsearch.tune",
                            "--space", "cnn_emnist", "--debug", "--fast_dev_run", "--set",
                            "num_blocks=1", "--set", "conv_dim=16", "--set", "num_workers=0",
                            "--results_dir", str(tmp_path / "runs"), cwd=tmp_path, data_root=data_root)
    assert started.returncode == 0, started.stderr[-2000:]
    assert "debug trial of" in started.stdout and "metrics:" in started.stdout


def test_user_spaces_dir(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text('"""My space."""\n\ndef space(trial):\n'
                                      '    trial.suggest_float("lr", 1e-3, 1e-2)\n')
    monkeypatch.setenv("TEXTSEARCH_SPACES_DIR", str(tmp_path))
    assert spaces.known_spaces()["mine"] == tmp_path / "mine.py"
    assert "cnn_emnist" in spaces.known_spaces()
    assert spaces.load("mine").description == "My space."
