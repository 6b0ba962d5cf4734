"""Where textsearch keeps data.

The data root defaults to the repository's ``data/`` folder and is moved with the
``TEXTSEARCH_DATA_DIR`` environment variable.  Inside it:

- ``raw/<dataset>/metadata.toml``: where each dataset comes from (committed, read-only);
- ``downloaded/<dataset>/``: files fetched from the internet or placed there by hand;
- ``processed/<dataset>/``: caches built from the downloads (HDF5 + JSON).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
RAW_DIR = REPO_DIR / "data" / "raw"


def data_root() -> Path:
    """The data root: ``$TEXTSEARCH_DATA_DIR`` if set, else ``<repo>/data``."""
    env = os.environ.get("TEXTSEARCH_DATA_DIR")
    return Path(env).expanduser().resolve() if env else REPO_DIR / "data"


def downloaded_dir(dataset: str) -> Path:
    return data_root() / "downloaded" / dataset


def processed_dir(dataset: str) -> Path:
    return data_root() / "processed" / dataset


def raw_metadata_path(dataset: str) -> Path:
    """The committed ``metadata.toml`` of a dataset (always in the repository)."""
    return RAW_DIR / dataset / "metadata.toml"
