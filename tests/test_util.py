"""Downloads and archives: HTTPS only, checksums, zip-slip refused, atomic writes."""

from __future__ import annotations

import zipfile

import pytest

from textsearch.data import util
from textsearch.errors import UserError


def test_only_https_urls_are_downloaded(tmp_path):
    with pytest.raises(UserError, match="only https"):
        util.download("http://example.com/x.zip", tmp_path / "x.zip", "md5", "0" * 32)
    assert not list(tmp_path.iterdir())


def test_checksum_mismatch_is_one_clear_error(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"hello")
    util.verify_checksum(f, "sha256", util.file_digest(f, "sha256"))
    with pytest.raises(UserError, match="checksum mismatch .* delete it"):
        util.verify_checksum(f, "md5", "0" * 32)


def test_zip_slip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escape.txt", "x")
        zf.writestr("ok.txt", "fine")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UserError, match="escapes"):
        util.safe_extract(archive, {"../../escape.txt": "../escape.txt"}, dest)
    assert not (tmp_path / "escape.txt").exists()
    assert util.safe_extract(archive, {"ok.txt": "ok.txt"}, dest) == [dest / "ok.txt"]


def test_truncated_zip_is_refused(tmp_path):
    archive = tmp_path / "gzip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("gzip/a.txt", "x" * 10000)
    archive.write_bytes(archive.read_bytes()[:50])
    with pytest.raises(UserError, match="not a valid zip"):
        util.safe_extract(archive, {"gzip/a.txt": "a.txt"}, tmp_path)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), util.atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_metadata_urls_are_https():
    for name in ("emnist", "brown"):
        assert util.load_metadata(name)["url"].startswith("https://")
