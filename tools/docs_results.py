#!/usr/bin/env python3
"""Write the docs' results tables from a `make demo` results file (`make docs-results`).

  python tools/docs_results.py                  # the newest demo_out/*/results.json
  python tools/docs_results.py demo_out/20261130-153000/results.json
  python tools/docs_results.py --check          # only compare; exit 1 if the docs differ
  python tools/docs_results.py --registry       # the registry's tables only (no new demo run)

Copies the results file to docs/demo_results.json (the one committed source
of the docs' numbers) and regenerates every block between
`<!-- demo-results: FAMILY -->` and `<!-- /demo-results -->` in README.md and
docs/*.md from it. A results file of `demo --small` is refused: the docs
quote full runs only. tests/test_docs_results.py checks that the committed
docs agree with docs/demo_results.json.

It also regenerates the blocks between `<!-- registry: layers -->` (or
`templates`) and `<!-- /registry -->` from the registry of loss families
(caffe_losses.losses.FAMILIES): each layer with the first line of its class
docstring and its family's docs page, each template with its template.yaml
description, so that a new family appears there without editing the docs.
"""

import argparse
import glob
import json
import os
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import caffe_losses  # noqa: E402
from caffe_losses.experiments import report  # noqa: E402
from caffe_losses.losses import FAMILIES  # noqa: E402
from caffe_losses.nets.templates import TEMPLATE_ROOT, load_template  # noqa: E402

COMMITTED = os.path.join("docs", "demo_results.json")


def doc_files(root=ROOT):
    return ["README.md"] + sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "docs", "*.md")))


_REGISTRY = re.compile(r"(<!-- registry: (?P<table>[a-z]+) -->\n)(.*?)(<!-- /registry -->)", re.S)


def _markdown(text):
    """A docstring's reStructuredText literals (````x````) as Markdown code (```x```)."""
    return text.replace("``", "`").replace("|", "\\|")


def layers_table():
    """Every layer of the registry: its class docstring's first line and its family's docs page."""
    lines = ['| layer (`module: "caffe_losses"`) | what it is | docs |', "|---|---|---|"]
    for family in FAMILIES:
        for name in family.layers:
            doc = (getattr(caffe_losses, name).__doc__ or "").strip().splitlines()[0]
            lines.append(f"| `{name}` | {_markdown(doc)} | [docs/{family.docs}](docs/{family.docs}) |")
    return "\n".join(lines) + "\n"


def templates_table():
    """Every family's templates, with their template.yaml descriptions."""
    lines = ["| template | recipe |", "|---|---|"]
    for family in FAMILIES:
        for name in family.templates:
            meta = load_template(os.path.join(TEMPLATE_ROOT, name))
            lines.append(f"| `{name}` | {_markdown(meta['description'])} |")
    return "\n".join(lines) + "\n"


TABLES = {"layers": layers_table, "templates": templates_table}


def update_registry_tables(text):
    """``text`` with every ``<!-- registry: TABLE -->`` block regenerated; (new text, tables replaced)."""
    found = []

    def replace(match):
        table = match.group("table")
        if table not in TABLES:
            raise ValueError(f"<!-- registry: {table} -->: no such table (known: {', '.join(TABLES)})")
        found.append(table)
        return match.group(1) + TABLES[table]() + match.group(4)
    return _REGISTRY.sub(replace, text), found


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
    parser.add_argument("--registry", action="store_true",
                        help=f"regenerate from {COMMITTED} (no new demo run): the registry's tables "
                             f"after adding a layer or a template")
    args = parser.parse_args(argv)
    if args.check or args.registry:
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
        new, _ = update_registry_tables(new)
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
