"""The live view of a real search, read through a pipe as a log collector would."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, plain_study

SPACES = Path(__file__).parent / "spaces"
TRIAL_LINE = re.compile(r"^  trial (\d{4})  epoch (\d+)/(\d+)  batch +(\d+)/(\d+)")


def test_live_view_shows_batches_rising_then_ctrl_c_leaves_the_resume_line(tmp_path,
                                                                           shared_root):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TEXTSEARCH_DATA_DIR": str(shared_root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "textsearch.tune", "--space", str(SPACES / "live.py"),
         "--results_dir", str(tmp_path), "--name", "v", "--max_concurrent", "1",
         "--gpus_per_trial", "0", "--no_report", "--live_interval_s", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    out: list[str] = []
    seen: dict[str, list[int]] = {}  # trial -> batch counts shown during its first epoch
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if not selector.select(timeout=1):
                continue
            line = proc.stdout.readline()
            out.append(line)
            m = TRIAL_LINE.match(line)
            if m and m.group(2) == "1" and "(validating)" not in line:
                seen.setdefault(m.group(1), []).append(int(m.group(4)))
            first = seen.get("0000", [])
            if len(set(first)) >= 3:  # three different batch counts of one epoch: stop it
                break
        assert proc.poll() is None, "".join(out)[-3000:]
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    out.append(rest)
    text = "".join(out)
    first = seen["0000"]
    assert first == sorted(first) and first[-1] > first[0], first  # rising within the epoch
    total = int(next(TRIAL_LINE.match(x).group(5) for x in text.splitlines()
                     if TRIAL_LINE.match(x)))
    assert total > first[-1] and all(0 <= b <= total for b in first)
    heads = [x for x in text.splitlines() if x.startswith("search v: ")]
    assert any(h.startswith("search v: 0/2 trials finished, 1 running; ") for h in heads), heads
    assert proc.returncode == 130, text[-3000:]
    last = text.strip().splitlines()[-3:]
    assert any("python -m textsearch.tune" in x and "--resume" in x and "--name v" in x
               for x in last), last
    assert "Tuner.restore" not in text  # textsearch's resume line is the only one


ESCAPE = re.compile(r"\x1b\[([\d;]*)([A-Za-z])")


def screen(raw: str) -> list[str]:
    """What a terminal shows after printing ``raw``: its lines, with cursor movements and
    erasures applied (``ESC[nF``: n lines up, to column 0; ``ESC[J``: erase to the end of
    the screen; colours and other sequences change no text)."""
    lines, row, col, i = [""], 0, 0, 0
    while i < len(raw):
        m = ESCAPE.match(raw, i)
        if m:
            if m.group(2) == "F":
                row, col = max(0, row - int(m.group(1) or 1)), 0
            elif m.group(2) == "J":
                del lines[row + 1:]
                lines[row] = lines[row][:col]
            i = m.end()
            continue
        c = raw[i]
        if c == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif c == "\r":
            col = 0
        else:
            lines[row] = lines[row][:col].ljust(col) + c + lines[row][col + 1:]
            col += 1
        i += 1
    return lines


def test_live_view_redraws_in_place_on_a_terminal(tmp_path):
    """On a real terminal (a pty, stdout and stderr both on it, as a user runs it) the view
    is redrawn over itself: many draws went out, one view is left on the screen, showing
    the search's final state, above the summary."""
    import pty
    import select

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "textsearch.tune", "--space", str(SPACES / "slow.py"),
         "--results_dir", str(tmp_path), "--name", "p", "--num_samples", "1", "--max_epochs", "2",
         "--gpus_per_trial", "0", "--no_report", "--live_interval_s", "0.3"],
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: every process writing to it ended
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    raw = b"".join(chunks).decode(errors="replace")
    drawn = raw.count("search p: ")
    assert drawn >= 3, raw[-3000:]  # redrawn several times ...
    assert re.search(r"\x1b\[\d+F\x1b\[J", raw)  # ... each over the last
    shown = screen(raw)
    heads = [line for line in shown if line.startswith("search p: ")]
    assert len(heads) == 1, "\n".join(shown)  # ... leaving one view on the screen
    best = plain_study(tmp_path / "p").best_value  # what Optuna holds for the one trial
    assert heads[0].startswith(f"search p: 1/1 trials finished, 0 running; best val_acc "
                               f"{best:.4f} (trial 0000)"), heads[0]
    assert not any(TRIAL_LINE.match(line) for line in shown)  # no trial running at the end
    assert any(TRIAL_LINE.match(line) for line in ESCAPE.sub("", raw).replace("\r", "").split("\n"))
    assert shown.index(heads[0]) < next(i for i, line in enumerate(shown)
                                        if line.startswith("Search 'p': 1 trials"))
