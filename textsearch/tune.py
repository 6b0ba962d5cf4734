"""``python -m textsearch.tune``: search hyperparameters with Ray Tune, Optuna and ASHA.

Examples::

    python -m textsearch.tune --list
    python -m textsearch.tune --space cnn_emnist --num_samples 8 --max_epochs 3 --data_fraction 0.05
    python -m textsearch.tune --space cnn_emnist --resume            # the latest cnn_emnist search
    python -m textsearch.tune --space cnn_emnist --debug --set num_blocks=4 --fast_dev_run 2

Trials use the same training function as ``python -m textsearch.train``.  ``--debug`` runs
the space's first seeded sample in this process, without Ray, so debuggers work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from textsearch import cli, spaces
from textsearch.budget import asha_from_budget
from textsearch.errors import UserError, cli_entry
from textsearch.metrics import parse_objectives
from textsearch.record import (
    SCHEDULERS,
    SEARCHERS,
    SETTINGS_FILE,
    SUMMARY_FILE,
    SearchSettings,
    search_lock,
)

EXIT_INTERRUPTED = 130  # stopped by a Ctrl-C (128 + SIGINT), as a shell reports it
EXIT_TERMINATED = 143  # stopped by a SIGTERM (128 + SIGTERM)
# Lightning's debugging options that only the --debug run takes.
DEBUG_ONLY = ("fast_dev_run", "overfit_batches", "limit_train_batches")
# Flags that shape a search and that a --debug run (one trial, no Ray) would ignore.
SEARCH_ONLY = ("resume", "address", "warm_start", "no_first_trial", "no_report", "num_samples",
               "grace_period", "reduction_factor", "max_concurrent", "startup_trials",
               "time_budget_s", "objectives", "verbose", "live_interval_s")


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="textsearch.tune", description=__doc__.split("\n\n")[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_flag("space", type=cli.nonempty_str, help="space name in search_spaces/ or a .py path")
    p.add_flag("list", action="store_true", help="list the search spaces and exit")
    g = p.add_argument_group("search (defaults come from the space file)")
    g.add_argument("--num_samples", "--num-samples", type=cli.positive_int, help="number of trials")
    cli.add_config_flags(g, names=["max_epochs"], unset=True,
                         help_suffix=" of a full trial (ASHA's max_t; default: the space's)")
    g.add_argument("--grace_period", "--grace-period", type=cli.positive_int, help="ASHA: epochs before a trial may be stopped (default: the space's, else chosen from --max_epochs)")
    g.add_argument("--reduction_factor", "--reduction-factor", type=cli.positive_float, help="ASHA: keep the best 1/reduction_factor per rung (> 1; default: the space's, else chosen from --max_epochs)")
    g.add_argument("--max_concurrent", "--max-concurrent", type=cli.nonnegative_int, help="trials at once (0: as resources allow)")
    g.add_argument("--gpus_per_trial", "--gpus-per-trial", type=cli.nonnegative_float, help="GPUs per trial, fractions allowed (default: 0 without GPUs, else 0.25)")
    cli.add_config_flags(g, names=["precision"], unset=True,
                         help_suffix=" (every trial; default: the space's, else auto)")
    g.add_argument("--cpus_per_trial", "--cpus-per-trial", type=cli.positive_int, default=1, help="CPU threads of a trial's training loop; a trial also gets one CPU per DataLoader worker")
    g.add_argument("--seed", type=cli.nonnegative_int, default=0,
                   help="seed of the sampler and of every trial's training (weights, batch "
                   "order, dropout; a seed the space fixes wins)")
    g.add_argument("--searcher", choices=SEARCHERS, default="tpe", help="Optuna sampler: TPE, a Gaussian process (gp) or random search")
    g.add_argument("--startup_trials", "--startup-trials", type=cli.positive_int, help="TPE and gp: trials sampled at random before the sampler models the results (default: half of --num_samples, 2 to 10)")
    g.add_argument("--scheduler", choices=SCHEDULERS, default="asha", help="asha: stop hopeless trials early; fifo: run every trial to max_epochs")
    cli.add_config_flags(g, names=["data_fraction"], unset=True,
                         help_suffix=" in each trial (default: the space's)")
    g.add_argument("--time_budget_s", "--time-budget-s", type=cli.positive_float, help="stop the search after this many seconds (each run: a --resume gets as many again)")
    g.add_argument("--max_failures", "--max-failures", type=cli.nonnegative_int, default=2, help="retries of a crashed trial (from its last checkpoint)")
    g.add_argument("--objectives", type=cli.nonempty_str, help="search several reported metrics at once, e.g. val_acc:max,params:min (2-3; the first is ASHA's; default: the space's)")
    g.add_argument("--warm_start", "--warm-start", action="append", default=[], metavar="SEARCH_DIR", help="add the finished trials of an older search to this one's study first (repeatable)")
    g.add_argument("--name", type=cli.folder_name, help="search name (default: <space>-<time stamp>)")
    g.add_argument("--results_dir", "--results-dir", type=cli.folder_path, default="runs", help="where searches are written")
    g.add_argument("--address", type=cli.nonempty_str, help="an existing Ray cluster: 'auto', 'host:port' or 'ray://host:port'")
    g.add_argument("--resume", action="store_true", help="continue the search --name (default: the latest of --space); with a larger --num_samples, run more trials")
    g.add_argument("--no_first_trial", "--no-first-trial", action="store_true", help="start from a sampled trial, not the space's known-good config (DEFAULTS first_trial) or a --warm_start search's best")
    g.add_argument("--no_report", "--no-report", action="store_true", help="do not write report.html at the end")
    g.add_argument("--verbose", action="store_true", help="also print Ray Tune's own trial table every 30 s")
    g.add_argument("--live_interval_s", "--live-interval-s", type=cli.positive_float, help="seconds between live-view updates (default: 1 on a terminal, else 10)")
    d = p.add_argument_group("single-trial debug run")
    d.add_argument("--debug", action="store_true", help="run one trial in this process, without Ray")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pin a parameter (repeatable)")
    cli.add_config_flags(d, names=DEBUG_ONLY, unset=True)
    return p


def list_spaces() -> str:
    rows = [(name, spaces.describe(path)) for name, path in spaces.known_spaces().items()]
    width = max(len(n) for n, _ in rows)
    return "\n".join(f"{n:<{width}}  {d}" for n, d in rows)


def check_writable(results_dir: Path) -> None:
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--results_dir: cannot create results directory {results_dir}: "
                        f"{err.strerror}") from None
    if not os.access(results_dir, os.W_OK | os.X_OK):
        raise UserError(f"--results_dir: results directory {results_dir} is not writable")


def latest_search(results_dir: Path, space: str) -> Path:
    found = []
    for settings_file in results_dir.glob(f"*/{SETTINGS_FILE}"):
        try:
            if SearchSettings.load(settings_file.parent).space == space:
                found.append(settings_file.parent)
        except UserError:  # a damaged search.json: not a search to resume
            continue
    if not found:
        raise UserError(f"no search of space {space!r} in {results_dir} to resume")
    return max(found, key=lambda p: p.stat().st_mtime)


def fixed_config(args: argparse.Namespace, space: spaces.SearchSpace) -> dict:
    """The config every trial shares: the space's fixed values, epochs and data fraction, and
    the search's seed as every trial's training seed (unless the space fixes one), so that
    two searches with different seeds are two draws of the training as well as the sampler."""
    d = space.defaults
    fixed = {"seed": args.seed, **d.fixed, "max_epochs": args.max_epochs or d.max_epochs,
             "data_fraction": args.data_fraction or d.data_fraction}
    if args.precision:
        fixed["precision"] = args.precision
    return fixed


def make_settings(args: argparse.Namespace, space: spaces.SearchSpace) -> SearchSettings:
    d = space.defaults
    fixed = fixed_config(args, space)
    grace_period, reduction_factor = asha_from_budget(fixed["max_epochs"])
    grace_period = args.grace_period or d.grace_period or grace_period
    reduction_factor = args.reduction_factor or d.reduction_factor or reduction_factor
    settings = SearchSettings(
        space=space.name, space_source=args.space,
        name=args.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        results_dir=str(Path(args.results_dir).resolve()),
        num_samples=args.num_samples or d.num_samples,
        max_epochs=fixed["max_epochs"],
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        metric=d.metric, mode=d.mode, seed=args.seed,
        max_concurrent=args.max_concurrent if args.max_concurrent is not None else d.max_concurrent,
        gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        time_budget_s=args.time_budget_s or 0.0,
        max_failures=args.max_failures,
        searcher=args.searcher,
        scheduler=args.scheduler,
        startup_trials=args.startup_trials,
        first_trial=not args.no_first_trial,
        fixed=fixed,
    )
    objectives = parse_objectives(args.objectives, "--objectives") if args.objectives else \
        space.defaults_objectives()
    settings.metric, settings.mode = objectives[0]
    settings.objectives = [list(o) for o in objectives] if len(objectives) > 1 else None
    from textsearch.warmstart import check_source  # Optuna: only for a search

    settings.warm_start = [str(check_source(w)) for w in args.warm_start]
    if settings.reduction_factor <= 1:
        raise UserError(f"--reduction_factor must be > 1, got {settings.reduction_factor:g}")
    return settings


def run_debug(args: argparse.Namespace, space: spaces.SearchSpace) -> int:
    from textsearch.trial import run_trial

    cli.quiet_library_logs()
    params, pinned_config = spaces.sample_pinned(space, args.seed, args.set)
    fixed = fixed_config(args, space)
    if args.gpus_per_trial:
        fixed["gpus"] = min(1.0, args.gpus_per_trial)
    for flag in DEBUG_ONLY:
        if getattr(args, flag) is not None:
            fixed[flag] = getattr(args, flag)
    fixed.update(pinned_config)
    results_dir = Path(args.results_dir)
    check_writable(results_dir)
    run_dir = results_dir / "debug" / (args.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    print(f"debug trial of {space.path} (seed {args.seed}), in this process:")
    print("  params: " + json.dumps(params, sort_keys=True))
    print("  fixed:  " + json.dumps(fixed, sort_keys=True))
    result = run_trial(params, fixed, None, run_dir, in_tune=False, cpu_threads=args.cpus_per_trial,
                       progress=True)
    print("metrics: " + json.dumps({k: round(v, 5) for k, v in sorted(result.metrics.items())}))
    print(f"run directory: {run_dir}")
    return 0


def run(args: argparse.Namespace) -> int:
    from textsearch.search import load_space, run_search  # Ray: only for a search
    from textsearch.summary import format_summary

    cli.quiet_library_logs()

    results_dir = Path(args.results_dir)
    if args.resume:
        search_dir = results_dir / args.name if args.name else latest_search(results_dir, args.space)
        if not (search_dir / SETTINGS_FILE).exists():
            raise UserError(f"no search to resume at {search_dir}")
        settings = SearchSettings.load(search_dir)
        print(f"resuming search {search_dir} (original settings from search.json)")
        space = load_space(settings)
        if args.num_samples is not None:
            if args.num_samples < settings.num_samples:
                raise UserError(f"--num_samples {args.num_samples}: search {search_dir} already "
                                f"has {settings.num_samples} trials; give more to add trials")
            if args.num_samples > settings.num_samples:
                print(f"adding {args.num_samples - settings.num_samples} trials "
                      f"({settings.num_samples} -> {args.num_samples})")
            settings.num_samples = args.num_samples
    else:
        space = spaces.load(args.space)
        settings = make_settings(args, space)
        check_writable(results_dir)
        if settings.search_dir.exists() and any(settings.search_dir.iterdir()):
            raise UserError(f"search {settings.search_dir} already exists: use --resume to "
                            "continue it or choose another --name")
    new_dir = not settings.search_dir.exists()
    print(f"live view: python -m textsearch.dashboard {settings.search_dir}", flush=True)
    try:
        with search_lock(settings.search_dir):
            summary = run_search(settings, space, resume=args.resume, address=args.address,
                                 verbose=args.verbose, live_interval_s=args.live_interval_s)
    except BaseException:
        # A search that failed before it started (no search.json) leaves no folder behind.
        if new_dir and not (settings.search_dir / SETTINGS_FILE).exists():
            shutil.rmtree(settings.search_dir, ignore_errors=True)
        raise
    print(format_summary(summary))
    search_dir = settings.search_dir
    if summary.get("gpu_error"):
        raise UserError(f"search stopped: {summary['gpu_error']} (finished trials are kept in "
                        f"{search_dir})")
    if not args.no_report:
        from textsearch.report import write_report

        print(f"report: {write_report(search_dir)}")
    print(f"summary: {search_dir / SUMMARY_FILE}")
    print(f"tensorboard --logdir {search_dir} --host 127.0.0.1")
    unfinished = summary["status_counts"].get("unfinished", 0)
    budget = settings.time_budget_s
    if unfinished and budget and summary["run_wall_s"] >= budget:
        print(f"time budget of {budget:g} s reached: {unfinished} trial(s) stopped unfinished "
              "(their checkpoints are kept)")
        return 0
    if unfinished:
        print(f"{unfinished} trial(s) unfinished; continue with: {settings.resume_command()}",
              file=sys.stderr)
        return EXIT_TERMINATED if summary.get("signal") == "SIGTERM" else EXIT_INTERRUPTED
    return 0


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        if args.resume or args.debug:
            raise UserError(f"--list only lists the spaces: drop it to "
                            f"{'--resume' if args.resume else 'run --debug'}")
        print(list_spaces())
        return 0
    if not args.space and not (args.resume and args.name):
        raise UserError("--space is required (see --list)")
    if args.debug:
        for flag in SEARCH_ONLY:
            if getattr(args, flag) not in (None, False, []):
                raise UserError(f"--{flag} belongs to a search; the --debug run is one trial "
                                "in this process")
        return run_debug(args, spaces.load(args.space))
    for flag in DEBUG_ONLY:
        if getattr(args, flag) is not None:
            raise UserError(f"--{flag} belongs to the --debug run")
    if args.resume and (args.warm_start or args.objectives):
        raise UserError("--warm_start and --objectives start a search; --resume continues one "
                        "as it was started")
    if args.set:
        raise UserError("--set belongs to the --debug run")
    try:
        return run(args)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    from textsearch.errors import exit_now

    exit_now(main())
