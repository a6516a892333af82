"""The margin family's part of `caffe-losses demo` (the shared small run: tests/conftest.py)."""

from demo_run import figures, metrics, rows


def test_rows_and_figures(demo_run):
    _, _, doc = demo_run
    assert {r["loss"] for r in rows(doc, "margin") if r["role"] == "purpose"} == {"MarginProduct + SoftmaxWithLoss"}
    # against each baseline (InnerProduct + SoftmaxWithLoss, and with CenterLoss): the purpose and one ROC point
    assert metrics(doc, "margin") == 2 * [("purpose", "ROC AUC, held-out digit pairs by cosine"),
                                          ("trade-off", "TAR@FAR=1e-2, held-out digit pairs")]
    assert len({r["baseline"] for r in rows(doc, "margin")}) == 2
    assert figures(doc, "margin") == {"margin/curves.png"}
