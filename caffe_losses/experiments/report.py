"""The demo's verdicts, tables and results file, and the docs' tables made from that file.

One rule judges every row that has a verdict.  For each solver seed ``s``
the recipe and its baseline are trained with the same data, solver and seed;
``d_s = ours_s - baseline_s`` is their difference in the row's metric.  With
``n`` seeds, ``mean = sum(d_s) / n`` and the standard error
``SE = std(d_s, ddof=1) / sqrt(n)``:

* ``better``: the mean is more than ``t * SE`` in the metric's good direction;
* ``worse``: more than ``t * SE`` in the bad direction;
* ``matches``: otherwise (no difference the seeds can tell apart);

where ``t`` is the 97.5% quantile of Student's t with ``n - 1`` degrees of
freedom (2.776 for 5 seeds): "better" means the two-sided 95% confidence
interval of the mean difference lies entirely on the good side of 0.

Each row has a role: ``purpose`` (the metric the recipe exists for),
``check`` (a metric the recipe should not make worse), ``trade-off`` (the
expected gain or cost that comes with the purpose, shown but not judged) or
``reference`` (a line to read the others against, e.g. a trivial predictor).
"""

import json
import math
import re

import numpy as np

__all__ = ["T975", "ROLES", "VERDICTS", "t_factor", "rule_text", "paired_row", "reference_row",
           "format_table", "markdown_table", "summary_lines", "results_document", "check_results",
           "docs_section", "update_docs", "dumps", "FORMAT"]

FORMAT = "caffe-losses demo results, version 1"

# Student's t, 97.5% quantile, by degrees of freedom (two-sided 95%)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
ROLES = ("purpose", "check", "trade-off", "reference")
VERDICTS = ("better", "matches", "worse")


def t_factor(n):
    """The 97.5% quantile of Student's t with ``n - 1`` degrees of freedom (n >= 2)."""
    df = int(n) - 1
    if df < 1:
        raise ValueError(f"t_factor: needs at least 2 seeds. Received: n={n}")
    known = [k for k in T975 if k <= df]
    return T975[max(known)] if df <= 30 else 1.96


def rule_text(n):
    """The verdict rule, stated exactly, for ``n`` seeds."""
    return (f"verdict rule: d = ours - baseline per solver seed (same data, solver and seed), over "
            f"n = {n} seeds; mean(d) +- SE, SE = sd(d)/sqrt(n); 'better' if mean(d) exceeds "
            f"t x SE in the metric's good direction, 'worse' if it exceeds t x SE in the bad one, "
            f"else 'matches'; t = {t_factor(n):.3f} (Student's t, 97.5%, {n - 1} degree(s) of freedom): "
            f"the 95% confidence interval of mean(d) excludes 0. Trade-off rows show the expected "
            f"gain or cost of the recipe and are not judged.")


def _verdict(mean, se, n, higher_is_better):
    good = mean if higher_is_better else -mean
    margin = t_factor(n) * se
    if good > margin:
        return "better"
    if -good > margin:
        return "worse"
    return "matches"


