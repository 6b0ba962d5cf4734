"""Fixtures: a private data root holding tiny synthetic EMNIST and a tiny Brown corpus."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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


def skip_without_cuda(item) -> None:
    """Tests marked ``gpu`` need CUDA: skipped with their reason here, required by the GPU check."""
    if item.get_closest_marker("gpu") is None:
        return
    import torch

    if not torch.cuda.is_available():
        reason = f"needs a CUDA GPU: run `{GPU_CHECK}` on a machine with one"
        if os.environ.get("TEXTSEARCH_REQUIRE_GPU") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


BEFORE_TEST = pytest.StashKey[tuple]()


def ray_is_up() -> bool:
    """Whether this process holds a Ray session (without importing Ray when nothing did)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


# Variables a library sets for the whole process the first time it loads (whichever test
# loads it first), and pytest's own: no test's doing.
PROCESS_WIDE = {
    "PYTEST_CURRENT_TEST",
    "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK",  # torch, for its OpenMP runtime
    "PYTORCH_NVML_BASED_CUDA_CHECK", "TORCHINDUCTOR_CACHE_DIR",  # torch, its CUDA and compiler
    "PYTHONBREAKPOINT", "RAY_CLIENT_MODE", "RAY_USAGE_STATS_ENABLED",  # ray.init, for its driver
}


def leaks(before: dict[str, str], ray_before: bool) -> list[str]:
    """What a test (or a module's fixtures) left changed in this process: environment
    variables and whether Ray is initialised."""
    before = {k: v for k, v in before.items() if k not in PROCESS_WIDE}
    now = {k: v for k, v in os.environ.items() if k not in PROCESS_WIDE}
    out = [f"{k} added ({now[k]!r})" for k in sorted(now.keys() - before.keys())]
    out += [f"{k} removed" for k in sorted(before.keys() - now.keys())]
    out += [f"{k} changed ({before[k]!r} -> {now[k]!r})" for k in sorted(before.keys() & now.keys())
            if before[k] != now[k]]
    if ray_is_up() != ray_before:
        out.append("Ray left initialised" if ray_is_up() else "Ray shut down")
    return out


@pytest.fixture(scope="module", autouse=True)
def _no_leak_from_module():
    """Fails when a module's fixtures leave the environment or Ray changed for the next module."""
    before, ray_before = dict(os.environ), ray_is_up()
    yield
    if found := leaks(before, ray_before):
        pytest.fail("the module's fixtures leaked: " + "; ".join(found))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """Before any fixture of the test is set up: what the next hook compares with."""
    item.stash[BEFORE_TEST] = (dict(os.environ), ray_is_up())
    skip_without_cuda(item)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After every fixture of the test was torn down (monkeypatch's undo included): the test
    fails when it left the environment or Ray changed for the next one."""
    result = yield
    if BEFORE_TEST in item.stash and (found := leaks(*item.stash[BEFORE_TEST])):
        pytest.fail("the test leaked: " + "; ".join(found))
    return result


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


def cpu_flags() -> set[str]:
    """This CPU's feature flags, as the kernel lists them in /proc/cpuinfo (empty elsewhere)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return set()
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@contextlib.contextmanager
def started(argv: list[str], **popen) -> subprocess.Popen:
    """A command started in its own process group.  When the ``with`` body fails, the whole
    group (Ray's workers included) is killed at once, so the first failure is the one
    reported, never a later wait; after a body that passed, the caller waits for its end."""
    proc = subprocess.Popen(argv, start_new_session=True, **popen)
    try:
        yield proc
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def plain_study(search: Path):
    """A search's study read with Optuna alone (its journal file), not through textsearch."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(search / "study.journal")))
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


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
