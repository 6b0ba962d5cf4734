"""Testing a search's best checkpoint: once per checkpoint, by whichever process is free.

The best trial's ``best.ckpt`` is tested on the test split and its metrics kept in that
trial's ``test.json``, which names the epoch the checkpoint holds (a newer best makes it
stale; :func:`textsearch.summary.summarize` shows only a fresh one).  Three places test it:

- **a trial at its last epoch** (:func:`test_at_last_epoch`, in the trial's process, which
  has torch, Lightning and the data loaded), once the search has handed out all its trials:
  no trial waits for its slot then, so the test runs on the core (or GPU share) the
  search's tail leaves idle, while the last trials still train;
- **the driver's tail thread** (:class:`TailTest`), when a trial stopped early by ASHA frees
  a slot at the tail (such a trial cannot test: the scheduler stops it at its report);
- **the search's end** (:func:`evaluate_best` in :func:`textsearch.search.run_search`), only
  if the final best is not tested yet.

While a search runs, several processes may want to test the same checkpoint: the first one
creates ``.testing`` in the trial's folder (an exclusive create) and the others leave it be.
A run starts by clearing claims that killed testers left (:func:`clear_test_claims`).
The driver loads torch and Lightning only when it tests.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from textsearch.devices import available_gpus
from textsearch.record import TEST_CLAIM, TRIAL_PREFIX, read_test, write_test
from textsearch.summary import headline_test, summarize


def evaluate_best(search_dir: Path, bundle=None, gpus: float | None = None,
                  summary: dict[str, Any] | None = None, shared: bool = False,
                  threads: int | None = None) -> float | None:
    """Test the best trial's ``best.ckpt``, unless its ``test.json`` is fresh.

    ``gpus``: 0 for the CPU, else this process's GPU (None: one if this process has one).
    ``summary``: the search's :func:`summarize`, if just read.  ``shared``: other processes
    may test the same checkpoint meanwhile: it is left to the one that claimed it first.
    ``threads``: torch's CPU threads for the test (None: as they are).  Returns the headline
    test figure (the accuracy, or for lines the CER; None: no best trial, or another process
    tests it).
    """
    summary = summary or summarize(search_dir)
    best = summary["best"]
    if best is None or best["checkpoint"] is None:
        return None
    if headline_test(summary)[1] is not None:
        return headline_test(summary)[1]
    folder = Path(search_dir) / Path(best["checkpoint"]).parent
    claim = folder / TEST_CLAIM
    if shared:
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return None
    try:
        done = read_test(folder, epoch=best["epoch"])  # tested since the summary was read
        if shared and done is not None:
            return done.get("test_cer", done.get("test_acc"))
        import torch  # only a process that tests loads torch and Lightning

        from textsearch.training import evaluate_checkpoint

        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:  # the checkpoint holds its config; the data is the search's, already in memory
            tested = evaluate_checkpoint(Path(search_dir) / best["checkpoint"], bundle,
                                         gpus=available_gpus() if gpus is None else gpus)
        finally:
            torch.set_num_threads(before)
        write_test(folder, best["epoch"], tested)
    finally:  # a claim left by a process that was killed: the search's end tests regardless
        claim.unlink(missing_ok=True)
    return tested.get("test_cer", tested.get("test_acc"))


def evaluate_best_meanwhile(search_dir: Path, bundle,
                            ready: Callable[[dict[str, Any]], bool] | None = None,
                            **kwargs: Any) -> None:
    """:func:`evaluate_best` from a process that shares a running search, unless
    ``ready(summary)`` says not now.  A failure is said on stderr and left to the search's
    end, which tests the best again."""
    try:
        summary = summarize(search_dir)
        if ready is None or ready(summary):
            evaluate_best(search_dir, bundle, summary=summary, shared=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - the search's end tests the best again
        print(f"textsearch: testing the best checkpoint of {search_dir} failed here "
              f"({type(err).__name__}: {err}); the search's end tests it", file=sys.stderr,
              flush=True)


def test_at_last_epoch(search_dir: Path, bundle, gpus: float) -> None:
    """A trial at its last epoch (logged, not yet reported) tests the search's best so far
    (its own or another trial's), once no trial is still to be handed out."""
    evaluate_best_meanwhile(search_dir, bundle, gpus=gpus,
                            ready=lambda summary: summary["num_trials"] >= summary["num_samples"])


def clear_test_claims(search_dir: Path) -> None:
    """Claims left by testers that were killed (a run starts with none testing)."""
    for claim in Path(search_dir).glob(f"{TRIAL_PREFIX}*/{TEST_CLAIM}"):
        claim.unlink(missing_ok=True)


class TailTest(Callback):
    """Tests the best in a driver thread (one CPU thread, or the driver's GPU) when a trial
    stopped before its last epoch (by ASHA, or the search's stopper) frees a slot at the
    search's tail that nothing takes; a best already tested, or being tested, is not tested
    again, so only a new best is.  A trial that ran to its last epoch tested the best there
    itself, and a newer best is its own trial's to test: the driver leaves both alone (it
    would otherwise race that trial, between its logging the epoch and claiming the test)."""

    def __init__(self, search_dir: Path, bundle, searcher) -> None:
        self.search_dir, self.bundle, self.searcher = Path(search_dir), bundle, searcher
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.again = False

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        s = self.searcher
        if s is None or s.asked < s.num_samples or s.unfinished:
            return  # trials are still to come: the freed slot takes one
        if (trial.last_result or {}).get("epoch", 0) >= s.max_epochs:
            return  # it ran to its last epoch, where it tested the best so far
        others = [t.status for t in trials if t is not trial]
        if "PENDING" in others:
            return  # a trial waits for the freed slot (queued, or retried after an error)
        if "RUNNING" not in others:
            return  # the search is ending: its end tests the best
        with self.lock:
            if self.thread is not None:
                self.again = True  # the best may have changed meanwhile
                return
            self.thread = threading.Thread(target=self._run, daemon=True,
                                           name="textsearch-tail-test")
            self.thread.start()

    def _run(self) -> None:
        while True:
            evaluate_best_meanwhile(self.search_dir, self.bundle, threads=1)
            with self.lock:
                if not self.again:
                    self.thread = None
                    return
                self.again = False

    def __getstate__(self) -> dict:
        return {}  # Ray pickles its callbacks with the run: a copy tests nothing, holds no path

    def __setstate__(self, state: dict) -> None:
        self.searcher = None
        self.lock, self.thread, self.again = threading.Lock(), None, False

    def wait(self) -> None:
        """Until an evaluation in progress has finished."""
        thread = self.thread
        if thread is not None:
            thread.join()