def paired_row(*, family, recipe, loss, baseline, metric, role, higher_is_better, seeds, values,
               baseline_values, expected=None, note=""):
    """A result row comparing a recipe with its baseline, seed by seed.

    Args:
      family: experiment (``infogain``, ...).
      recipe: what the row's net is (one line).
      loss: the loss that net trains with.
      baseline: the baseline net's loss (and head, if it differs).
      metric: the test-set metric.
      role: ``purpose``, ``check`` or ``trade-off``.
      higher_is_better: the metric's good direction.
      seeds: the solver seeds, in the order of ``values``.
      values, baseline_values: the metric per seed.
      expected: for a trade-off, ``"gain"`` or ``"cost"``.
      note: one line of context.
    """
    if role not in ROLES[:3]:
        raise ValueError(f"paired_row: role must be one of {ROLES[:3]}. Received: role={role!r}")
    values = [float(v) for v in values]
    baseline_values = [float(v) for v in baseline_values]
    if not (len(values) == len(baseline_values) == len(seeds)):
        raise ValueError(f"paired_row: {len(seeds)} seeds, {len(values)} values, "
                         f"{len(baseline_values)} baseline values")
    d = np.asarray(values) - np.asarray(baseline_values)
    n = len(d)
    se = float(np.std(d, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    if role == "trade-off":
        if expected not in ("gain", "cost"):
            raise ValueError(f"paired_row: a trade-off row needs expected='gain' or 'cost'. "
                             f"Received: expected={expected!r}")
        verdict = f"expected {expected}"
    else:
        verdict = _verdict(float(d.mean()), se, n, higher_is_better) if n > 1 else "n/a (1 seed)"
    return {"family": family, "recipe": recipe, "loss": loss, "baseline": baseline, "metric": metric,
            "role": role, "higher_is_better": bool(higher_is_better), "seeds": [int(s) for s in seeds],
            "values": values, "baseline_values": baseline_values,
            "value": float(np.mean(values)), "baseline_value": float(np.mean(baseline_values)),
            "diff": float(d.mean()), "se": se, "verdict": verdict, "note": note}


def reference_row(*, family, recipe, metric, value, higher_is_better, note=""):
    """A reference line (no training, no baseline), e.g. a trivial predictor's score."""
    return {"family": family, "recipe": recipe, "loss": "-", "baseline": "-", "metric": metric,
            "role": "reference", "higher_is_better": bool(higher_is_better), "seeds": [],
            "values": [float(value)], "baseline_values": [], "value": float(value),
            "baseline_value": None, "diff": None, "se": None, "verdict": "reference", "note": note}


def _num(v):
    if v is None:
        return "-"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"


def _diff(row):
    if row["diff"] is None:
        return "-"
    return f"{row['diff']:+.3f} +- {row['se']:.3f}"


def _cells(row):
    return [row["loss"], row["metric"], row["role"], _num(row["baseline_value"]), _num(row["value"]),
            _diff(row), row["verdict"]]


HEADER = ["loss", "metric (test split)", "role", "baseline", "ours", "ours - baseline (mean +- SE)",
          "verdict"]


def _groups(rows):
    """Consecutive rows of the same family, recipe and baseline."""
    groups = []
    for r in rows:
        key = (r["family"], r["recipe"], r["baseline"])
        if not groups or groups[-1][0] != key:
            groups.append((key, []))
        groups[-1][1].append(r)
    return groups


def format_table(rows):
    """The demo's table for the terminal: one header, then per recipe a title line and its rows."""
    body = [[str(c) for c in _cells(r)] for r in rows]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(HEADER)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    lines = [line(HEADER), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    k = 0
    for (family, recipe, baseline), group in _groups(rows):
        lines.append(f"{family}: {recipe}" + ("" if baseline == "-" else f"; baseline: {baseline}"))
        for _ in group:
            lines.append(line(body[k]))
            k += 1
    return "\n".join(lines)


def markdown_table(rows):
    """A family's rows as Markdown: what all rows share in a line above, the rest in a table.

    The recipe, loss and baseline columns are shown only when they differ
    between the (non-reference) rows; when they do not, the line above the
    table names them once.
    """
    columns = [("recipe", "recipe", lambda r: r["recipe"]), ("loss", "loss", lambda r: r["loss"]),
               ("baseline", "baseline", lambda r: r["baseline"]),
               ("metric", "metric (test split)", lambda r: r["metric"]),
               ("role", "role", lambda r: r["role"]),
               ("baseline_value", "baseline value", lambda r: _num(r["baseline_value"])),
               ("value", "ours", lambda r: _num(r["value"])),
               ("diff", "ours - baseline (mean +- SE)", _diff), ("verdict", "verdict", lambda r: r["verdict"])]
    trained = [r for r in rows if r["role"] != "reference"] or rows
    shared = [(key, title) for key, title, _ in columns[:3] if len({r[key] for r in trained}) == 1]
    if any(r["role"] == "reference" for r in rows):   # a reference row has its own recipe
        shared = [(k, t) for k, t in shared if k != "recipe"]
    keep = [c for c in columns if c[0] not in {k for k, _ in shared}]
    lines = []
    if shared:
        lines += ["; ".join(f"{title}: {trained[0][key]}" for key, title in shared) + ".", ""]
    lines += ["| " + " | ".join(title for _, title, _ in keep) + " |", "|" + "---|" * len(keep)]
    for r in rows:
        lines.append("| " + " | ".join(str(get(r)).replace("|", "/") for _, _, get in keep) + " |")
    return "\n".join(lines)


def summary_lines(rows):
    """Counts of the verdicts of the purpose rows, and any check that got worse."""
    purpose = [r for r in rows if r["role"] == "purpose"]
    counts = {v: sum(r["verdict"] == v for r in purpose) for v in VERDICTS}
    lines = [f"purpose metrics: {counts['better']} better, {counts['matches']} matches, "
             f"{counts['worse']} worse than the baseline"]
    for r in purpose:
        lines.append(f"  {r['family']}, {r['loss']}: {r['metric']} {_num(r['baseline_value'])} -> "
                     f"{_num(r['value'])} ({_diff(r)}): {r['verdict']}")
    worse = [r for r in rows if r["role"] == "check" and r["verdict"] == "worse"]
    lines.append(f"checks: {sum(r['role'] == 'check' for r in rows) - len(worse)} hold, {len(worse)} worse")
    for r in worse:
        lines.append(f"  {r['family']}, {r['loss']}: {r['metric']} {_num(r['baseline_value'])} -> "
                     f"{_num(r['value'])} ({_diff(r)}): worse")
    return lines


def results_document(rows, *, seeds, small, families, figures, seconds, workers, created):
    """The results file's content (what ``results.json`` holds)."""
    return {"format": FORMAT, "created": created, "small": bool(small), "seeds": [int(s) for s in seeds],
            "rule": rule_text(len(seeds)), "workers": int(workers), "seconds": dict(seconds),
            "families": list(families), "figures": list(figures), "rows": list(rows)}


_ROW_KEYS = {"family", "recipe", "loss", "baseline", "metric", "role", "higher_is_better", "seeds",
             "values", "baseline_values", "value", "baseline_value", "diff", "se", "verdict", "note"}
_TOP_KEYS = {"format", "created", "small", "seeds", "rule", "workers", "seconds", "families", "figures",
             "rows"}


def check_results(doc):
    """Raises ValueError unless ``doc`` has the structure :func:`results_document` writes.

    Also recomputes every mean, difference and verdict from the per-seed
    values, so a hand-edited number does not pass.
    """
    def fail(msg):
        raise ValueError(f"results file: {msg}")
    if not isinstance(doc, dict) or set(doc) != _TOP_KEYS:
        fail(f"expected keys {sorted(_TOP_KEYS)}, got {sorted(doc) if isinstance(doc, dict) else type(doc)}")
    if doc["format"] != FORMAT:
        fail(f"format {doc['format']!r}, expected {FORMAT!r}")
    n = len(doc["seeds"])
    if doc["rule"] != rule_text(n):
        fail("the rule text is not the rule for its number of seeds")
    for i, row in enumerate(doc["rows"]):
        if set(row) != _ROW_KEYS:
            fail(f"row {i}: expected keys {sorted(_ROW_KEYS)}, got {sorted(row)}")
        if row["family"] not in doc["families"] or row["role"] not in ROLES:
            fail(f"row {i}: family {row['family']!r} / role {row['role']!r} unknown")
        if row["role"] == "reference":
            again = reference_row(family=row["family"], recipe=row["recipe"], metric=row["metric"],
                                  value=row["value"], higher_is_better=row["higher_is_better"],
                                  note=row["note"])
        else:
            if row["seeds"] != doc["seeds"]:
                fail(f"row {i}: seeds {row['seeds']} differ from the file's {doc['seeds']}")
            expected = row["verdict"].split()[-1] if row["role"] == "trade-off" else None
            again = paired_row(family=row["family"], recipe=row["recipe"], loss=row["loss"],
                               baseline=row["baseline"], metric=row["metric"], role=row["role"],
                               higher_is_better=row["higher_is_better"], seeds=row["seeds"],
                               values=row["values"], baseline_values=row["baseline_values"],
                               expected=expected, note=row["note"])
        for key in again:
            a, b = again[key], row[key]
            same = (a == b) or (isinstance(a, float) and isinstance(b, float)
                                and (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                                     or (math.isnan(a) and math.isnan(b))))
            if not same:
                fail(f"row {i} ({row['family']}, {row['metric']}): {key} is {b!r}, "
                     f"but its per-seed values give {a!r}")
    return doc


# ---------------------------------------------------------------------------
# The docs' tables
# ---------------------------------------------------------------------------

_BLOCK = re.compile(r"(<!-- demo-results: (?P<family>[a-z_]+)[^>]*-->\n)(?P<body>.*?)(<!-- /demo-results -->)",
                    re.S)


def docs_section(doc, family, source="docs/demo_results.json"):
    """The generated text between a family's markers: its table and the rule."""
    rows = [r for r in doc["rows"] if r["family"] == family]
    if not rows:
        raise ValueError(f"results file has no rows of family {family!r}")
    seconds = doc["seconds"].get(family)
    return (markdown_table(rows) + "\n\n"
            f"Generated by `make docs-results` from `{source}` (a `make demo` run of "
            f"{doc['created']}, {len(doc['seeds'])} solver seeds"
            + (f", {seconds:.0f} s of training summed over its runs" if seconds is not None else "") + "). "
            + doc["rule"][0].upper() + doc["rule"][1:] + "\n")


def update_docs(text, doc, source="docs/demo_results.json"):
    """``text`` with every ``<!-- demo-results: FAMILY -->`` block regenerated from ``doc``.

    Returns:
      (new text, list of the families replaced).
    """
    families = []

    def replace(match):
        families.append(match.group("family"))
        return match.group(1) + docs_section(doc, match.group("family"), source) + match.group(4)
    return _BLOCK.sub(replace, text), families


def dumps(doc):
    """The results file's text (stable key order, one row per block)."""
    return json.dumps(doc, indent=1, sort_keys=False, allow_nan=True) + "\n"
