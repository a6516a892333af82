"""Train every loss on the embedded data and print one results table.

For each loss family (infogain on an imbalanced digits split, weighted
sigmoid on rare positives, age regression, center loss) the demo prepares
the data (no downloads), trains the template net and its plain-loss
baseline with real Caffe, evaluates both on held-out data, and prints one
table. Figures (training curves, the center-loss feature plot) and the
table (results.md, results.csv) are written under --out.

  caffe-losses demo                  # about a few minutes on 2 CPU cores
  caffe-losses demo --only age --out /tmp/demo
"""

import csv
import importlib
import os
import sys
import time

from caffe_losses.experiments import MODULES
from caffe_losses.training import collect_histories, plot_curve


def curves_figure(runs, path, title):
    """One PNG with a curve per label; runs sharing a label (seeds) are averaged."""
    import numpy as np
    import re
    groups = {}
    for run in runs:
        if run["iters"]:   # runs that differ only by their seed are averaged
            label = re.sub(r"\s*\(?seed \d+\)?", "", run["label"]).strip() or run["label"]
            groups.setdefault(label, []).append(run)
    if not groups:
        return None
    curves = {}
    for label, group in groups.items():
        n = min(len(r["loss"]) for r in group)
        mean = np.mean([r["loss"][:n] for r in group], axis=0)
        name = label if len(group) == 1 else f"{label} (mean of {len(group)} runs)"
        curves[name] = {"iters": group[0]["iters"][:n], "loss": list(mean)}
    return plot_curve(curves, path, title=title)


def add_arguments(parser):
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--only", action="append", choices=MODULES,
                        help="run only this family (repeatable)")
    parser.add_argument("--small", action="store_true",
                        help="tiny sizes (seconds; for smoke tests, the numbers mean little)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def verdict(row, rel_tol=0.02):
    """'better', 'matches' (within rel_tol) or 'WORSE' than the baseline."""
    value, base = float(row["value"]), float(row["baseline_value"])
    sign = 1 if row.get("higher_is_better", True) else -1
    margin = rel_tol * max(abs(base), 1e-12)
    if sign * (value - base) > margin:
        return "better"
    if abs(value - base) <= margin:
        return "matches"
    return "WORSE"


def format_table(rows):
    header = ["loss", "recipe", "metric", "ours", "baseline", "baseline value", "verdict"]
    body = [[str(r["loss"]), str(r["recipe"]), str(r["metric"]), f"{float(r['value']):.4g}",
             str(r["baseline"]), f"{float(r['baseline_value']):.4g}", verdict(r)] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(b, widths)) + " |" for b in body]
    return "\n".join(lines)


def run(args):
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    families = args.only or list(MODULES)
    rows, figures, timings = [], [], {}
    for name in families:
        module = importlib.import_module(f"caffe_losses.experiments.{name}")
        print(f"== {name}: training ...", file=sys.stderr, flush=True)
        t0 = time.time()
        with collect_histories() as runs:
            got = module.run(os.path.join(out, name), small=args.small, progress=not args.no_progress)
        timings[name] = time.time() - t0
        curve = curves_figure(runs, os.path.join(out, name, "training_curves.png"),
                              f"Training curves: {name} (ours and baseline)")
        if curve:
            figures.append(curve)
        print(f"== {name}: done in {timings[name]:.0f} s", file=sys.stderr, flush=True)
        rows.extend(got)
        figures.extend(r["figure"] for r in got if r.get("figure"))
    table = format_table(rows)
    claims = "\n".join(f"- {r['loss']} / {r['recipe']}: {r.get('claim', '')} -> {verdict(r)}" for r in rows)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("# caffe-losses demo results\n\n" + table + "\n\n" + claims + "\n")
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        keys = ["loss", "recipe", "metric", "value", "baseline", "baseline_value", "higher_is_better",
                "verdict", "claim", "figure"]
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow(dict(r, verdict=verdict(r)))
    print()
    print(table)
    print()
    print(claims)
    print()
    for fig in dict.fromkeys(figures):
        print(f"figure: {fig}")
    print(f"table: {os.path.join(out, 'results.md')} and results.csv; "
          f"time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    worse = [r for r in rows if verdict(r) == "WORSE"]
    if worse:
        print(f"note: {len(worse)} recipe(s) did worse than their baseline (see the table).")
    return 0
