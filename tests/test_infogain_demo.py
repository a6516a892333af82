"""The infogain family's part of `caffe-losses demo` (the shared small run: tests/conftest.py)."""

from demo_run import figures, layers, metrics, rows


def test_rows_and_figures(demo_run):
    _, _, doc = demo_run
    assert {r["loss"] for r in rows(doc, "infogain") if r["role"] == "purpose"} == {"SoftmaxWithInfogainLoss"}
    assert metrics(doc, "infogain") == [("purpose", "recall of the minority digits"), ("check", "accuracy"),
                                        ("trade-off", "recall of the other digits")]
    assert figures(doc, "infogain") == {"infogain/curves.png", "infogain/recall_per_class.png"}


def test_the_baseline_is_native_softmax_with_loss(demo_run):
    out = demo_run[0]
    base = layers(out / "infogain" / "baseline" / "train_val.prototxt")
    assert base["loss"].type == "SoftmaxWithLoss" and not base["loss"].HasField("python_param")
    assert layers(out / "infogain" / "ours" / "train_val.prototxt")["loss"].python_param.layer == \
        "SoftmaxWithInfogainLoss"
