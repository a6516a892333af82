"""WeightedSigmoidCrossEntropyLoss inside real Caffe nets (float32)."""

import textwrap

import numpy as np
import pytest

from caffe_losses.losses.sigmoid.core import weighted_sigmoid_cross_entropy_backward as core_backward, weighted_sigmoid_cross_entropy_forward as core_forward
from caffe_losses.glue.testing import check_net_gradient, layer_net, net_from_text

LAYER = "WeightedSigmoidCrossEntropyLoss"
RNG = np.random.RandomState(7)


def ours_net(shapes, param_str="", loss_weight=2):
    return layer_net("caffe_losses", LAYER, shapes, param_str=param_str, loss_weight=loss_weight)


def pair_net(x_shape, t_shape, param_str="", loss_param="", weight=2):
    """Ours and native SigmoidCrossEntropyLoss fed the same Input blobs through Splits.

    Each Split top keeps its own diff, so after backward ``x_ours`` holds our
    gradient and ``x_native`` the native one (both times ``weight``).
    """
    dims = lambda s: " ".join(f"dim: {d}" for d in s)  # noqa: E731
    return net_from_text(textwrap.dedent(f"""
        force_backward: true
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {dims(x_shape)} }} }} }}
        layer {{ name: "t" type: "Input" top: "t" input_param {{ shape {{ {dims(t_shape)} }} }} }}
        layer {{ name: "sx" type: "Split" bottom: "x" top: "x_ours" top: "x_native" }}
        layer {{ name: "st" type: "Split" bottom: "t" top: "t_ours" top: "t_native" }}
        layer {{ name: "ours" type: "Python" bottom: "x_ours" bottom: "t_ours" top: "ours"
                python_param {{ module: "caffe_losses" layer: "{LAYER}" param_str: "{param_str}" }}
                loss_weight: {weight} }}
        layer {{ name: "native" type: "SigmoidCrossEntropyLoss" bottom: "x_native"
                bottom: "t_native" top: "native" loss_weight: {weight}
                {"loss_param { " + loss_param + " }" if loss_param else ""} }}
    """))


def run_pair(net, x, t):
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t
    net.forward()
    net.backward()
    assert net.blobs["native"].data.shape == ()          # native losses have a 0-d top
    assert net.blobs["ours"].data.shape == (1,)
    return (float(net.blobs["ours"].data[0]), float(net.blobs["native"].data),
            net.blobs["x_ours"].diff.copy(), net.blobs["x_native"].diff.copy())


def binary(shape, p=0.3):
    return (RNG.rand(*shape) < p).astype(np.float32)


# --- equality with Caffe's native SigmoidCrossEntropyLoss (weights 1) --------

NATIVE_CASES = [
    # (our param_str, native loss_param); None = key left out on both sides
    ("", ""),                                                          # both default: BATCH_SIZE
    ("{normalization: FULL}", "normalization: FULL"),
    ("{normalization: VALID}", "normalization: VALID"),
    ("{normalization: BATCH_SIZE}", "normalization: BATCH_SIZE"),
    ("{normalization: NONE}", "normalization: NONE"),
    ("{ignore_label: 255}", "ignore_label: 255"),
    ("{ignore_label: 255, normalization: VALID}", "ignore_label: 255 normalization: VALID"),
    ("{ignore_label: -1, normalization: FULL}", "ignore_label: -1 normalization: FULL"),
    ("{ignore_label: 255, normalization: NONE, pos_weight: 1, neg_weight: 1}",
     "ignore_label: 255 normalization: NONE"),
]


@pytest.mark.parametrize("param_str, loss_param", NATIVE_CASES)
def test_equals_native_with_weights_one(param_str, loss_param):
    shape = (4, 3, 5, 2)
    x = (RNG.randn(*shape) * 4).astype(np.float32)
    t = RNG.rand(*shape).astype(np.float32)                    # soft targets
    ign = 255 if "255" in param_str else (-1 if "-1" in param_str else None)
    if ign is not None:
        t[RNG.rand(*shape) < 0.25] = ign
    net = pair_net(shape, shape, param_str, loss_param)
    ours, native, g_ours, g_native = run_pair(net, x, t)
    assert ours == pytest.approx(native, rel=2e-6)
    # p - t in float32: the two sigmoids (tanh form there, exp(-softplus(-x)) here)
    # differ by an ulp of p (6e-8), times loss weight / N = 0.5
    np.testing.assert_allclose(g_ours, g_native, rtol=1e-5, atol=1e-7)
    if ign is not None:
        assert np.all(g_ours[t == ign] == 0) and np.all(g_native[t == ign] == 0)


