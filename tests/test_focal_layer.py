"""SigmoidFocalLoss and SoftmaxFocalLoss inside real Caffe nets (float32): gradients, equality
with the native layers in the same net, bad input."""

import textwrap

import numpy as np
import pytest

from caffe_losses.losses.focal import core
from caffe_losses.glue.params import load_yaml
from caffe_losses.glue.testing import check_net_gradient, layer_net, net_from_text

RNG = np.random.RandomState(2021)


def dims(shape):
    return " ".join(f"dim: {d}" for d in shape)


# ---------------------------------------------------------------------------
# In-net gradient checks (Caffe's GradientChecker, float32, loss_weight 2)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("param_str", [
    "", "{gamma: 0.5, alpha: none}", "{gamma: 0, alpha: 0.75, normalization: FULL}",
    "{gamma: 3, ignore_label: -1, normalization: POSITIVES}",
    "{gamma: 1, alpha: 0.5, ignore_label: 255, normalization: NONE}",
    "{gamma: 2, normalization: BATCH_SIZE}",
])
def test_sigmoid_focal_in_net_gradient(param_str):
    shape = (3, 2, 3, 2)
    net = layer_net("caffe_losses", "SigmoidFocalLoss", {"scores": shape, "targets": shape},
                    param_str=param_str, loss_weight=2)
    x = (RNG.randn(*shape) * 2).astype(np.float32)
    t = (RNG.rand(*shape) < 0.3).astype(np.float32)
    t[RNG.rand(*shape) < 0.2] = 0.4
    for ign in (-1, 255):
        if f"ignore_label: {ign}" in param_str:
            t[RNG.rand(*shape) < 0.2] = ign
    check_net_gradient(net, {"scores": x, "targets": t}, wrt=["scores"], stepsize=1e-2, threshold=1e-2)
    kw = {k: (None if v == "none" else v) for k, v in (load_yaml(param_str) or {}).items()}
    net.forward()                 # the layer's loss is the core's (float64 here)
    expected = core.sigmoid_focal_forward(x.astype(np.float64), t, **kw)[0]
    assert float(net.blobs["loss"].data[0]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("shape, label_shape, param_str", [
    ((4, 5), (4,), ""),
    ((2, 3, 3, 2), (2, 1, 3, 2), "{gamma: 0.5, alpha: [0.25, 1, 2], ignore_label: 255}"),
    ((2, 3, 4), (2, 3), "{axis: -1, gamma: 1, normalization: FULL}"),
    ((3, 4, 2), (3, 2), "{gamma: 3, alpha: 0.25, normalization: BATCH_SIZE}"),
    ((3, 4), (3,), "{gamma: 2, normalization: NONE}"),
])
def test_softmax_focal_in_net_gradient(shape, label_shape, param_str):
    net = layer_net("caffe_losses", "SoftmaxFocalLoss", {"scores": shape, "label": label_shape},
                    param_str=param_str, loss_weight=2)
    x = (RNG.randn(*shape) * 2).astype(np.float32)
    axis = -1 if "axis: -1" in param_str else 1
    y = RNG.randint(0, shape[axis], label_shape).astype(np.float32)
    if "255" in param_str:
        y.reshape(-1)[:3] = 255
    check_net_gradient(net, {"scores": x, "label": y}, wrt=["scores"], stepsize=1e-2, threshold=1e-2)


# ---------------------------------------------------------------------------
# SoftmaxFocalLoss(gamma 0, alpha 1) == native SoftmaxWithLoss, in one net
# ---------------------------------------------------------------------------

def softmax_pair_net(x_shape, y_shape, param_str, loss_param, *, prob=False, weight=2):
    """Ours and native SoftmaxWithLoss fed the same blobs through Splits (each keeps its own diff).

    With ``prob``, our second top is compared with a native ``Softmax`` layer's output (native
    ``SoftmaxWithLoss`` with two tops and a loss_weight per top aborts: its inner Softmax layer is
    set up with the two weights and one top).
    """
    axis = f"softmax_param {{ axis: {axis_of(param_str)} }}" if "axis" in param_str else ""
    ours_prob = ' top: "ours_prob" loss_weight: 0' if prob else ""
    return net_from_text(textwrap.dedent(f"""
        force_backward: true
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {dims(x_shape)} }} }} }}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ {dims(y_shape)} }} }} }}
        layer {{ name: "sx" type: "Split" bottom: "x" top: "x_ours" top: "x_native" top: "x_soft" }}
        layer {{ name: "sy" type: "Split" bottom: "y" top: "y_ours" top: "y_native" }}
        layer {{ name: "ours" type: "Python" bottom: "x_ours" bottom: "y_ours" top: "ours"
                loss_weight: {weight}{ours_prob}
                python_param {{ module: "caffe_losses" layer: "SoftmaxFocalLoss" param_str: "{param_str}" }} }}
        layer {{ name: "native" type: "SoftmaxWithLoss" bottom: "x_native" bottom: "y_native"
                top: "native" loss_weight: {weight} {axis}
                {"loss_param { " + loss_param + " }" if loss_param.strip() else ""} }}
        layer {{ name: "soft" type: "Softmax" bottom: "x_soft" top: "native_prob" {axis} }}
    """))


def axis_of(param_str):
    return int(param_str.split("axis:")[1].split(",")[0].split("}")[0])


SOFTMAX_NATIVE = [
    # (shape, label shape, our param_str, native loss_param)
    ((4, 5), (4,), "{gamma: 0, alpha: 1}", ""),
    ((2, 3, 4, 3), (2, 1, 4, 3), "{gamma: 0, alpha: 1}", ""),
    ((2, 3, 4, 3), (2, 1, 4, 3), "{gamma: 0, alpha: 1, normalization: FULL}", "normalization: FULL"),
    ((2, 3, 4, 3), (2, 1, 4, 3), "{gamma: 0, alpha: 1, normalization: VALID, ignore_label: 255}",
     "normalization: VALID ignore_label: 255"),
    ((2, 3, 4, 3), (2, 1, 4, 3), "{gamma: 0, alpha: 1, normalization: FULL, ignore_label: 255}",
     "normalization: FULL ignore_label: 255"),
    ((2, 3, 4, 3), (2, 1, 4, 3), "{gamma: 0, alpha: 1, normalization: BATCH_SIZE, ignore_label: 255}",
     "normalization: BATCH_SIZE ignore_label: 255"),
    ((2, 3, 4, 3), (2, 1, 4, 3), "{gamma: 0, alpha: 1, normalization: NONE, ignore_label: 0}",
     "normalization: NONE ignore_label: 0"),
    ((2, 4, 3), (2, 4), "{gamma: 0, alpha: 1, axis: 2}", ""),
    ((2, 4, 3), (2, 4), "{gamma: 0, alpha: 1, axis: -1, normalization: BATCH_SIZE}",
     "normalization: BATCH_SIZE"),
    ((3, 2, 5, 4), (3, 2, 4), "{gamma: 0, alpha: 1, axis: 2, ignore_label: 1}", "ignore_label: 1"),
]


@pytest.mark.parametrize("prob", [False, True])
@pytest.mark.parametrize("shape, label_shape, param_str, loss_param", SOFTMAX_NATIVE)
def test_softmax_focal_gamma0_alpha1_equals_native_softmax_with_loss(shape, label_shape, param_str,
                                                                      loss_param, prob):
    net = softmax_pair_net(shape, label_shape, param_str, loss_param, prob=prob)
    axis = axis_of(param_str) if "axis" in param_str else 1
    x = (RNG.randn(*shape) * 5).astype(np.float32)
    x.reshape(-1)[0] = 60.0                                    # a confident position too
    y = RNG.randint(0, shape[axis], label_shape).astype(np.float32)
    if "ignore_label: 255" in param_str:
        y.reshape(-1)[RNG.rand(y.size) < 0.3] = 255
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = y
    net.forward()
    net.backward()
    ours, native = float(net.blobs["ours"].data[0]), float(net.blobs["native"].data)
    assert ours == pytest.approx(native, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(net.blobs["x_ours"].diff, net.blobs["x_native"].diff, rtol=1e-4, atol=1e-7)
    assert np.any(net.blobs["x_ours"].diff != 0)
    if prob:
        np.testing.assert_allclose(net.blobs["ours_prob"].data, net.blobs["native_prob"].data,
                                   rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# SigmoidFocalLoss(gamma 0, alpha none) == native SigmoidCrossEntropyLoss, in one net
# ---------------------------------------------------------------------------

def sigmoid_pair_net(shape, param_str, loss_param, weight=2):
    return net_from_text(textwrap.dedent(f"""
        force_backward: true
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {dims(shape)} }} }} }}
        layer {{ name: "t" type: "Input" top: "t" input_param {{ shape {{ {dims(shape)} }} }} }}
        layer {{ name: "sx" type: "Split" bottom: "x" top: "x_ours" top: "x_native" }}
        layer {{ name: "st" type: "Split" bottom: "t" top: "t_ours" top: "t_native" }}
        layer {{ name: "ours" type: "Python" bottom: "x_ours" bottom: "t_ours" top: "ours"
                python_param {{ module: "caffe_losses" layer: "SigmoidFocalLoss" param_str: "{param_str}" }}
                loss_weight: {weight} }}
        layer {{ name: "native" type: "SigmoidCrossEntropyLoss" bottom: "x_native" bottom: "t_native"
                top: "native" loss_weight: {weight}
                {"loss_param { " + loss_param + " }" if loss_param else ""} }}
    """))


# The native layer's default is BATCH_SIZE (ours VALID): each side is given the mode explicitly.
# Native ignores where int(t) == ignore_label (truncated): they agree for targets in [0, 1] with an
# ignore label outside [0, 1], and for 0/1 targets with any ignore label.
SIGMOID_NATIVE = [
    ("{gamma: 0, alpha: none, normalization: BATCH_SIZE}", "", "soft"),
    ("{gamma: 0, alpha: none}", "normalization: VALID", "soft"),
    ("{gamma: 0, alpha: none, normalization: FULL}", "normalization: FULL", "soft"),
    ("{gamma: 0, alpha: none, normalization: NONE}", "normalization: NONE", "soft"),
    ("{gamma: 0, alpha: none, ignore_label: 255}", "normalization: VALID ignore_label: 255", "soft"),
    ("{gamma: 0, alpha: none, ignore_label: -1, normalization: FULL}",
     "normalization: FULL ignore_label: -1", "soft"),
    ("{gamma: 0, alpha: none, ignore_label: 255, normalization: BATCH_SIZE}", "ignore_label: 255", "soft"),
    ("{gamma: 0, alpha: none, ignore_label: 0, normalization: VALID}",
     "normalization: VALID ignore_label: 0", "hard"),
]


@pytest.mark.parametrize("param_str, loss_param, kind", SIGMOID_NATIVE)
def test_sigmoid_focal_gamma0_alpha_none_equals_native_sigmoid_cross_entropy(param_str, loss_param, kind):
    shape = (4, 3, 5, 2)
    net = sigmoid_pair_net(shape, param_str, loss_param)
    x = (RNG.randn(*shape) * 4).astype(np.float32)
    t = RNG.rand(*shape).astype(np.float32) if kind == "soft" else (RNG.rand(*shape) < 0.3).astype(np.float32)
    for ign in (255, -1):
        if f"ignore_label: {ign}" in param_str:
            t[RNG.rand(*shape) < 0.25] = ign
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t
    net.forward()
    net.backward()
    assert float(net.blobs["ours"].data[0]) == pytest.approx(float(net.blobs["native"].data), rel=1e-5)
    np.testing.assert_allclose(net.blobs["x_ours"].diff, net.blobs["x_native"].diff, rtol=1e-4, atol=1e-7)


def test_sigmoid_focal_positives_normalization_in_net():
    shape = (2, 6)
    net = layer_net("caffe_losses", "SigmoidFocalLoss", {"scores": shape, "targets": shape},
                    param_str="{normalization: POSITIVES}", loss_weight=1)
    none = layer_net("caffe_losses", "SigmoidFocalLoss", {"scores": shape, "targets": shape},
                     param_str="{normalization: NONE}", loss_weight=1)
    x = RNG.randn(*shape).astype(np.float32)
    t = np.zeros(shape, np.float32)
    t[0, :3] = 1
    t[1, 0] = 0.5                                                # soft: not a positive
    for n in (net, none):
        n.blobs["scores"].data[...] = x
        n.blobs["targets"].data[...] = t
        n.forward()
    assert float(net.blobs["loss"].data[0]) == pytest.approx(float(none.blobs["loss"].data[0]) / 3, rel=1e-6)


@pytest.mark.parametrize("layer, shapes", [
    ("SigmoidFocalLoss", {"scores": (2, 3), "targets": (2, 3)}),
    ("SoftmaxFocalLoss", {"scores": (2, 3), "label": (2,)}),
])
def test_logits_of_1e4_in_net_are_finite(layer, shapes):
    net = layer_net("caffe_losses", layer, shapes, param_str="{gamma: 0.5}", loss_weight=1)
    x = np.array([[1e4, -1e4, 1e4], [-1e4, 1e4, -1e4]], np.float32)
    net.blobs["scores"].data[...] = x
    other = list(shapes)[1]
    net.blobs[other].data[...] = (np.array([[1, 1, 0], [0, 0, 1]], np.float32) if layer.startswith("Sigmoid")
                                  else np.array([1, 0], np.float32))
    net.forward()
    net.backward()
    assert np.isfinite(net.blobs["loss"].data[0]) and net.blobs["loss"].data[0] > 1000
    assert np.all(np.isfinite(net.blobs["scores"].diff))


# ---------------------------------------------------------------------------
# Bad input: refused with the layer's name and the key or bottom
# ---------------------------------------------------------------------------

def build(layer, shapes, param_str, tops=("loss",)):
    return layer_net("caffe_losses", layer, shapes, param_str=param_str, tops=tops, name="focal")


SIG = {"scores": (2, 3), "targets": (2, 3)}
SOFT = {"scores": (2, 3), "label": (2,)}


@pytest.mark.parametrize("layer, shapes, param_str, message", [
    ("SigmoidFocalLoss", SIG, "{gama: 2}", r"unknown key 'gama' in param_str. Did you mean 'gamma'\?"),
    ("SigmoidFocalLoss", SIG, "{gamma: -1}", r"'gamma' must be >= 0. Received: gamma=-1"),
    ("SigmoidFocalLoss", SIG, "{alpha: 1.5}", r"'alpha' must be <= 1. Received: alpha=1.5"),
    ("SigmoidFocalLoss", SIG, "{alpha: [0.25, 0.5]}", r"'alpha' must be a number"),
    ("SigmoidFocalLoss", SIG, "{normalization: BATCH}", r"'normalization' must be one of VALID, FULL, "
                                                        r"BATCH_SIZE, NONE, POSITIVES"),
    ("SigmoidFocalLoss", SIG, "{gamma: 2", r"param_str is not valid YAML/JSON"),
    ("SoftmaxFocalLoss", SOFT, "{alpha: -1}", r"'alpha' must be >= 0"),
    ("SoftmaxFocalLoss", SOFT, "{normalization: POSITIVES}", r"'normalization' must be one of VALID, FULL, "
                                                             r"BATCH_SIZE, NONE"),
    ("SoftmaxFocalLoss", SOFT, "{alpha: [1, 2]}", r"'alpha' has 2 weight\(s\) but bottom 'scores' has 3"),
    ("SoftmaxFocalLoss", SOFT, "{axis: 2}", r"'axis' must be in \[-2, 2\)"),
    ("SoftmaxFocalLoss", SOFT, "{gamma: .nan}", r"'gamma' must be finite"),
    ("SigmoidFocalLoss", {"scores": (2, 3), "targets": (3, 2)}, "",
     r"bottom 'targets' must have the N of 'scores' \(2, 3\)"),
    ("SigmoidFocalLoss", {"scores": (2, 3), "targets": (2, 2)}, "",
     r"bottom 'targets' must have as many values as 'scores'"),
    ("SoftmaxFocalLoss", {"scores": (2, 3, 4), "label": (2,)}, "",
     r"bottom 'label' must hold one label per position of 'scores' \(2, 3, 4\)"),
])
def test_bad_settings_and_shapes_are_refused_naming_layer_and_key(layer, shapes, param_str, message):
    with pytest.raises(Exception, match=f"^{layer}: .*{message}"):
        build(layer, shapes, param_str)


def test_bad_bottom_counts():
    with pytest.raises(Exception, match=r"SoftmaxFocalLoss: expected 1 to 2 top\(s\)"):
        build("SoftmaxFocalLoss", SOFT, "", tops=("a", "b", "c"))
    with pytest.raises(Exception, match=r"SigmoidFocalLoss: expected 1 top\(s\)"):
        build("SigmoidFocalLoss", SIG, "", tops=("a", "b"))


@pytest.mark.parametrize("layer, shapes, values, message", [
    ("SigmoidFocalLoss", SIG, [[0, 1, 2], [0, 0, 0]], r"bottom 'targets' holds 2.0 at index \(0, 2\); "
                                                      r"expected values in \[0, 1\]"),
    ("SigmoidFocalLoss", SIG, [[0, 1, np.nan], [0, 0, 0]], r"bottom 'targets' holds nan"),
    ("SoftmaxFocalLoss", SOFT, [0, 3], r"bottom 'label' holds 3.0 at index \(1,\); expected integers in \[0, 3\)"),
    ("SoftmaxFocalLoss", SOFT, [0, 1.5], r"bottom 'label' holds 1.5"),
    ("SoftmaxFocalLoss", SOFT, [-1, 0], r"bottom 'label' holds -1.0"),
])
def test_bad_labels_are_refused_naming_layer_and_bottom(layer, shapes, values, message):
    net = build(layer, shapes, "")
    net.blobs["scores"].data[...] = RNG.randn(*shapes["scores"])
    net.blobs[list(shapes)[1]].data[...] = np.array(values, np.float32)
    with pytest.raises(ValueError, match=f"^{layer}: {message}.*\\[layer 'focal'\\]"):
        net.forward()


@pytest.mark.parametrize("layer, shapes", [("SigmoidFocalLoss", SIG), ("SoftmaxFocalLoss", SOFT)])
def test_non_finite_scores_are_named(layer, shapes):
    net = build(layer, shapes, "")
    x = np.zeros(shapes["scores"], np.float32)
    x[1, 2] = np.inf
    net.blobs["scores"].data[...] = x
    net.blobs[list(shapes)[1]].data[...] = 0
    with pytest.raises(ValueError, match=f"^{layer}: bottom 'scores' holds a non-finite value inf at index \\(1, 2\\)"):
        net.forward()


# ---------------------------------------------------------------------------
# Bottoms of other shapes with the same count give the same loss and gradient
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layer, shapes, other", [
    ("SigmoidFocalLoss", {"scores": (2, 3, 4), "targets": (2, 3, 4)}, (2, 12)),
    ("SigmoidFocalLoss", {"scores": (2, 3, 4), "targets": (2, 3, 4)}, (2, 1, 3, 4)),
    ("SoftmaxFocalLoss", {"scores": (2, 3, 4, 5), "label": (2, 1, 4, 5)}, (2, 4, 5)),
    ("SoftmaxFocalLoss", {"scores": (2, 3, 4, 5), "label": (2, 1, 4, 5)}, (2, 20)),
])
def test_bottoms_of_another_shape_with_the_same_count(layer, shapes, other):
    second = list(shapes)[1]
    x = (RNG.randn(*shapes["scores"]) * 2).astype(np.float32)
    if layer == "SigmoidFocalLoss":
        y = (RNG.rand(*shapes[second]) < 0.3).astype(np.float32)
    else:
        y = RNG.randint(0, 3, shapes[second]).astype(np.float32)
    results = []
    for shape in (shapes[second], other):
        net = layer_net("caffe_losses", layer, {"scores": shapes["scores"], second: shape},
                        param_str="{gamma: 1.5}", loss_weight=2)
        net.blobs["scores"].data[...] = x
        net.blobs[second].data[...] = y.reshape(shape)
        net.forward()
        net.backward()
        results.append((float(net.blobs["loss"].data[0]), net.blobs["scores"].diff.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
