"""The focal family's part of `caffe-losses demo` (the shared small run: tests/conftest.py)."""

from caffe.proto import caffe_pb2

from demo_run import figures, layers, metrics, rows


def test_rows_and_figures(demo_run):
    _, _, doc = demo_run
    assert [r["loss"] for r in rows(doc, "focal") if r["role"] == "purpose"] == \
        ["SigmoidFocalLoss", "SoftmaxFocalLoss"]
    assert metrics(doc, "focal") == 2 * [("purpose", "average precision of the rare class"),
                                         ("check", "F1 of the rare class at probability 0.5")]
    assert {r["baseline"] for r in rows(doc, "focal")} == {"SigmoidCrossEntropyLoss (native)",
                                                           "SoftmaxWithLoss (native)"}
    assert figures(doc, "focal") == {"focal/curves.png"}


def test_the_baselines_are_the_native_losses_in_the_same_nets(demo_run):
    out = demo_run[0]
    for task, native, ours in (("focal_digits_sigmoid", "SigmoidCrossEntropyLoss", "SigmoidFocalLoss"),
                               ("focal_digits_softmax", "SoftmaxWithLoss", "SoftmaxFocalLoss")):
        base = layers(out / "focal" / task / "baseline" / "train_val.prototxt")
        mine = layers(out / "focal" / task / "ours" / "train_val.prototxt")
        assert base["loss"].type == native and not base["loss"].HasField("python_param")
        assert mine["loss"].python_param.layer == ours
        assert caffe_pb2.LossParameter.NormalizationMode.Name(base["loss"].loss_param.normalization) == "VALID"
        assert list(base) == list(mine)                     # the same net otherwise (and the same prior)
        assert base["score"].convolution_param == mine["score"].convolution_param