@pytest.mark.parametrize("ign", [0, 1])
def test_equals_native_for_0_1_targets_with_ignore_label_inside_0_1(ign):
    # the native layer compares int(t) with ignore_label; for 0/1 targets that
    # is t == ignore_label, as here
    x = (RNG.randn(4, 6) * 3).astype(np.float32)
    t = binary((4, 6), 0.4)
    ours, native, g_ours, g_native = run_pair(
        pair_net((4, 6), (4, 6), f"{{ignore_label: {ign}, normalization: VALID}}",
                 f"ignore_label: {ign} normalization: VALID"), x, t)
    assert ours == pytest.approx(native, rel=2e-6)
    np.testing.assert_allclose(g_ours, g_native, rtol=1e-5, atol=1e-7)
    assert np.all(g_ours[t == ign] == 0)


def test_equals_native_for_n_by_c_targets_shaped_differently():
    # multi-label: scores N x C, targets N x C x 1 x 1 (same count, same N)
    x = (RNG.randn(6, 5) * 3).astype(np.float32)
    t = binary((6, 5, 1, 1))
    ours, native, g_ours, g_native = run_pair(pair_net((6, 5), (6, 5, 1, 1)), x, t)
    assert ours == pytest.approx(native, rel=2e-6)
    np.testing.assert_allclose(g_ours, g_native, rtol=1e-5, atol=1e-7)


