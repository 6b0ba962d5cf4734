"""The live view of a running search: what each trial is doing now, and the search as a whole.

Each running trial keeps ``live.json`` in its folder (:class:`textsearch.trial.LiveProgress`,
in the trial's process): its epoch, the batches done in that epoch out of how many, samples/s, device and
stage, rewritten at most twice a second.  It is no report to Tune (``tune.report`` stays once
per epoch, ASHA's time axis).  The driver's :class:`LiveView` reads those files and the study
and draws, for each running trial, its id, epoch, batches done / total, samples/s, latest
validation metric and device; and for the search, trials finished / total, the best so far,
the elapsed time and an estimate of the time left.  On a terminal the block is redrawn in
place; elsewhere (a pipe, a log file) it is printed as plain lines whenever it changed.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from textsearch.metrics import best, better
from textsearch.record import PROGRESS_FILE, finite_number, read_live, read_progress, trial_dir
from textsearch.study import is_own


def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LiveView:
    """Draws the search's state every ``interval_s`` seconds, in a thread, from the study and
    the trial folders.  ``searcher``: the search's :class:`textsearch.searcher.StudySearcher`.
    """

    def __init__(self, search_dir: Path, searcher, settings, stream: TextIO | None = None,
                 interval_s: float | None = None) -> None:
        self.search_dir, self.searcher, self.settings = Path(search_dir), searcher, settings
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.interval_s = interval_s or (1.0 if self.tty else 10.0)
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="textsearch-live")
        self._drawn_lines = 0
        self._last_text = ""

    def __enter__(self) -> LiveView:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            try:
                self.draw()  # the final state
            except Exception:  # noqa: BLE001 - the view must never fail the search
                pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.draw()
            except Exception:  # noqa: BLE001 - the view must never stop the search
                pass

    def draw(self) -> None:
        lines = self.lines()
        text = "\n".join(lines)
        if self.tty:
            erase = f"\x1b[{self._drawn_lines}F\x1b[J" if self._drawn_lines else ""
            self.stream.write(erase + text + "\n")
            self._drawn_lines = len(lines)
        elif text != self._last_text:
            self.stream.write(text + "\n")
        self._last_text = text
        self.stream.flush()

    def lines(self) -> list[str]:
        """The view as text lines: the search first, then one line per running trial."""
        s = self.settings
        metric = s.metric
        trials = [t for t in self.searcher.study.get_trials(deepcopy=False) if is_own(t)]
        finished = [t for t in trials if t.state.is_finished()]
        leader: tuple[float, int] | None = None
        running = []
        done_fraction = float(len(finished))
        for t in trials:
            folder = trial_dir(self.search_dir, t.number)
            rows = read_progress(folder / PROGRESS_FILE)
            values = [v for v in (finite_number(r.get(metric)) for r in rows) if v is not None]
            top = best(values, s.mode)
            if top is not None and better(top, leader[0] if leader else None, s.mode):
                leader = (top, t.number)
            if t.state.is_finished():
                continue
            live = read_live(folder)
            if live is None or live.get("updated", 0) < self.started:  # not running in this run
                continue
            epochs = live.get("max_epochs") or s.max_epochs
            batches = live.get("batches") or 0
            within = live["batch"] / batches if batches else 0.0
            done_fraction += min(1.0, (live["epoch"] - 1 + within) / max(1, epochs))
            running.append((t.number, live, values[-1] if values else None))
        elapsed = time.time() - self.started
        head = (f"search {s.name}: {len(finished)}/{s.num_samples} trials finished, "
                f"{len(running)} running; best {metric} "
                + (f"{leader[0]:.4f} (trial {leader[1]:04d})" if leader else "-")
                + f"; {clock(elapsed)} elapsed")
        left = self.time_left(elapsed, done_fraction)
        if left is not None:
            head += f", ~{clock(left)} left"
        out = [head]
        for number, live, last in sorted(running):
            batches = live.get("batches")
            where = (f"batch {live['batch']:>{len(str(batches))}}/{batches}" if batches
                     else f"batch {live['batch']}")
            if live.get("stage") == "val":
                where += " (validating)"
            out.append(f"  trial {number:04d}  epoch {live['epoch']}/{live.get('max_epochs')}  "
                       f"{where}  {live['samples_per_s']:,.0f} samples/s  {metric} "
                       + (f"{last:.4f}" if last is not None else "-")
                       + f"  {live.get('device', '?')}")
        return out

    def time_left(self, elapsed: float, done_fraction: float) -> float | None:
        """At the rate so far, the time the rest of the trials take (an upper bound: ASHA
        stops some early), capped by what is left of the time budget."""
        s = self.settings
        left = None
        if done_fraction > 0.05:
            left = elapsed * (s.num_samples - done_fraction) / done_fraction
        if s.time_budget_s:
            budget_left = max(0.0, s.time_budget_s - elapsed)
            left = budget_left if left is None else min(left, budget_left)
        return left
