#!/usr/bin/env python3
"""Write the docs' results tables from a `make demo` results file (`make docs-results`).

  python tools/docs_results.py                  # the newest demo_out/*/results.json
  python tools/docs_results.py demo_out/20261130-153000/results.json
  python tools/docs_results.py --check          # only compare; exit 1 if the docs differ

Copies the results file to docs/demo_results.json (the one committed source
of the docs' numbers) and regenerates every block between
`<!-- demo-results: FAMILY -->` and `<!-- /demo-results -->` in README.md and
docs/*.md from it. A results file of `demo --small` is refused: the docs
quote full runs only. tests/test_docs_results.py checks that the committed
docs agree with docs/demo_results.json.
"""

import argparse
import glob
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from caffe_losses.experiments import report# noqa: E402

COMMITTED = os.path.join("docs", "demo_results.json")


def doc_files(root=ROOT):
    return ["README.md"] + sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "docs", "*.md")))


def newest_results(root=ROOT):
    found = sorted(glob.glob(os.path.join(root, "demo_out", "*", "results.json")), key=os.path.getmtime)
    if not found:
        raise SystemExit("docs-results: no demo_out/*/results.json: run `make demo` first, or name a file")
    return found[-1]


def load(path):
    with open(path) as f:
        doc = json.load(f)
    report.check_results(doc)
    return doc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", help="results.json of a demo run (default: the newest "
                                                   "under demo_out/)")
    parser.add_argument("--check", action="store_true",
                        help=f"compare the docs with {COMMITTED} and change nothing")
    args = parser.parse_args(argv)
    if args.check:
        source = os.path.join(ROOT, COMMITTED)
    else:
        source = os.path.abspath(args.results or newest_results())
    try:
        doc = load(source)
    except (OSError, ValueError) as err:
        print(f"docs-results: {source}: {err}", file=sys.stderr)
        return 2
    if doc["small"]:
        print(f"docs-results: {source} is from `demo --small`; the docs quote full runs only", file=sys.stderr)
        return 2
    stale, seen = [], set()
    for path in doc_files():
        full = os.path.join(ROOT, path)
        with open(full) as f:
            text = f.read()
        new, families = report.update_docs(text, doc, source=COMMITTED)
        seen.update(families)
        if new != text:
            stale.append(path)
            if not args.check:
                with open(full, "w") as f:
                    f.write(new)
    missing = set(doc["families"]) - seen
    if args.check:
        for path in stale:
            print(f"docs-results: {path} does not agree with {COMMITTED} (run `make docs-results`)",
                  file=sys.stderr)
        return 1 if stale else 0
    if os.path.realpath(source) != os.path.realpath(os.path.join(ROOT, COMMITTED)):
        shutil.copyfile(source, os.path.join(ROOT, COMMITTED))
    print(f"docs-results: {COMMITTED} from {source}; regenerated {', '.join(stale) or 'nothing (up to date)'}")
    if missing:
        print(f"docs-results: no <!-- demo-results: ... --> block for {', '.join(sorted(missing))}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