def test_equals_native_at_logits_1e4():
    # Both are stable; at +-1e4 every element is either 0 or exactly 1e4.
    x = np.array([[-1e4, 1e4, -1e4, 1e4], [1e4, -1e4, 0.0, 3.0]], np.float32)
    t = np.array([[1, 0, 0, 1], [1, 0, 1, 0]], np.float32)
    ours, native, g_ours, g_native = run_pair(pair_net((2, 4), (2, 4), "{normalization: NONE}",
                                                       "normalization: NONE"), x, t)
    want = 2e4 + np.log(2) + (3 + np.log1p(np.exp(-3)))          # by hand
    assert ours == pytest.approx(want, rel=1e-6) and native == pytest.approx(want, rel=1e-6)
    assert np.isfinite(g_ours).all()
    np.testing.assert_allclose(g_ours, g_native, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(g_ours[0], 2 * np.array([-1, 1, 0, 0], np.float32))


# --- gradients in the net, loss_weight 2 --------------------------------------

GRAD_CASES = [
    ((4, 3), "{pos_weight: 3, neg_weight: 0.5}", "soft", None),
    ((4, 3), "{pos_weight: [1, 5, 0.25], normalization: NONE}", "binary", None),
    ((3, 1, 4, 3), "{cls_weight: 7, ignore_label: 255, normalization: VALID}", "binary", 255),
    ((3, 1, 4, 3), "{balance: auto, ignore_label: 255}", "binary", 255),
    ((3, 2, 2, 2), "{balance: auto, pos_weight: [2, 1], neg_weight: 1.1, normalization: FULL}",
     "soft", None),
]


@pytest.mark.parametrize("shape, param_str, targets, ign", GRAD_CASES)
def test_gradient_in_net_with_loss_weight_2(shape, param_str, targets, ign):
    x = (RNG.randn(*shape) * 2).astype(np.float32)
    t = RNG.rand(*shape).astype(np.float32) if targets == "soft" else binary(shape, 0.4)
    if ign is not None:
        t.flat[::5] = ign
    net = ours_net({"scores": shape, "target": shape}, param_str)
    check_net_gradient(net, {"scores": x, "target": t}, wrt=["scores"])
    # and the target gets a zero diff under force_backward
    assert np.all(net.blobs["target"].diff == 0)


def test_layer_equals_core_and_scales_by_loss_weight():
    shape = (4, 3, 2)
    x = (RNG.randn(*shape) * 3).astype(np.float32)
    t = RNG.rand(*shape).astype(np.float32)
    kw = dict(pos_weight=[2.0, 0.5, 8.0], neg_weight=1.5, normalization="FULL")
    net = ours_net({"scores": shape, "target": shape},
                   "{pos_weight: [2, 0.5, 8], neg_weight: 1.5, normalization: FULL}", loss_weight=2)
    net.blobs["scores"].data[...] = x
    net.blobs["target"].data[...] = t
    net.forward()
    net.backward()
    loss, cache = core_forward(x.astype(np.float64), t.astype(np.float64), **kw)
    assert float(net.blobs["loss"].data[0]) == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(net.blobs["scores"].diff, 2 * core_backward(cache), rtol=1e-5, atol=1e-7)


def test_extreme_logits_in_net_are_finite_and_exact():
    shape = (2, 3)
    x = np.array([[-1e4, 1e4, -1e4], [1e4, -1e4, 1e4]], np.float32)
    t = np.array([[1, 0, 0], [1, 0.5, 0]], np.float32)
    net = ours_net({"scores": shape, "target": shape}, "{pos_weight: [3, 1, 2], normalization: NONE}")
    net.blobs["scores"].data[...] = x
    net.blobs["target"].data[...] = t
    net.forward()
    net.backward()
    # by hand: 3*1e4 (missed positive) + 1e4 (false positive, w_n 1) + 0 + 0
    #          + half-positive at -1e4 in channel 1: 0.5 * 1 * 1e4 + 1e4 (false positive)
    assert float(net.blobs["loss"].data[0]) == 3e4 + 1e4 + 0.5e4 + 1e4
    # gradient (w_p t + w_n (1 - t)) p - w_p t, p exactly 0 or 1, times loss weight 2
    np.testing.assert_array_equal(net.blobs["scores"].diff,
                                  2 * np.array([[-3, 1, 0], [0, -0.5, 1]], np.float32))


def test_reshape_between_batches_keeps_results_right():
    net = ours_net({"scores": (2, 3), "target": (2, 3)}, "{pos_weight: [1, 2, 3]}", loss_weight=1)
    for n in (2, 5, 1):
        net.blobs["scores"].reshape(n, 3)
        net.blobs["target"].reshape(n, 3)
        net.reshape()
        x = RNG.randn(n, 3).astype(np.float32)
        t = binary((n, 3))
        net.blobs["scores"].data[...] = x
        net.blobs["target"].data[...] = t
        net.forward()
        net.backward()
        loss, cache = core_forward(x.astype(np.float64), t.astype(np.float64), pos_weight=[1, 2, 3])
        assert float(net.blobs["loss"].data[0]) == pytest.approx(loss, rel=1e-6)
        np.testing.assert_allclose(net.blobs["scores"].diff, core_backward(cache), rtol=1e-5, atol=1e-7)


# --- bad input ------------------------------------------------------------------

def test_targets_outside_0_1_are_rejected_with_the_index():
    net = ours_net({"scores": (2, 3), "target": (2, 3)}, "{ignore_label: 255}")
    t = np.zeros((2, 3), np.float32)
    t[1, 2] = 2.0
    t[0, 0] = 255
    net.blobs["target"].data[...] = t
    with pytest.raises(ValueError, match=r"^WeightedSigmoidCrossEntropyLoss: bottom 'target' holds 2.0 at "
                                         r"index \(1, 2\); expected values in \[0, 1\] or the "
                                         r"ignore_label 255 \(1 bad value"):
        net.forward()
    t[1, 2] = -0.5
    net.blobs["target"].data[...] = t
    with pytest.raises(ValueError, match=r"holds -0.5 at index \(1, 2\)"):
        net.forward()


def test_non_finite_scores_are_named():
    net = ours_net({"scores": (2, 3), "target": (2, 3)})
    net.blobs["scores"].data[0, 1] = np.nan
    net.blobs["target"].data[...] = 0
    with pytest.raises(ValueError, match=r"^WeightedSigmoidCrossEntropyLoss: bottom 'scores' holds a "
                                         r"non-finite value nan at index \(0, 1\)"):
        net.forward()


@pytest.mark.parametrize("param_str, message", [
    ("{pos_weight: -1}", r"'pos_weight' must be >= 0\. Received: pos_weight=-1"),
    ("{pos_weight: [1, -2, 3]}", r"'pos_weight' must be >= 0\. Received: pos_weight=\[1, -2, 3\]"),
    ("{cls_weight: -100}", r"'pos_weight' must be >= 0\. Received: pos_weight=-100"),
    ("{neg_weight: -0.5}", r"'neg_weight' must be >= 0\. Received: neg_weight=-0.5"),
    ("{pos_weight: [1, 2]}", r"'pos_weight' has 2 weight\(s\) but bottom 'scores' \(4, 3\) has 3 "
                             r"channel\(s\) along axis 1: expected one weight per channel"),
    ("{pos_weight: abc}", r"'pos_weight' must be a number or a list of numbers"),
    ("{pos_wieght: 3}", r"unknown key 'pos_wieght' in param_str\. Did you mean 'pos_weight'\? "
                        r"Valid keys: pos_weight, neg_weight, balance, ignore_label, normalization"),
    ("{pos_weight: 3, cls_weight: 3}", r"'pos_weight' given twice in param_str"),
    ("{balance: maybe}", r"'balance' must be one of none, auto\. Received: balance='maybe'"),
    ("{normalization: MEAN}", r"'normalization' must be one of FULL, VALID, BATCH_SIZE, NONE"),
    ("{ignore_label: abc}", r"'ignore_label' must be an integer"),
    ("[1, 2]", r"param_str must be a mapping"),
])
def test_bad_param_str(param_str, message):
    with pytest.raises((ValueError, TypeError), match=r"^WeightedSigmoidCrossEntropyLoss: " + message):
        ours_net({"scores": (4, 3), "target": (4, 3)}, param_str)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"^WeightedSigmoidCrossEntropyLoss: bottom 'target' must have "
                                         r"as many values as 'scores' \(4, 3\): expected 12, got 10"):
        ours_net({"scores": (4, 3), "target": (5, 2)})
    with pytest.raises(ValueError, match=r"bottom 'target' must have the N of 'scores' \(4, 3\): "
                                         r"expected 4 samples, got 2 \(2, 6\)"):
        ours_net({"scores": (4, 3), "target": (2, 6)})
    with pytest.raises(ValueError, match=r"expected 2 bottom\(s\) \(scores, target\), got 1"):
        layer_net("caffe_losses", LAYER, {"scores": (4, 3)}, loss_weight=1)


