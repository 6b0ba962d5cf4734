"""``python -m textsearch.report SEARCH_DIR``: a self-contained HTML report of a search.

The search may be running, stopped (Ctrl-C, a killed driver) or finished: the report shows
what its folder holds now.
Writes ``report.html`` (plots embedded as PNG data, no network needed to view it) and the
same plots as ``plot_<name>.png`` into the search directory, and prints the report's path.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib.pyplot as plt

from textsearch import cli
from textsearch.errors import UserError, cli_entry
from textsearch.plots import PLOTS, SearchData, load_search
from textsearch.record import REPORT_FILE, plot_file
from textsearch.summary import cell, headline_test, trials_table

CAPTIONS = {
    "best_vs_time": "Best metric so far against wall time",
    "best_vs_trials": "Best metric so far against trials",
    "curves": "Metric per epoch for every trial (dashed and x: stopped early by ASHA)",
    "params": "Each parameter against the metric",
    "importance": "Parameter importance",
    "pareto": "Pareto front of the objectives (Optuna): trials no other trial beats on all of them",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; } tr.best td { background: #e8f6e8; font-weight: 600; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { color: #555; }
code { background: #f6f6f6; padding: 1px 4px; }
"""


# Marks on <body> how many plots decoded (a headless browser reads it back from the DOM).
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.plotsLoaded = ok;
  document.body.dataset.plotsBroken = imgs.length - ok;
});
</script>"""


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def render(data: SearchData, images: dict[str, bytes]) -> str:
    s = data.summary
    best = s.get("best")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>Search {html.escape(s['search'])}</title><style>{STYLE}</style></head><body>",
             f"<h1>Search <code>{html.escape(s['search'])}</code> (space "
             f"<code>{html.escape(s['space'])}</code>)</h1>",
             f"<p>{s['num_trials']} trials: " + ", ".join(
                 f"{n} {html.escape(k.replace('_', ' '))}" for k, n in sorted(s['status_counts'].items()))
             + f"; {s['total_epochs']} epochs trained"
             + (f" in {s['wall_s']:.0f} s" if s.get("wall_s") else "") + ".</p>"]
    parts.append("<h2>Best configuration</h2>")
    if best:
        label, value = headline_test(s)
        test = f"{value:.4f}" if value is not None else "n/a"
        parts.append(f"<p>Trial <code>{best['trial_id']}</code>: {s['metric']} = "
                     f"<b>{best[s['metric']]:.4f}</b>"
                     + (f" (trained in precision <code>{html.escape(best['precision'])}</code>)"
                        if best.get("precision") else "")
                     + f", {label.lower()} of its best checkpoint = "
                     f"<b>{test}</b>.</p><pre>{html.escape(json.dumps(best['config'], indent=1, sort_keys=True))}</pre>")
    else:
        parts.append("<p>No trial reported the metric.</p>")
    for name, png in images.items():
        b64 = base64.b64encode(png).decode()
        parts.append(f"<h2>{html.escape(CAPTIONS[name])}</h2><figure id='plot-{name}'>"
                     f"<img alt='{html.escape(CAPTIONS[name])}' src='data:image/png;base64,{b64}'>"
                     f"</figure>")
    table = trials_table(s)
    parts.append("<h2>All trials</h2>")
    best_id = best["trial_id"] if best else None
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for _, r in table.iterrows():
        cls = " class='best'" if r["trial_id"] == best_id else ""
        cells = "".join(f"<td>{html.escape(cell(v))}</td>" for v in r.values)
        rows.append(f"<tr{cls}>{cells}</tr>")
    parts.append(f"<table id='trials'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
                 "</tbody></table>")
    parts.append(f"<p>Compare curves and hyperparameters in TensorBoard: "
                 f"<code>tensorboard --logdir {html.escape(str(data.path))} --host 127.0.0.1</code></p>")
    parts.append(CHECK_SCRIPT)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(search_dir: str | Path) -> Path:
    data = load_search(search_dir)
    images = {}
    for name, plot in PLOTS.items():
        if name == "pareto" and data.summary.get("pareto") is None:
            continue  # one objective
        png = _png(plot(data))
        (data.path / plot_file(name)).write_bytes(png)
        images[name] = png
    out = data.path / REPORT_FILE
    out.write_text(render(data, images))
    return out


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="textsearch.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("search_dir", type=cli.nonempty_str,
                        help="a search's folder (runs/<name>), running, stopped or finished")
    args = parser.parse_args(argv)
    path = Path(args.search_dir)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory")
    print(write_report(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
