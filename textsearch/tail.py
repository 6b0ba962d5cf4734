"""The best checkpoint's test evaluation, run while the search's last trials still train.

Once the searcher has handed out its last trial, every trial that ends frees a slot that
nothing takes.  A trial that trains to its last epoch tests the best checkpoint so far in
its own process before it ends (:func:`textsearch.trial.test_the_best`); one stopped early
(by ASHA) cannot, so :class:`TailTest` then tests the best in a driver thread (one CPU
thread, or the driver's GPU), on the core that trial freed.  A best checkpoint already
tested is not tested again (``test.json`` names its epoch), nor one another process is
testing, so only a new best is; the search's end tests the final best only if it is not
fresh yet.  The driver loads torch and Lightning only when it tests.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ray.tune import Callback


class TailTest(Callback):
    def __init__(self, search_dir: Path, bundle, searcher) -> None:
        self.search_dir, self.bundle, self.searcher = Path(search_dir), bundle, searcher
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.again = False

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        s = self.searcher
        if s is None or s.asked < s.num_samples or s.unfinished:
            return  # trials are still to come: the freed slot takes one
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
        from textsearch.summary import evaluate_best_meanwhile

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
