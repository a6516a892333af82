"""The center family's part of `caffe-losses demo` (the shared small run: tests/conftest.py)."""

from demo_run import figures, layers, metrics, rows


def test_rows_and_figures(demo_run):
    _, _, doc = demo_run
    assert {r["loss"] for r in rows(doc, "center") if r["role"] == "purpose"} == {"CenterLoss (+ SoftmaxWithLoss)"}
    assert metrics(doc, "center") == [("purpose", "intra/inter distance ratio of the 2-D features"),
                                      ("check", "accuracy")]
    assert figures(doc, "center") == {"center/curves.png", "center/features.png"}


def test_the_baseline_is_the_same_net_without_the_center_loss(demo_run):
    out = demo_run[0]
    ours = layers(out / "center" / "ours" / "train_val.prototxt")
    base = layers(out / "center" / "baseline" / "train_val.prototxt")
    assert set(ours) - set(base) == {"center_loss"} and ours["center_loss"].python_param.layer == "CenterLoss"
