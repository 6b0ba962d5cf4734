"""The full-disk and GPU guard's rules, on real files and real exception chains."""

from __future__ import annotations

import errno
import shutil

import pytest

from textsearch import stopper
from textsearch.errors import TrialGPUError


def test_out_of_space_is_below_the_threshold_on_the_real_filesystem(tmp_path, monkeypatch):
    free = shutil.disk_usage(tmp_path).free
    monkeypatch.setattr(stopper, "MIN_FREE_BYTES", free // 2)
    assert not stopper.out_of_space(tmp_path)
    monkeypatch.setattr(stopper, "MIN_FREE_BYTES", free * 2)
    assert stopper.out_of_space(tmp_path)
    # a folder not made yet is judged by its nearest existing parent
    assert stopper.free_bytes(tmp_path / "not" / "yet") == pytest.approx(free, rel=0.01)


def test_room_needed_is_three_of_the_largest_checkpoint_and_at_least_1_mib(tmp_path):
    guard = stopper.SearchGuard(str(tmp_path), searcher=None)
    assert guard.needed_bytes() == stopper.MIN_FREE_BYTES == 1 << 20
    guard.largest_checkpoint = 100_000
    assert guard.needed_bytes() == 1 << 20
    guard.largest_checkpoint = 5 << 20
    assert guard.needed_bytes() == 15 << 20
    assert not guard.stop_all() and not guard.disk_full


def test_disk_full_is_an_enospc_anywhere_in_the_chain():
    from ray.exceptions import RayTaskError

    full = OSError(errno.ENOSPC, "No space left on device")
    assert stopper.is_disk_full(full)
    try:
        try:
            raise full
        except OSError as err:
            raise RuntimeError("could not save the checkpoint") from err
    except RuntimeError as wrapped:
        assert stopper.is_disk_full(wrapped)
        in_ray = RayTaskError("train", "Traceback ...", wrapped)
        assert stopper.is_disk_full(in_ray)
        assert stopper.root_cause(in_ray) is wrapped  # Ray's wrapper is not the cause
    assert not stopper.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not stopper.is_disk_full(ValueError("No space left on device"))  # text is not type
    assert not stopper.is_disk_full(None)


def test_a_gpu_error_is_found_by_its_type_inside_rays_wrapper():
    from ray.exceptions import RayTaskError

    gpu = TrialGPUError("Ray assigned GPU 0 to this trial, but torch sees no CUDA device")
    chain = stopper.causes(RayTaskError("train", "Traceback ...", gpu))
    assert any(isinstance(e, TrialGPUError) for e in chain)
    assert not any(isinstance(e, TrialGPUError)
                   for e in stopper.causes(RuntimeError("TrialGPUError: only a message")))