def test_balance_accepts_booleans():
    x = RNG.randn(2, 3).astype(np.float32)
    t = np.array([[1, 0, 0], [1, 1, 0]], np.float32)
    values = {}
    for text in ("{balance: false}", "{balance: none}", "{balance: true}", "{balance: auto}"):
        net = ours_net({"scores": (2, 3), "target": (2, 3)}, text)
        net.blobs["scores"].data[...] = x
        net.blobs["target"].data[...] = t
        net.forward()
        values[text] = float(net.blobs["loss"].data[0])
    assert values["{balance: false}"] == values["{balance: none}"]
    assert values["{balance: true}"] == values["{balance: auto}"] != values["{balance: none}"]


def test_layer_follows_shape_changes_and_checks_every_pass():
    # The layer skips re-validation while the shapes stay; a new shape
    # rebuilds the prepared loss; bad targets are caught on any pass.
    net = layer_net("caffe_losses", "WeightedSigmoidCrossEntropyLoss", {"scores": (4, 3), "target": (4, 3)},
                    param_str="{pos_weight: [2, 1, 0.5]}", loss_weight=1)
    kw = dict(pos_weight=[2.0, 1.0, 0.5])
    for shape in [(4, 3), (4, 3), (7, 3, 2), (2, 3)]:
        net.blobs["scores"].reshape(*shape)
        net.blobs["target"].reshape(*shape)
        x = (RNG.randn(*shape) * 4).astype(np.float32)
        t = (RNG.rand(*shape) < 0.5).astype(np.float32)
        net.blobs["scores"].data[...] = x
        net.blobs["target"].data[...] = t
        net.forward()
        net.backward()
        want, cache = core_forward(x.astype(np.float64), t.astype(np.float64), **kw)
        assert float(net.blobs["loss"].data[0]) == pytest.approx(want, rel=1e-5)
        np.testing.assert_allclose(net.blobs["scores"].diff, core_backward(cache), rtol=1e-4, atol=1e-6)
        assert np.all(net.blobs["target"].diff == 0)
    net.blobs["target"].data[1, 2] = 3.0
    with pytest.raises(ValueError, match=r"WeightedSigmoidCrossEntropyLoss: bottom 'target' holds 3.0 "
                                         r"at index \(1, 2\)"):
        net.forward()
    net.blobs["target"].reshape(3, 3)                  # a bad shape after good ones
    with pytest.raises(ValueError, match=r"WeightedSigmoidCrossEntropyLoss: bottom 'target' must have "
                                         r"as many values as 'scores'"):
        net.forward()
