"""Where a run computes, and in what precision: the one device and precision policy.

- ``gpus`` (a run's option, a search trial's GPU share) must name GPUs that are there:
  :func:`gpu_problem` says why not, for a machine (:func:`accelerator_for`) and for a Ray
  cluster (:func:`textsearch.search.check_gpus`) alike.
- A search trial trains on the GPU Ray assigned it, or fails: it never falls back to the
  CPU in silence (:func:`trial_accelerator`); it hands what it checked to
  :func:`textsearch.training.train`, which does not decide again.
- ``auto`` precision is ``bf16-mixed`` where the device computes bf16 natively (a CUDA GPU
  of compute capability 8.0 or more, a CPU with AVX512-BF16 or AMX), else ``32``
  (:func:`resolve_precision`); what Lightning really ran is read back from its Trainer.

torch is imported only where CUDA is asked about (:func:`cuda`), so the search's driver
checks a cluster's GPUs without loading it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from textsearch.errors import TrialGPUError, UserError

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic


class Accelerator(NamedTuple):
    """Lightning's ``accelerator`` ('cpu' or 'gpu') and ``devices`` (how many)."""

    accelerator: str
    devices: int


CPU = Accelerator("cpu", 1)


class Cuda(NamedTuple):
    count: int  # CUDA devices this process sees
    capability: tuple[int, int] | None  # of device 0
    version: str  # torch's, for messages


def cuda() -> Cuda:
    """What CUDA this process sees (torch loads here, at the first question)."""
    import torch

    count = torch.cuda.device_count()
    return Cuda(count, torch.cuda.get_device_capability() if count else None, torch.__version__)


def available_gpus() -> int:
    """1 where this process sees a GPU, else 0: the default of commands that train or test."""
    return 1 if cuda().count else 0


def gpu_problem(gpus: float, present: float, flag: str = "--gpus", where: str = "this machine"
                ) -> str | None:
    """Why ``gpus`` GPUs cannot be had where ``present`` are (None: they can)."""
    if gpus < 0:
        return f"{flag} must be >= 0, got {gpus:g}"
    if gpus > 0 and present == 0:
        return f"{flag} {gpus:g} asks for GPUs, but {where} has none; use {flag} 0"
    if gpus > present:
        return f"{flag} {gpus:g} is more than the {present:g} GPUs present on {where}"
    if gpus > 1 and not float(gpus).is_integer():
        return f"{flag} above 1 must be a whole number, got {gpus:g}"
    return None


def accelerator_for(gpus: float) -> Accelerator:
    """Lightning's accelerator for a run outside a search; refuses GPUs that are not there.
    A share of one GPU (below 1) is that one device."""
    if gpus <= 0:
        return CPU
    problem = gpu_problem(gpus, cuda().count)
    if problem:
        raise UserError(problem)
    return Accelerator("gpu", max(1, int(gpus)))


def trial_accelerator(share: float, assigned: list[Any], cuda_visible: str | None,
                      seen: Cuda) -> Accelerator:
    """Lightning's accelerator for a search trial that holds ``share`` of a GPU.

    ``assigned``: ``ray.get_gpu_ids()`` in the trial's worker (``[0]`` for a quarter of GPU
    0); ``cuda_visible``: the ``CUDA_VISIBLE_DEVICES`` Ray set for it; ``seen``: :func:`cuda`
    there.  Ray hides every other GPU, so the trial trains on ``len(assigned)`` local
    devices.  A trial that holds a share but was assigned no GPU, or cannot see the one it
    was assigned, fails here (:class:`TrialGPUError`, which stops the search): it never
    trains on the CPU instead.
    """
    if not assigned:
        if share > 0:
            raise TrialGPUError(f"this trial holds {share:g} GPU but Ray assigned it none")
        return CPU
    ids = ",".join(str(i) for i in assigned)
    if seen.count < len(assigned):
        sees = "no CUDA device" if seen.count == 0 else f"only {seen.count} CUDA device(s)"
        raise TrialGPUError(
            f"Ray assigned GPU {ids} to this trial (CUDA_VISIBLE_DEVICES={cuda_visible}), but "
            f"torch {seen.version} sees {sees} there: fix the node's GPU driver or CUDA "
            "set-up, or search with --gpus_per_trial 0")
    return Accelerator("gpu", len(assigned))


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), read from the CPU's own
    flags in ``/proc/cpuinfo`` (``cpuinfo``: that file's text; elsewhere than Linux: False)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags")
             for f in line.partition(":")[2].split()}
    return any(f in flags for f in CPU_BF16_FLAGS)


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning's precision for ``precision`` on ``accelerator`` ('cpu' or 'gpu').

    ``auto``: ``bf16-mixed`` where the device has native bf16 (a CUDA device of compute
    capability 8.0 or more: Ampere and newer; a CPU with AVX512-BF16 or AMX), else ``32``.
    Any other value is Lightning's as given.
    """
    if precision != "auto":
        return precision
    if accelerator == "gpu":
        return "bf16-mixed" if (cuda().capability or (0, 0)) >= (8, 0) else "32"
    return "bf16-mixed" if cpu_has_native_bf16() else "32"


def evaluation_precision(trained: str, accelerator: str) -> str:
    """The precision a checkpoint trained in ``trained`` is evaluated in on ``accelerator``:
    a mixed-precision run tested on a CPU runs in what that CPU computes natively."""
    if accelerator == "cpu" and trained.endswith("-mixed"):
        return resolve_precision("auto", "cpu")
    return resolve_precision(trained, accelerator)


def trainer_precision(trainer) -> str:
    """The precision a Lightning Trainer runs in, named as ``--precision`` names it
    (Lightning's ``32-true`` is ``32``)."""
    held = str(trainer.precision)
    return "32" if held == "32-true" else held


def device_name(trainer) -> str:
    """The device a Trainer trains on, as torch names it (``cuda:0``, ``cpu``)."""
    return str(trainer.strategy.root_device)
