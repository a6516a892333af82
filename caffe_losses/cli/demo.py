"""Train every loss on the embedded data and judge each recipe by what it is for.

For each loss family (infogain on an imbalanced digits split, weighted
sigmoid on rare positives, age regression, center loss) the demo prepares
the data (no downloads), trains the template net and its plain-loss
baseline with real Caffe for several solver seeds, evaluates both on the
test split as they train, and prints one table: each recipe's purpose
metric against its baseline, the checks and the trade-offs, with a verdict
from the spread over the seeds (the rule is printed with the table).

It writes results.json (the docs' tables are made from it:
`make docs-results`), results.md, results.csv and the pictures into --out, a
new or empty folder: by default a fresh demo_out/<date-time>. The demo never
writes into a folder that holds anything, and deletes nothing.

  caffe-losses demo                  # a few minutes on 2 CPU cores
  caffe-losses demo --only age --out /tmp/demo-age
"""

import csv
import datetime
import os
import sys
import time

from caffe_losses.experiments import report, runner
from caffe_losses.losses import DEMOS

DEFAULT_PARENT = "demo_out"


def add_arguments(parser):
    parser.add_argument("--out", default=None,
                        help="a new or empty folder for the results (default: a new "
                             f"{DEFAULT_PARENT}/<date-time>)")
    parser.add_argument("--only", action="append", choices=list(DEMOS),
                        help="run only this family (repeatable)")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"solver seeds per net (default: {len(runner.SEEDS)}; "
                             f"{len(runner.SMALL_SEEDS)} with --small)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="training processes at once (default: one per core)")
    parser.add_argument("--small", action="store_true",
                        help="tiny sizes (seconds; for smoke tests, the numbers mean little)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")


def _new_folder(path):
    """The results folder: ``path`` if it is new or empty, else an error message."""
    if path is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = os.path.abspath(os.path.join(DEFAULT_PARENT, stamp))
        path, k = base, 1
        while os.path.exists(path):
            k += 1
            path = f"{base}-{k}"
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        return None, f"--out {path} exists and is not a folder"
    if os.path.isdir(path) and os.listdir(path):
        return None, (f"--out {path} is not empty; the demo writes only into a new or empty folder and "
                      f"never replaces files (give another --out, or none: each run then gets a new "
                      f"{DEFAULT_PARENT}/<date-time>)")
    os.makedirs(path, exist_ok=True)
    return path, None


def _write_csv(path, rows):
    keys = ["family", "recipe", "loss", "baseline", "metric", "role", "higher_is_better", "value",
            "baseline_value", "diff", "se", "verdict", "seeds", "values", "baseline_values", "note"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (" ".join(repr(v) for v in r[k]) if isinstance(r[k], list) else r[k])
                             for k in keys})


def run(args):
    seeds_n = args.seeds if args.seeds is not None else \
        len(runner.SMALL_SEEDS if args.small else runner.SEEDS)
    if seeds_n < 2:
        print(f"caffe-losses demo: --seeds must be at least 2 (the verdicts need a spread). "
              f"Received: {seeds_n}", file=sys.stderr)
        return 2
    workers = args.jobs if args.jobs is not None else runner.default_workers()
    if workers < 1:
        print(f"caffe-losses demo: --jobs must be at least 1. Received: {workers}", file=sys.stderr)
        return 2
    out, error = _new_folder(args.out)
    if error:
        print(f"caffe-losses demo: {error}", file=sys.stderr)
        return 2
    seeds = runner.seed_list(seeds_n)
    progress = None if args.no_progress else sys.stderr
    families = list(dict.fromkeys(args.only or DEMOS))
    modules = {name: DEMOS[name].module("experiment") for name in families}
    t0 = time.time()
    jobs = []
    for name, module in modules.items():
        runner.log(progress, f"== {name}: preparing the data and nets")
        jobs += module.plan(os.path.join(out, name), small=args.small, seeds=seeds)
    runner.log(progress, f"== training {len(jobs)} runs ({len(families)} families x nets x {seeds_n} seeds) "
                         f"in {min(workers, len(jobs))} process(es)")
    try:
        results = runner.run_jobs(jobs, workers=workers, progress=progress)
    except KeyboardInterrupt:
        print(f"caffe-losses demo: interrupted; {out} holds the prepared nets and data, no results",
              file=sys.stderr)
        return 130
    rows, figures, seconds = [], [], {}
    for name, module in modules.items():
        mine = [r for r in results if r["job"].family == name]
        seconds[name] = round(sum(r["seconds"] for r in mine), 1)
        got, figs = module.summarize(mine, os.path.join(out, name), small=args.small)
        rows += got
        figures += figs
    seconds["wall"] = round(time.time() - t0, 1)

    doc = report.results_document(
        rows, seeds=seeds, small=args.small, families=families, workers=workers, seconds=seconds,
        figures=[os.path.relpath(f, out) for f in figures],
        created=datetime.datetime.now().isoformat(timespec="seconds"))
    report.check_results(doc)
    with open(os.path.join(out, "results.json"), "w") as f:
        f.write(report.dumps(doc))
    table = report.format_table(rows)
    summary = report.summary_lines(rows)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("# caffe-losses demo results\n\n")
        for name in families:
            f.write(f"## {name}\n\n" + report.markdown_table([r for r in rows if r["family"] == name]) +
                    "\n\n")
        f.write(doc["rule"] + "\n\n```\n" + "\n".join(summary) + "\n```\n\n" +
                "\n".join(f"- [{p}]({p})" for p in doc["figures"]) + "\n")
    _write_csv(os.path.join(out, "results.csv"), rows)
    print(table)
    print()
    print(doc["rule"])
    print()
    print("\n".join(summary))
    print()
    for fig in figures:
        print(f"figure: {fig}")
    print(f"results: {os.path.join(out, 'results.json')} (and results.md, results.csv); "
          f"{len(jobs)} runs in {seconds['wall']:.0f} s with {min(workers, len(jobs))} process(es)")
    return 0
