"""The dice family's part of `caffe-losses demo` (the shared small run: tests/conftest.py)."""

from caffe.proto import caffe_pb2

from demo_run import figures, layers, metrics, rows


def test_rows_and_figures(demo_run):
    _, _, doc = demo_run
    assert {r["loss"] for r in rows(doc, "dice") if r["role"] == "purpose"} == {"DiceLoss"}
    assert metrics(doc, "dice") == [("purpose", "mean Dice of the small classes"), ("check", "pixel accuracy"),
                                    ("trade-off", "Dice of the large rectangles")]
    assert figures(doc, "dice") == {"dice/curves.png"}


def test_the_baseline_is_native_softmax_with_loss_ignoring_the_border(demo_run):
    out = demo_run[0]
    base = layers(out / "dice" / "baseline" / "train_val.prototxt")["loss"]
    assert base.type == "SoftmaxWithLoss" and not base.HasField("python_param")
    assert base.loss_param.ignore_label == 255
    assert caffe_pb2.LossParameter.NormalizationMode.Name(base.loss_param.normalization) == "VALID"
    assert layers(out / "dice" / "ours" / "train_val.prototxt")["loss"].python_param.layer == "DiceLoss"
