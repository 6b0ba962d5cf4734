"""Benchmarks of textsearch on the real EMNIST sample: one runner, one markdown table.

    python benchmarks/run.py --quick        # about 17 minutes on 2 cores
    python benchmarks/run.py                # the full run (about 1.5 hours on 2 cores)
    python benchmarks/run.py --only data_path,lines
    python benchmarks/run.py --table        # rewrite the table from the saved JSON

Needs EMNIST under ``$TEXTSEARCH_DATA_DIR/downloaded/emnist`` (and the Brown corpus through
``NLTK_DATA`` for the EMNIST Lines item).  Writes ``benchmarks/results/<mode>.md`` and
``.json`` (plus plots), and prints the table.  Ratios are measured in the same run,
alternating the arms; min/median/max are over the repetitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import FULL, QUICK, RESULTS, Mode, machine  # noqa: E402
from textsearch.data import EMNIST  # noqa: E402

# item name -> its module in benchmarks/ (each has run(mode, results) and rows/section(result))
ITEMS = {"data_path": "data_path", "lines": "lines", "startup": "startup", "overhead": "overhead",
         "plain": "plain",
         "concurrency": "concurrency", "search_quality": "search_quality", "tpe_startup": "tpe_startup",
         "accuracy": "accuracy", "warm_start": "warm_start", "fusion": "fusion",
         "memory_format": "memory_format", "gpu": "gpu", "lines_search": "lines_search",
         "precision": "precision"}
# the order of the text sections below the table
SECTIONS = ["startup", "search_quality", "plain", "accuracy", "lines_search", "tpe_startup", "warm_start", "fusion",
            "memory_format", "precision", "gpu"]


def item_module(item: str):
    return importlib.import_module(f"benchmarks.{ITEMS[item]}")


def markdown(mode: Mode, res: dict) -> str:
    """The results table and the items' sections, rendered from the saved results alone."""
    by_machine: dict[str, list[str]] = {}
    for item in res:
        by_machine.setdefault(res[item].get("machine", "not recorded"), []).append(item)
    where = "; ".join(f"{m} ({', '.join(items)})" for m, items in by_machine.items())
    lines = [f"### Benchmarks ({mode.name} mode)", "",
             f"Machines: {where}. Figures: median (min-max) over {mode.reps} repetitions "
             "unless stated; arms alternate within one run.", "",
             "| item | measured | target | met |", "|---|---|---|---|"]
    for item in ITEMS:
        module = item_module(item)
        if item in res and hasattr(module, "rows"):
            lines += module.rows(res[item])
    if "gpu" not in res:
        lines += item_module("gpu").rows({"skipped": "not run"})
    for item in SECTIONS:
        module = item_module(item)
        if item in res and hasattr(module, "section"):
            lines += module.section(res[item])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small fractions, few trials")
    parser.add_argument("--only", default=",".join(ITEMS), help=f"comma list of {list(ITEMS)}")
    parser.add_argument("--results", default=None,
                        help="folder for the searches it runs (finished ones there are reused)")
    parser.add_argument("--table", action="store_true",
                        help="only rewrite the table from the mode's saved JSON; run nothing")
    parser.add_argument("--seeds", type=int, help="override the mode's number of search seeds")
    parser.add_argument("--accuracy_budget_s", type=float, help="override the accuracy search budget")
    parser.add_argument("--retrain_epochs", type=int, help="override the accuracy retraining epochs")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    overrides = {k: getattr(args, k) for k in ("seeds", "accuracy_budget_s", "retrain_epochs")
                 if getattr(args, k) is not None}
    mode = dataclasses.replace(mode, **overrides)
    items = [] if args.table else [i.strip() for i in args.only.split(",") if i.strip()]
    unknown = set(items) - set(ITEMS)
    if unknown:
        parser.error(f"unknown items {sorted(unknown)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(args.results or RESULTS / "raw" / f"{mode.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if items:
        work.mkdir(parents=True, exist_ok=True)
        EMNIST().prepare_data()
    previous = RESULTS / f"{mode.name}.json"
    res: dict = json.loads(previous.read_text()) if previous.exists() else {}
    for item in items:
        start = time.time()
        res[item] = item_module(item).run(mode, work)
        res[item]["seconds"] = time.time() - start
        res[item]["machine"] = machine()
        print(f"[{item}] done in {res[item]['seconds']:.0f} s", file=sys.stderr, flush=True)
        # merged into the file as it is now: another runner may have saved an item meanwhile
        saved = json.loads(previous.read_text()) if previous.exists() else {}
        res = {**saved, item: res[item]}
        previous.write_text(json.dumps(res, indent=1, default=str))
    res = {k: res[k] for k in ITEMS if k in res}
    text = markdown(mode, res)
    (RESULTS / f"{mode.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
