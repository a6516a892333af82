"""The sigmoid family's part of `caffe-losses demo` (the shared small run: tests/conftest.py)."""

from caffe.proto import caffe_pb2

from demo_run import figures, layers, metrics, rows


def test_rows_and_figures(demo_run):
    _, _, doc = demo_run
    assert {r["loss"] for r in rows(doc, "sigmoid") if r["role"] == "purpose"} == \
        {"WeightedSigmoidCrossEntropyLoss"}
    assert metrics(doc, "sigmoid") == 2 * [("purpose", "average precision"), ("check", "F1 at sigmoid > 0.5"),
                                           ("trade-off", "recall at sigmoid > 0.5"),
                                           ("trade-off", "precision at sigmoid > 0.5")]
    assert figures(doc, "sigmoid") == {"sigmoid/curves.png", "sigmoid/precision_recall.png",
                                       "sigmoid/edge_maps.png"}


def test_the_baselines_are_native_sigmoid_cross_entropy(demo_run):
    out = demo_run[0]
    for task in ("sigmoid_edges", "sigmoid_multilabel"):
        base = layers(out / "sigmoid" / task / "baseline" / "train_val.prototxt")
        assert base["loss"].type == "SigmoidCrossEntropyLoss" and not base["loss"].HasField("python_param")
    loss = layers(out / "sigmoid" / "sigmoid_edges" / "baseline" / "train_val.prototxt")["loss"]
    assert caffe_pb2.LossParameter.NormalizationMode.Name(loss.loss_param.normalization) == "VALID"
