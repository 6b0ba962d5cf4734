"""Running a search: Ray Tune with Optuna's TPE and ASHA, data shared through Ray.

:func:`run_search` prepares the data once on the driver, puts it into Ray's object store
once (:func:`ray.tune.with_parameters`), and runs :func:`textsearch.trainable.tune_trial` for
every trial with resources taken from the trial's own config.  Everything a search writes
lives in one directory, laid out as :mod:`textsearch.record` says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textsearch import spaces
from textsearch.cluster import cluster_resources, init_ray, ray_environment
from textsearch.config import TrainConfig
from textsearch.data import load_bundle
from textsearch.devices import gpu_problem
from textsearch.errors import UserError
from textsearch.live import LiveView
from textsearch.record import SPACE_COPY, SearchSettings, record_run, trial_dir_name
from textsearch.study import create_study, default_startup_trials, has_study, make_sampler
from textsearch.summary import summarize, write_summary
from textsearch.warmstart import add_to_study, best_params

# Modules that import Ray (ray, textsearch.searcher, .stopper, .tester, .trainable's
# wrapper) are imported inside the functions that use them, after cluster.init_ray: Ray
# reads its authentication mode when it is imported, and a driver connecting to a cluster
# sets it first (cluster.use_token_auth).

if TYPE_CHECKING:
    from textsearch.spaces import SearchSpace


def copy_space(settings: SearchSettings, space: SearchSpace) -> None:
    """Keep the space file as it is now in the search folder (``space.py``)."""
    settings.search_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(space.path, settings.search_dir / SPACE_COPY)


def load_space(settings: SearchSettings) -> SearchSpace:
    """The search's own copy of its space; one line if the original changed since."""
    copy = settings.search_dir / SPACE_COPY
    if not copy.is_file():
        raise UserError(f"{settings.search_dir} holds no {SPACE_COPY} (the space it searched)")
    with contextlib.suppress(UserError, OSError):
        original = spaces.resolve(settings.space_source)
        if original.read_bytes() != copy.read_bytes():
            print(f"textsearch: {original} changed since search {settings.name} started; it "
                  f"goes on with its copy {copy}", flush=True)
    return dataclasses.replace(spaces.load(str(copy)), name=settings.space)


# -- resources ------------------------------------------------------------------------------
def check_gpus(gpus_per_trial: float, cluster_gpus: float) -> None:
    """Refuse a GPU share the Ray cluster cannot give (the rule of textsearch.devices)."""
    problem = gpu_problem(gpus_per_trial, cluster_gpus, "--gpus_per_trial", "the Ray cluster")
    if problem:
        raise UserError(problem)


def default_gpus_per_trial(cluster_gpus: float) -> float:
    """0 without GPUs; otherwise a quarter GPU, so four small trials share each GPU."""
    return 0.25 if cluster_gpus > 0 else 0.0


