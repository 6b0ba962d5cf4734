"""Lines: a time-boxed search of the line recognizer, its best config retrained, test CER."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from benchmarks.common import BENCH_SPACES, Mode, epochs_in_budget, progress, search

TARGET, STRETCH = 0.15, 0.08  # test character error rate
SPACE = str(BENCH_SPACES / "lines_bench.py")
SHOWN = 4  # test lines shown read right, and as many read wrong


RETRAIN_THREADS = 2  # the retraining has the machine to itself


def retrain_epochs(mode: Mode, lines_per_s: float, train_lines: int) -> int:
    """Epochs of the retraining that fit its time budget: the best trial's rate in the search
    (one thread, beside another trial) times the retraining's threads, an estimate that the
    measured ``retrain_s`` checks."""
    return epochs_in_budget(mode.lines_retrain_budget_s, mode.lines_retrain_epochs,
                            lines_per_s * RETRAIN_THREADS, train_lines)


def readings(checkpoint: str, count: int) -> tuple[list[dict], list[dict]]:
    """(read right, read wrong): the first ``count`` of each among the test lines."""
    from torchmetrics.functional.text import char_error_rate

    from textsearch.models.ctc import greedy_decode, label_tokens, to_text
    from textsearch.training import make_datamodule, model_from_checkpoint

    cfg, lit = model_from_checkpoint(checkpoint)
    bundle = make_datamodule(cfg).get_bundle()
    right, wrong = [], []
    for start in range(0, len(bundle.y_test), 64):
        x = torch.from_numpy(bundle.x_test[start:start + 64]).float().div(255).unsqueeze(1)
        y = torch.from_numpy(bundle.y_test[start:start + 64].astype("int64"))
        with torch.inference_mode():
            read = [to_text(t, bundle.mapping) for t in greedy_decode(lit(x))]
        for r, t in zip(read, (to_text(t, bundle.mapping) for t in label_tokens(y))):
            entry = {"truth": t, "read": r, "cer": float(char_error_rate(r, t)) if t else 0.0}
            (right if r == t else wrong).append(entry)
        if len(right) >= count and len(wrong) >= count:
            break
    return right[:count], wrong[:count]


def run(mode: Mode, results: Path) -> dict:
    import ray

    from benchmarks.spaces.lines_bench import LINES
    from textsearch.retrain import retrain

    ray.shutdown()
    name = "lines-search"
    summary = search(SPACE, name, results, num_samples=1000, max_epochs=mode.lines_epochs,
                     data_fraction=mode.lines_fraction, time_budget_s=mode.lines_budget_s,
                     max_failures=0)
    ray.shutdown()
    best = summary["best"]
    if best is None:
        raise RuntimeError(f"the lines search ended before any trial reported: its budget of "
                           f"{mode.lines_budget_s:g} s is too short on this machine")
    rows = progress(results / name)
    shared = sum(1 for r in rows if float(r.get("data_shared", 0)) == 1.0)
    from textsearch.training import TrainConfig, make_datamodule

    data_mib = make_datamodule(TrainConfig.from_dict(
        {**LINES, "data_class": "EMNISTLines", "model_class": "LineCNN"})).get_bundle().nbytes / 2**20
    rates = [r["train_samples_per_s"] for r in rows if r["trial"] == f"trial_{best['trial_id']}"]
    rate = sorted(rates)[len(rates) // 2] if rates else None
    train_lines = LINES["num_train_lines"]
    epochs = retrain_epochs(mode, rate, train_lines) if rate else 1
    torch.set_num_threads(RETRAIN_THREADS)
    start = time.time()
    out = retrain(results / name, max_epochs=epochs, progress=False)
    model = json.loads((out / "model.json").read_text())
    right, wrong = readings(str(next((out / "checkpoints").glob("*.ckpt"))), SHOWN)
    return {"search_budget_s": mode.lines_budget_s, "search_trials": summary["num_trials"],
            "search_epochs": summary["total_epochs"], "search_max_epochs": mode.lines_epochs,
            "search_status": summary["status_counts"], "search_best_val_cer": best["val_cer"],
            "best_config": best["params"], "best_lines_per_s": rate, "lines": LINES,
            "overlap": [0.0, 0.33], "retrain_epochs": epochs, "retrain_s": time.time() - start,
            "retrain_val_cer": model["metrics"].get("best_val_cer"),
            "test_cer": model["metrics"].get("test_cer"),
            "test_line_acc": model["metrics"].get("test_line_acc"),
            "read_right": right, "read_wrong": wrong, "data_mib": data_mib,
            "reports_shared": shared, "reports": len(rows)}


def rows(r: dict) -> list[str]:
    met = "yes (stretch too)" if r["test_cer"] <= STRETCH else "yes" if r["test_cer"] <= TARGET \
        else "no"
    return [f"| lines: best line recognizer of a {r['search_budget_s'] / 60:.0f}-min search, "
            f"retrained {r['retrain_epochs']} epochs: test CER (exact lines) | "
            f"**{r['test_cer']:.4f}** ({r['test_line_acc']:.1%}) (1 run) | <= {TARGET} "
            f"(stretch {STRETCH}) | {met} |"]


def section(r: dict) -> list[str]:
    lines = r["lines"]
    out = ["", f"Lines: a {r['search_budget_s'] / 60:.0f}-minute TPE + ASHA search of "
           f"`line_cnn_emnist_lines` on EMNIST Lines of at most {lines['max_length'] - 2} "
           f"characters ({28 * lines['max_length']} pixels wide, overlap "
           f"{r['overlap'][0]:g}-{r['overlap'][1]:g} of a character; {lines['num_train_lines']:,} "
           f"training, {lines['num_val_lines']:,} validation and {lines['num_test_lines']:,} test "
           f"lines, the test lines drawn from the sample's test images) ran {r['search_trials']} "
           f"trials, {r['search_epochs']} epochs, and found "
           f"`{json.dumps(r['best_config'], sort_keys=True)}` (val_cer "
           f"{r['search_best_val_cer']:.3f}). Retrained {r['retrain_epochs']} epochs "
           f"({r['retrain_s'] / 60:.1f} min): **test CER {r['test_cer']:.4f}**, "
           f"{r['test_line_acc']:.1%} of the test lines read exactly. The lines ({r['data_mib']:.0f} "
           f"MiB of uint8 images) were made once on the driver; {r['reports_shared']} of "
           f"{r['reports']} epoch reports saw them as a read-only view of Ray's object store "
           "(no copy in the trial).", "",
           "| true text | read | CER |", "|---|---|---|"]
    for e in r["read_right"] + r["read_wrong"]:
        out.append(f"| `{e['truth']}` | `{e['read']}` | {e['cer']:.3f} |")
    return out
