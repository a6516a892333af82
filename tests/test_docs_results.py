"""The docs' results tables agree with the committed demo results file (one source).

docs/demo_results.json is a real `make demo` run's results.json, copied by
`make docs-results` (tools/docs_results.py), which also writes the tables
between `<!-- demo-results: FAMILY -->` markers. Here: the file has the
structure the demo writes (every mean, difference and verdict recomputed
from the per-seed values), it is a full run of every family, and the
committed docs hold exactly the tables generated from it.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from caffe_losses.experiments import report, runner
from caffe_losses.losses import DEMOS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("docs_results", os.path.join(ROOT, "tools", "docs_results.py"))
docs_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs_results)


def committed():
    with open(os.path.join(ROOT, docs_results.COMMITTED)) as f:
        return json.load(f)


def test_committed_results_are_a_full_demo_run():
    doc = committed()
    report.check_results(doc)
    assert doc["small"] is False
    assert doc["families"] == list(DEMOS) and doc["seeds"] == list(runner.SEEDS)
    assert doc["rule"] == report.rule_text(len(runner.SEEDS))


def test_docs_agree_with_the_committed_results():
    doc = committed()
    seen = []
    for path in docs_results.doc_files():
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        new, families = report.update_docs(text, doc, source=docs_results.COMMITTED)
        assert new == text, f"{path} does not agree with {docs_results.COMMITTED}: run `make docs-results`"
        seen += families
    assert sorted(set(seen)) == sorted(DEMOS), "every family's table appears in the docs"


def test_check_mode_of_the_generator():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "docs_results.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_generator_refuses_a_small_run(tmp_path):
    doc = committed()
    doc["small"] = True
    path = tmp_path / "results.json"
    path.write_text(report.dumps(doc))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "docs_results.py"), str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "full runs only" in proc.stderr


def test_readme_tables_of_layers_and_templates_come_from_the_registry():
    from caffe_losses.losses import FAMILIES
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    new, tables = docs_results.update_registry_tables(text)
    assert new == text, "README.md's registry tables are stale: run `make docs-results` (or --registry)"
    assert sorted(tables) == ["layers", "templates"]
    layers = docs_results.layers_table()
    templates = docs_results.templates_table()
    for family in FAMILIES:
        for name in family.layers:
            assert f"| `{name}` |" in layers and f"(docs/{family.docs})" in layers
        for name in family.templates:
            assert f"| `{name}` |" in templates
    # a made-up block is regenerated, an unknown table refused
    made_up = "x\n<!-- registry: templates -->\nold\n<!-- /registry -->\ny\n"
    assert docs_results.update_registry_tables(made_up) == (
        "x\n<!-- registry: templates -->\n" + templates + "<!-- /registry -->\ny\n", ["templates"])
    with pytest.raises(ValueError, match="no such table"):
        docs_results.update_registry_tables("<!-- registry: nothing -->\n<!-- /registry -->")
