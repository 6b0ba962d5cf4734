"""Fixtures: a private data root holding tiny synthetic EMNIST and a tiny Brown corpus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.synthetic import write_emnist

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_EMNIST = SHARED_DATA / "emnist-sample"
SAMPLE_FILE = "emnist-byclass-train-images-idx3-ubyte.gz"
USER_DATA_DIR = os.environ.get("TEXTSEARCH_DATA_DIR")  # before the fixtures replace it

SENTENCES = [
    "The quick brown fox jumps over the lazy dog .",
    "A handwriting recognizer reads characters one line at a time .",
    "Every search trial reports its accuracy once per epoch .",
    "Numbers like 42 and 1961 appear in the corpus too .",
] * 30


def write_brown(nltk_dir: Path) -> None:
    """A tiny corpus in NLTK's Brown format (word/tag tokens), zipped as NLTK installs it."""
    corpora = nltk_dir / "corpora"
    corpora.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(" ".join(f"{w}/nn" for w in s.split()) for s in SENTENCES)
    cats = "ca01 news\n"
    with zipfile.ZipFile(corpora / "brown.zip", "w") as zf:
        zf.writestr("brown/", "")
        zf.writestr("brown/ca01", "\n\n\t" + text + "\n")
        zf.writestr("brown/cats.txt", cats)
        zf.writestr("brown/README", "tiny test corpus\n")


GPU_CHECK = "bash .ci/gpu-check"
REQUIRE_ALL = "TEXTSEARCH_REQUIRE_ALL"  # set by .ci/run: a missing prerequisite fails the test


def skip_or_fail(reason: str) -> None:
    """Skip a test whose prerequisite (a browser, mount rights, the EMNIST sample) is missing
    here; under ``TEXTSEARCH_REQUIRE_ALL=1`` (CI, which provides them all) fail it instead.
    Only the CUDA tests may skip there."""
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL}=1: this check must run here)")
    pytest.skip(reason)


def pytest_runtest_setup(item):
    """Tests marked ``gpu`` need CUDA: skipped with their reason here, required by the GPU check."""
    if item.get_closest_marker("gpu") is None:
        return
    import torch

    if not torch.cuda.is_available():
        reason = f"needs a CUDA GPU: run `{GPU_CHECK}` on a machine with one"
        if os.environ.get("TEXTSEARCH_REQUIRE_GPU") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root with synthetic EMNIST in downloaded/emnist and a tiny Brown corpus."""
    root = tmp_path_factory.mktemp("data")
    write_emnist(root / "downloaded" / "emnist")
    write_brown(root / "nltk")
    return root


@pytest.fixture(autouse=True)
def _env(data_root, monkeypatch):
    monkeypatch.setenv("TEXTSEARCH_DATA_DIR", str(data_root))
    monkeypatch.setenv("NLTK_DATA", str(data_root / "nltk"))
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(data_root / "nltk")])


@pytest.fixture
def fresh_root(tmp_path, monkeypatch) -> Path:
    """An empty data root of the test's own (for tests that damage files)."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("TEXTSEARCH_DATA_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory) -> Path:
    """A data root holding the real EMNIST sample in downloaded/emnist.

    The one the run was given (``TEXTSEARCH_DATA_DIR``, as ``.ci/run`` and a user set it) when
    it holds the sample; else a fresh one linking to ``../shared/data/emnist-sample``.  Every
    other test reads the tiny synthetic data of :func:`data_root` instead.
    """
    given = Path(USER_DATA_DIR) if USER_DATA_DIR else None
    if given is not None and (given / "downloaded" / "emnist" / SAMPLE_FILE).exists():
        return given
    if not (SHARED_EMNIST / SAMPLE_FILE).exists():
        skip_or_fail(f"the EMNIST sample is not at {SHARED_EMNIST}")
    root = tmp_path_factory.mktemp("shared-root")
    target = root / "downloaded" / "emnist"
    target.mkdir(parents=True)
    for f in SHARED_EMNIST.iterdir():
        (target / f.name).symlink_to(f)
    return root


def run_cli(module: str, *args: str, env: dict | None = None, timeout: float = 600,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` the way a user would; returns the finished process."""
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or REPO)


def cpu_auto_precision() -> str:
    """What ``--precision auto`` must give on this machine's CPU, from the flags lscpu lists:
    bf16-mixed with AVX512-BF16 or AMX, else 32."""
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:  # no lscpu: the kernel's own list
        flags = Path("/proc/cpuinfo").read_text().split()
    return "bf16-mixed" if {"avx512_bf16", "amx_bf16"} & set(flags) else "32"


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def run_main(main, argv: list[str], capsys) -> tuple[int, str]:
    """Call a CLI's ``main`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err
