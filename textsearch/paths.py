"""Where textsearch finds its own files and keeps data.

Shipped with the package (in the repository they are ``search_spaces/`` and ``data/raw/``):

- the built-in search spaces, package ``textsearch.search_spaces``;
- ``<dataset>/metadata.toml`` (where each dataset comes from), package ``textsearch.sources``.

The data root is ``$TEXTSEARCH_DATA_DIR`` if set, else the repository's ``data/`` in a source
checkout, else ``$XDG_CACHE_HOME/textsearch`` (``~/.cache/textsearch``).  Inside it:

- ``downloaded/<dataset>/``: files fetched from the internet or placed there by hand;
- ``processed/<dataset>/``: caches built from the downloads (HDF5 + JSON).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def source_checkout() -> Path | None:
    """The repository this package runs from, if it is a source checkout."""
    repo = PACKAGE_DIR.parent
    return repo if (repo / "pyproject.toml").exists() and (repo / "data" / "raw").is_dir() else None


def _shipped_dir(package: str, in_repo: str) -> Path:
    """A folder shipped as a data package: in a source checkout, the repository's own."""
    repo = source_checkout()
    if repo is not None:
        return repo / in_repo
    spec = importlib.util.find_spec(package)  # found without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"textsearch is installed without its {package} files: reinstall it")
    return Path(list(spec.submodule_search_locations)[0])


def builtin_spaces_dir() -> Path:
    return _shipped_dir("textsearch.search_spaces", "search_spaces")


def data_root() -> Path:
    env = os.environ.get("TEXTSEARCH_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    repo = source_checkout()
    if repo is not None:
        return repo / "data"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "textsearch"


def downloaded_dir(dataset: str) -> Path:
    return data_root() / "downloaded" / dataset


def processed_dir(dataset: str) -> Path:
    return data_root() / "processed" / dataset


def raw_metadata_path(dataset: str) -> Path:
    """The ``metadata.toml`` of a dataset, shipped with the package."""
    return _shipped_dir("textsearch.sources", "data/raw") / dataset / "metadata.toml"


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` only on success."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)
    try:
        yield tmp
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def environment_restored(names: tuple[str, ...]) -> Iterator[None]:
    """After the block, the environment variables ``names`` are as they were before it (set
    to their old value, or removed), whatever the block or a library it called did to them."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
