"""The demo's verdict rule, tables, results file and docs blocks (caffe_losses.experiments.report)."""

import copy
import math

import numpy as np
import pytest

from caffe_losses.experiments import report


def row(values, baseline_values, higher=True, role="purpose", **kw):
    return report.paired_row(family="f", recipe="r", loss="L", baseline="B", metric="m", role=role,
                             higher_is_better=higher, seeds=list(range(len(values))), values=values,
                             baseline_values=baseline_values, **kw)


def test_t_factor_is_students_t():
    assert report.t_factor(5) == 2.776 and report.t_factor(2) == 12.706 and report.t_factor(3) == 4.303
    assert report.t_factor(14) == report.T975[12]        # between table entries: the larger t (stricter)
    assert report.t_factor(100) == 1.96
    with pytest.raises(ValueError, match="at least 2 seeds"):
        report.t_factor(1)


def test_verdict_from_the_spread_of_the_paired_differences():
    # differences 0.1, 0.2, 0.3, 0.2, 0.2: mean 0.2, sd 0.0707, SE 0.0316; t*SE = 0.0878 < 0.2
    r = row([0.6, 0.7, 0.8, 0.7, 0.7], [0.5] * 5)
    assert r["diff"] == pytest.approx(0.2) and r["se"] == pytest.approx(np.std([.1, .2, .3, .2, .2], ddof=1)
                                                                         / math.sqrt(5))
    assert r["verdict"] == "better"
    assert row([0.4, 0.3, 0.2, 0.3, 0.3], [0.5] * 5)["verdict"] == "worse"
    # the same differences in a lower-is-better metric flip the verdict
    assert row([0.6, 0.7, 0.8, 0.7, 0.7], [0.5] * 5, higher=False)["verdict"] == "worse"
    # a mean difference inside t*SE: matches (here +0.02 with SE 0.041)
    assert row([0.6, 0.4, 0.55, 0.45, 0.6], [0.5] * 5)["verdict"] == "matches"
    # no fixed cut-off: a tiny but consistent difference is a difference ...
    assert row([0.501, 0.5011, 0.5009], [0.5] * 3)["verdict"] == "better"
    # ... and a large but noisy one is not
    assert row([0.9, 0.1, 0.8], [0.5] * 3)["verdict"] == "matches"
    # exactly equal runs match
    assert row([0.5, 0.5], [0.5, 0.5])["verdict"] == "matches"


def test_trade_offs_are_not_judged_and_references_have_no_baseline():
    r = row([0.3, 0.3], [0.8, 0.8], role="trade-off", expected="cost")
    assert r["verdict"] == "expected cost" and r["diff"] == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="expected='gain' or 'cost'"):
        row([0.3, 0.3], [0.8, 0.8], role="trade-off")
    with pytest.raises(ValueError, match="role must be"):
        row([0.3, 0.3], [0.8, 0.8], role="verdict")
    ref = report.reference_row(family="f", recipe="trivial", metric="m", value=15.3, higher_is_better=False)
    assert ref["verdict"] == "reference" and ref["baseline_value"] is None


def test_rule_text_states_the_rule():
    text = report.rule_text(5)
    for part in ("d = ours - baseline per solver seed", "SE = sd(d)/sqrt(n)", "'better' if mean(d) exceeds",
                 "t = 2.776", "4 degree(s) of freedom", "not judged"):
        assert part in text


def doc_of(rows, seeds=(1, 2)):
    return report.results_document(rows, seeds=list(seeds), small=False, families=["f"], figures=[],
                                   seconds={"f": 1.0, "wall": 1.0}, workers=1, created="2026-01-01T00:00:00")


def test_check_results_recomputes_every_number():
    rows = [row([0.6, 0.7], [0.5, 0.5]),
            row([0.3, 0.3], [0.8, 0.8], role="trade-off", expected="cost"),
            report.reference_row(family="f", recipe="t", metric="m", value=1.0, higher_is_better=False)]
    for r in rows[:2]:
        r["seeds"] = [1, 2]
    doc = doc_of(rows)
    report.check_results(doc)
    for key, value in (("value", 0.9), ("verdict", "better"), ("diff", 0.0), ("se", 0.001)):
        bad = copy.deepcopy(doc)
        bad["rows"][0][key] = value
        with pytest.raises(ValueError, match="results file"):
            report.check_results(bad)
    bad = copy.deepcopy(doc)
    del bad["rows"][1]["note"]
    with pytest.raises(ValueError, match="expected keys"):
        report.check_results(bad)
    bad = copy.deepcopy(doc)
    bad["rule"] = report.rule_text(3)
    with pytest.raises(ValueError, match="rule"):
        report.check_results(bad)


def test_tables_and_docs_blocks():
    rows = [row([0.6, 0.7], [0.5, 0.5]), row([0.3, 0.3], [0.8, 0.8], role="trade-off", expected="cost")]
    for r in rows:
        r["seeds"] = [1, 2]
    terminal = report.format_table(rows)
    assert terminal.splitlines()[2] == "f: r; baseline: B"
    assert "| +0.150 +- 0.050" in terminal and "expected cost" in terminal
    md = report.markdown_table(rows)
    assert md.splitlines()[0] == "recipe: r; loss: L; baseline: B."
    assert "| m | purpose | 0.500 | 0.650 | +0.150 +- 0.050 | matches |" in md
    doc = doc_of(rows)
    text = "# Doc\n\n<!-- demo-results: f -->\nold table\n<!-- /demo-results -->\n\nafter\n"
    new, families = report.update_docs(text, doc)
    assert families == ["f"] and "old table" not in new and md in new and new.endswith("after\n")
    assert report.update_docs(new, doc)[0] == new            # idempotent
    with pytest.raises(ValueError, match="no rows of family 'g'"):
        report.update_docs("<!-- demo-results: g -->\n<!-- /demo-results -->", doc)
    lines = report.summary_lines(rows)
    assert lines[0] == "purpose metrics: 0 better, 1 matches, 0 worse than the baseline"
