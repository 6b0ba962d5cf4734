"""Downloads, checksums, safe archive extraction and atomic writes.

Every download comes from a URL listed in ``data/raw/<dataset>/metadata.toml``, must use
HTTPS, is written under a temporary name, verified against the checksum in that file and
only then renamed into place.  A file already where the download would put it is verified
and used as it is, so data placed by hand works offline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from textsearch.errors import UserError
from textsearch.paths import atomic_path, raw_metadata_path

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30.0
CHUNK = 1 << 20


def load_metadata(dataset: str) -> dict[str, Any]:
    """Read ``data/raw/<dataset>/metadata.toml``."""
    path = raw_metadata_path(dataset)
    with path.open("rb") as f:
        return tomllib.load(f)


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file (``algorithm`` is any :mod:`hashlib` name, e.g. ``md5``)."""
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: Path, algorithm: str, expected: str) -> None:
    """Raise :class:`UserError` when ``path`` does not have the expected digest."""
    actual = file_digest(path, algorithm)
    if actual.lower() != expected.lower():
        raise UserError(
            f"checksum mismatch for {path}: {algorithm} is {actual}, expected {expected}; "
            "the file is damaged or not the expected one: delete it and run again"
        )


def download(url: str, dest: Path, algorithm: str, expected: str, hint: str = "") -> Path:
    """Download ``url`` to ``dest`` with a progress bar, verify it, then rename into place.

    ``hint`` is added to the error when the network is unreachable (what to put where).
    """
    if not url.startswith("https://"):
        raise UserError(f"refusing to download {url}: only https:// URLs are allowed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
            except (TimeoutError, urllib.error.URLError, OSError) as err:
                reason = getattr(err, "reason", err)
                raise UserError(f"cannot download {url} ({reason}). {hint}".strip()) from None
            with response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
        verify_checksum(tmp, algorithm, expected)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def ensure_download(dataset: str, dest_dir: Path, hint: str) -> Path:
    """The dataset's archive in ``dest_dir``: verified if present, else downloaded."""
    meta = load_metadata(dataset)
    dest = dest_dir / meta["filename"]
    algorithm, expected = meta["checksum_algorithm"], meta["checksum"]
    if dest.exists():
        verify_checksum(dest, algorithm, expected)
        return dest
    log.info("downloading %s to %s", meta["url"], dest)
    return download(meta["url"], dest, algorithm, expected, hint=hint)


def safe_extract(archive: Path, members: dict[str, str], dest_dir: Path) -> list[Path]:
    """Extract selected zip members to ``dest_dir``.

    ``members`` maps a name inside the archive to the plain file name to write.  Names that
    would land outside ``dest_dir`` (absolute paths, ``..``: "zip-slip") are refused.
    """
    dest_dir = dest_dir.resolve()
    written = []
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise UserError(f"{archive} is not a valid zip archive (truncated?): delete it") from None
    with zf:
        names = set(zf.namelist())
        for inner, out_name in members.items():
            target = (dest_dir / out_name).resolve()
            if target.parent != dest_dir or Path(out_name).name != out_name:
                raise UserError(f"refusing to extract {out_name!r}: it escapes {dest_dir}")
            if inner not in names:
                raise UserError(f"{archive} has no member {inner!r}: is it the right archive?")
            with atomic_path(target) as tmp, zf.open(inner) as src, tmp.open("wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            written.append(target)
    return written