def default_concurrency(settings: SearchSettings, total_cpus: float, total_gpus: float) -> int:
    """As many trials at once as the cluster's CPUs (and GPU shares) hold."""
    slots = total_cpus // settings.cpus_per_trial
    if settings.gpus_per_trial > 0:
        slots = min(slots, total_gpus // settings.gpus_per_trial)
    return max(1, int(slots))


def trial_resources(settings: SearchSettings, total_cpus: float):
    """Resources of a trial, from its own config: CPUs for the loop plus its data workers."""

    def resources(config: dict[str, Any]) -> dict[str, float]:
        workers = int(config.get("num_workers", settings.fixed.get("num_workers", 0)))
        cpus = min(settings.cpus_per_trial + workers, max(1.0, total_cpus))
        return {"cpu": cpus, "gpu": settings.gpus_per_trial}

    return resources


# -- the search -----------------------------------------------------------------------------


def make_scheduler(settings: SearchSettings):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if settings.scheduler == "fifo":
        return FIFOScheduler()
    # Which trials it stopped early is in the study (PRUNED), told by the searcher.
    return ASHAScheduler(
        metric=settings.metric,
        mode=settings.mode,
        time_attr="epoch",
        max_t=settings.max_epochs,
        grace_period=min(settings.grace_period, settings.max_epochs),
        reduction_factor=settings.reduction_factor,
    )


def make_searcher(settings: SearchSettings, space: SearchSpace):
    """Our searcher on the search's study (created here for a new search)."""
    from textsearch.searcher import StudySearcher
    from textsearch.stopper import out_of_space

    if settings.startup_trials is None:
        settings.startup_trials = default_startup_trials(settings.num_samples)
    sampler = make_sampler(settings.searcher, settings.seed, settings.startup_trials)
    if not has_study(settings.search_dir):
        directions = ["maximize" if d == "max" else "minimize" for _, d in settings.objective_list]
        create_study(settings.search_dir, settings.name, directions, sampler)
    search_dir = settings.search_dir
    return StudySearcher(search_dir, space.space, settings.objective_list, settings.max_epochs,
                         settings.num_samples, sampler,
                         out_of_space=functools.partial(out_of_space, search_dir))


def first_config(settings: SearchSettings, space: SearchSpace, warm_starts=()
                 ) -> tuple[dict[str, Any], str] | None:
    """What a fresh search runs as its first trial, and where it comes from: the best trial
    of its ``--warm_start`` searches (one objective), else the space's known-good config
    (``DEFAULTS["first_trial"]``); None with ``--no_first_trial`` or when there is neither."""
    if not settings.first_trial:
        return None
    if not settings.multi_objective:
        best = best_params(warm_starts, settings.mode)
        if best:
            return best, "warm_start"
    if space.defaults.first_trial:
        return dict(space.defaults.first_trial), "space"
    return None


def trial_fixed_config(settings: SearchSettings) -> dict[str, Any]:
    """The config every trial shares, with its GPU share (0: the CPU)."""
    return {**settings.fixed, "gpus": settings.gpus_per_trial}


def make_trainable(settings: SearchSettings, bundle, total_cpus: float):
    """Ray's trainable: :func:`textsearch.trainable.tune_trial` with the data and shared config."""
    from ray import tune

    from textsearch.trainable import tune_trial

    trainable = tune.with_parameters(tune_trial, bundle=bundle, fixed=trial_fixed_config(settings),
                                     cpu_threads=settings.cpus_per_trial, metric=settings.metric,
                                     mode=settings.mode,
                                     search_dir=str(settings.search_dir.resolve()))
    return tune.with_resources(trainable, trial_resources(settings, total_cpus))


def disk_is_full(search_dir: Path, err: BaseException | None = None) -> bool:
    """Whether the search directory's disk is (nearly) full, or ``err`` says it was."""
    from textsearch.stopper import is_disk_full, out_of_space

    return is_disk_full(err) or out_of_space(search_dir)


def disk_full_error(settings: SearchSettings) -> UserError:
    """The one line for a search stopped by a full disk (its failed trials stay RUNNING in
    the study, so --resume retries them)."""
    return UserError(
        f"the disk holding {settings.search_dir} is full: the search stopped, its finished "
        f"trials and checkpoints are kept. Free some space, then continue with: "
        f"{settings.resume_command()}")


def run_config(settings: SearchSettings, guard, verbose: bool = False, callbacks=()):
    """Tune's run settings.  ``verbose``: Ray's own trial table every 30 s, beside the live
    view (otherwise Tune prints nothing of its own)."""
    from ray import tune

    reporter = tune.CLIReporter(
        metric_columns=["epoch", settings.metric, "val_loss", "train_samples_per_s"],
        # not sort_by_metric: Ray's sort fails on trials that ended without a result
        max_report_frequency=30, metric=settings.metric, mode=settings.mode) if verbose else None
    return tune.RunConfig(
        name=settings.name,
        storage_path=str(Path(settings.results_dir).resolve()),
        # each trial writes its progress and checkpoints to its folder itself
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        callbacks=[guard, *callbacks],
        stop=guard,
        progress_reporter=reporter,
        verbose=1 if verbose else 0,
    )


def prepare_data(settings: SearchSettings):
    """Prepare (download, check, cache) and load the data once, on the driver, without
    torch or Lightning (:func:`textsearch.data.load_bundle`)."""
    return load_bundle(TrainConfig.from_dict(settings.fixed))


@contextlib.contextmanager
def sigterm_as_ctrl_c(received: list[int]):
    """Within the block, a SIGTERM (``kill``, a scheduler ending a job) stops the search as a
    Ctrl-C does: it is handed to whatever handles SIGINT then (Ray Tune's handler while
    ``Tuner.fit`` runs: the trials checkpoint and the run ends).  Each SIGTERM received is
    appended to ``received``.  Outside the main thread (no signal handlers there): nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame):
        received.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run_search(settings: SearchSettings, space: SearchSpace, resume: bool = False,
               address: str | None = None, verbose: bool = False,
               live_interval_s: float | None = None, live: bool = True) -> dict[str, Any]:
    """Run (or resume) a search to its end and write its summary; returns the summary.

    Every run is a new Ray Tune run on the search folder: the searcher rebuilt from the
    study first hands out the trials an earlier run left unfinished (each continues from
    the checkpoint in its folder), then new ones up to ``num_samples``.
    """
    with ray_environment():
        return search_with_ray(settings, space, resume, address, verbose, live_interval_s,
                               live)


def search_with_ray(settings: SearchSettings, space: SearchSpace, resume: bool,
                    address: str | None, verbose: bool, live_interval_s: float | None,
                    live: bool) -> dict[str, Any]:
    """:func:`run_search` within :func:`ray_environment`."""
    started = time.time()
    steps: dict[str, float] = {}  # when this run's start-up steps ended (Unix s), for runs.jsonl

    def read_data():
        bundle = prepare_data(settings)
        steps["data_ready"] = time.time()
        return bundle

    # The data is read (numpy and h5py, no torch) while Ray starts its processes.  torch
    # and Lightning load in the trials' processes, which also test the best checkpoint at
    # the search's tail (textsearch.trial.test_the_best); this one loads them only to test
    # on a slot that a trial stopped early freed (TailTest), or if nobody tested the best.
    with ThreadPoolExecutor(1, thread_name_prefix="textsearch-data") as pool:
        data = pool.submit(read_data)
        init_ray(address)  # it sets Ray's authentication mode before Ray is imported
        steps["ray_ready"] = time.time()
        bundle = data.result()
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from textsearch.stopper import SearchGuard
    from textsearch.tester import TailTest, clear_test_claims, evaluate_best

    total_cpus, total_gpus = cluster_resources()
    if settings.gpus_per_trial is None:
        settings.gpus_per_trial = default_gpus_per_trial(total_gpus)
    check_gpus(settings.gpus_per_trial, total_gpus)
    TrainConfig.from_dict(trial_fixed_config(settings)).validate()  # e.g. 16-mixed on CPUs
    trainable = make_trainable(settings, bundle, total_cpus)
    if not resume:
        copy_space(settings, space)
    searcher = make_searcher(settings, space)  # resolves the TPE start-up default
    warm_starts = []
    if settings.warm_start and not resume:
        warm_starts = add_to_study(searcher.study, settings.warm_start, space,
                                   settings.objective_list)
        for ws in warm_starts:
            print(ws.line(), flush=True)
    if not resume:
        first = first_config(settings, space, warm_starts)
        if first:
            searcher.enqueue_first(*first)
    settings.save()
    guard = SearchGuard(str(settings.search_dir), searcher)
    tail = TailTest(settings.search_dir, bundle, searcher)  # tests on slots freed at the tail
    clear_test_claims(settings.search_dir)  # no one tests yet: a claim left is a killed tester's
    concurrency = settings.max_concurrent or default_concurrency(settings, total_cpus, total_gpus)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency),
            scheduler=make_scheduler(settings),
            num_samples=-1,  # the searcher owns the budget: it answers FINISHED
            time_budget_s=settings.time_budget_s or None,
            # a finished or stopped trial's process takes the next trial with the same
            # resources: no new interpreter, no second import of torch and Lightning
            reuse_actors=True,
            trial_dirname_creator=lambda t: trial_dir_name(searcher.number_of(t.trial_id)),
        ),
        run_config=run_config(settings, guard, verbose, [tail]),
    )
    view = LiveView(settings.search_dir, searcher, settings, interval_s=live_interval_s)
    steps["tune_started"] = time.time()
    terms: list[int] = []
    try:
        with sigterm_as_ctrl_c(terms), (view if live else contextlib.nullcontext()):
            tuner.fit()
    except Exception as err:
        if disk_is_full(settings.search_dir, err):
            raise disk_full_error(settings) from None
        raise
    if guard.disk_full:
        raise disk_full_error(settings)
    with contextlib.suppress(OSError):
        record_run(settings.search_dir, started, time.time(), steps)
    tail.wait()
    evaluate_best(settings.search_dir, bundle)  # unless the tail already tested the final best
    summary = summarize(settings.search_dir)
    write_summary(settings.search_dir, summary)
    summary["run_wall_s"] = time.time() - started  # this run's (the budget is per run)
    if terms:
        summary["signal"] = "SIGTERM"  # this run was stopped by one (a Ctrl-C: the default)
    if guard.gpu_error:
        summary["gpu_error"] = f"trial {searcher.number_of(guard.gpu_trial_id)}: {guard.gpu_error}"
    return summary
