"""SmoothL1Loss, Expectation and MeanVarianceLoss: cores in float64, layers in real Caffe nets."""

import textwrap

import numpy as np
import pytest
import scipy.special

import caffe
from caffe_losses.losses.regression import core
from caffe_losses.glue.testing import check_gradient, check_net_gradient, layer_net, net_from_text

MOD = "caffe_losses"


def away_from_kink(rng, shape, sigma, w_in=None, margin=0.1, scale=2.0):
    """(pred, target) with every |w_in (pred - target)| at least ``margin`` from 1/sigma^2.

    Both regions are populated: half the differences are drawn inside the
    quadratic region, half beyond it.
    """
    b = 1.0 / sigma ** 2
    n = int(np.prod(shape))
    inside = rng.uniform(0, max(b - margin, 0), n)
    outside = rng.uniform(b + margin, b + margin + scale, n)
    mag = np.where(rng.rand(n) < 0.5, inside, outside)
    d = (mag * rng.choice([-1.0, 1.0], n)).reshape(shape)
    w = np.ones(shape) if w_in is None else w_in
    target = rng.randn(*shape)
    return target + d / w, target


def fast_rcnn_reference(a, b, w_in, w_out, sigma):
    """Transcription of Fast R-CNN's SmoothL1Forward/Backward kernels (float64).

    rbgirshick/caffe-fast-rcnn, faster-rcnn branch, smooth_L1_loss_layer.cu:
    diff = w_in * (a - b); val = |diff| < 1/sigma2 ? 0.5 diff^2 sigma2 : |diff| - 0.5/sigma2;
    loss = asum(w_out * val) / num; bottom_diff = sign * top_diff / num * f'(diff) * w_in * w_out.
    """
    s2 = sigma ** 2
    diff = w_in * (a - b)
    quad = np.abs(diff) < 1.0 / s2
    val = np.where(quad, 0.5 * diff * diff * s2, np.abs(diff) - 0.5 / s2)
    deriv = np.where(quad, s2 * diff, np.sign(diff))
    num = a.shape[0]
    return np.sum(np.abs(w_out * val)) / num, deriv * w_in * w_out / num


# ---------------------------------------------------------------------------
# Smooth L1: core
# ---------------------------------------------------------------------------

def test_smooth_l1_golden_values():
    # By hand, sigma 1, N = 4 (a 1-D blob: every element is a sample):
    # f(0) = 0, f(0.5) = 0.125, f(2) = 1.5, f(-3) = 2.5; sum 4.125, / 4 = 1.03125.
    loss, cache = core.smooth_l1_forward(np.array([0.0, 0.5, 2.0, -3.0]), np.zeros(4))
    assert loss == pytest.approx(1.03125, rel=1e-15)
    np.testing.assert_allclose(core.smooth_l1_backward(cache), [0, 0.125, 0.25, -0.25])
    # sigma 2: the bound is 1/4; f(0.1) = 0.5*4*0.01 = 0.02, f(1) = 1 - 0.125 = 0.875; N = 1.
    loss, _ = core.smooth_l1_forward(np.array([[0.1, 1.0]]), np.zeros((1, 2)), sigma=2.0)
    assert loss == pytest.approx(0.895, rel=1e-14)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_smooth_l1_equals_scipy_huber_and_fast_rcnn(sigma):
    rng = np.random.RandomState(1)
    a, b = rng.randn(6, 5) * 3, rng.randn(6, 5)
    w_in, w_out = rng.uniform(0.2, 2, (6, 5)), rng.uniform(0, 2, (6, 5))
    loss, cache = core.smooth_l1_forward(a, b, w_in, w_out, sigma=sigma)
    ref_loss, ref_grad = fast_rcnn_reference(a, b, w_in, w_out, sigma)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(core.smooth_l1_backward(cache), ref_grad, rtol=1e-12, atol=1e-15)
    # scipy's Huber loss with delta = 1/sigma^2 equals f / sigma^2 (PyTorch's beta form).
    d = w_in * (a - b)
    huber = scipy.special.huber(1.0 / sigma ** 2, d) * sigma ** 2
    assert loss == pytest.approx(np.sum(w_out * huber) / 6, rel=1e-12)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 3.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_smooth_l1_core_finite_differences(sigma, weighted):
    rng = np.random.RandomState(2)
    shape = (4, 3, 2)
    w_in = rng.uniform(0.5, 1.5, shape) if weighted else None
    w_out = rng.uniform(0.0, 2.0, shape) if weighted else None
    a, b = away_from_kink(rng, shape, sigma, w_in)
    for mode in ("BATCH_SIZE", "FULL", "NONE"):
        _, cache = core.smooth_l1_forward(a, b, w_in, w_out, sigma=sigma, normalization=mode)
        g = core.smooth_l1_backward(cache).copy()
        check_gradient(lambda x: core.smooth_l1_forward(x, b, w_in, w_out, sigma=sigma,
                                                        normalization=mode)[0], g, a, name="pred")
        check_gradient(lambda x: core.smooth_l1_forward(a, x, w_in, w_out, sigma=sigma,
                                                        normalization=mode)[0], -g, b, name="target")


def test_smooth_l1_normalizations():
    a, b = np.full((4, 5), 0.5), np.zeros((4, 5))   # f = 0.125 each, sum 2.5
    expected = {"BATCH_SIZE": 2.5 / 4, "FULL": 2.5 / 20, "VALID": 2.5 / 20, "NONE": 2.5}
    for mode, value in expected.items():
        assert core.smooth_l1_forward(a, b, normalization=mode)[0] == pytest.approx(value)


@pytest.mark.parametrize("which", ["inside_weights", "outside_weights"])
@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_smooth_l1_refuses_non_finite_weights(which, bad, shown):
    # NaN/inf weights: refused, naming bottom, index and value; any finite weight is valid
    # (issue 18: fast-rcnn accepts negative weights; tests/test_i18_smooth_l1_weights.py)
    w = np.ones((3, 2))
    w[2, 1] = bad
    kw = {which: w}
    with pytest.raises(ValueError, match=rf"^Own: bottom '{which}' holds {shown} at index \(2, 1\); "
                                         r"expected finite weights"):
        core.smooth_l1_forward(np.ones((3, 2)), np.zeros((3, 2)), owner="Own", **kw)
    for valid in (0.0, -0.5, -1e-30):
        w[2, 1] = valid
        loss, _ = core.smooth_l1_forward(np.ones((3, 2)), np.zeros((3, 2)), **kw)
        assert np.isfinite(loss)


def test_smooth_l1_layer_refuses_a_non_finite_weight_on_any_pass():
    net = smooth_net([(4, 3), (4, 3), (4, 3), (4, 3)])
    net.blobs["pred"].data[...] = 1
    net.blobs["inside_weights"].data[...] = 1
    net.blobs["outside_weights"].data[...] = 1
    net.forward()
    net.blobs["outside_weights"].data[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"^SmoothL1Loss: bottom 'outside_weights' holds nan at index "
                                         r"\(3, 0\); expected finite weights"):
        net.forward()


def test_smooth_l1_core_rejects_bad_sigma_and_counts():
    with pytest.raises(ValueError, match=r"'sigma' must be > 0\. Received: sigma=0"):
        core.smooth_l1_forward(np.zeros(3), np.zeros(3), sigma=0)
    with pytest.raises(ValueError, match=r"bottom 'target' must have as many values as 'pred'"):
        core.smooth_l1_forward(np.zeros(3), np.zeros(4))


# ---------------------------------------------------------------------------
# Smooth L1: the layer in real nets
# ---------------------------------------------------------------------------

def smooth_net(shapes, param_str="", loss_weight=2):
    names = ("pred", "target", "inside_weights", "outside_weights")
    return layer_net(MOD, "SmoothL1Loss", dict(zip(names, shapes)), param_str=param_str,
                     loss_weight=loss_weight)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_smooth_l1_layer_gradient_in_net(sigma):
    rng = np.random.RandomState(3)
    a, b = away_from_kink(rng, (5, 4), sigma, margin=0.15)
    net = smooth_net([(5, 4), (5, 4)], f"{{sigma: {sigma}}}")
    check_net_gradient(net, {"pred": a, "target": b}, wrt=["pred", "target"])
    # the forward value matches the float64 core
    assert float(net.blobs["loss"].data[0]) == pytest.approx(
        core.smooth_l1_forward(a.astype(np.float32).astype(np.float64),
                               b.astype(np.float32).astype(np.float64), sigma=sigma)[0], rel=1e-5)


def test_smooth_l1_layer_with_weights_matches_fast_rcnn():
    rng = np.random.RandomState(4)
    shape = (4, 8)
    w_in, w_out = rng.uniform(0.5, 1.5, shape), rng.uniform(0.0, 2.0, shape)
    a, b = away_from_kink(rng, shape, 1.0, w_in, margin=0.2)
    net = smooth_net([shape] * 4, "{sigma: 1, normalization: BATCH_SIZE}")
    inputs = {"pred": a, "target": b, "inside_weights": w_in, "outside_weights": w_out}
    check_net_gradient(net, inputs, wrt=["pred", "target"])
    f32 = {k: v.astype(np.float32).astype(np.float64) for k, v in inputs.items()}
    ref_loss, ref_grad = fast_rcnn_reference(f32["pred"], f32["target"], f32["inside_weights"],
                                             f32["outside_weights"], 1.0)
    net.forward()
    net.backward()
    assert float(net.blobs["loss"].data[0]) == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(net.blobs["pred"].diff, 2 * ref_grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net.blobs["target"].diff, -2 * ref_grad, rtol=1e-5, atol=1e-7)
    # weights are not differentiated: force_backward gets zeros, stale values overwritten
    assert np.all(net.blobs["inside_weights"].diff == 0)
    assert np.all(net.blobs["outside_weights"].diff == 0)


def test_smooth_l1_inside_weights_only():
    rng = np.random.RandomState(5)
    w_in = rng.uniform(0.5, 1.5, (3, 4))
    a, b = away_from_kink(rng, (3, 4), 1.0, w_in, margin=0.2)
    net = smooth_net([(3, 4)] * 3)
    check_net_gradient(net, {"pred": a, "target": b, "inside_weights": w_in}, wrt=["pred"])


NATIVE = """
force_backward: true
layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 6 dim: 5 } } }
layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 6 dim: 5 } } }
layer { name: "sa" type: "Split" bottom: "a" top: "a1" top: "a2" }
layer { name: "sb" type: "Split" bottom: "b" top: "b1" top: "b2" }
layer { name: "ours" type: "Python" bottom: "a1" bottom: "b1" top: "ours"
        python_param { module: "caffe_losses" layer: "SmoothL1Loss" param_str: "{sigma: SIGMA}" }
        loss_weight: 2 }
layer { name: "native" type: "EuclideanLoss" bottom: "a2" bottom: "b2" top: "native"
        loss_weight: NATIVE_WEIGHT }
"""


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_smooth_l1_equals_native_euclidean_in_quadratic_region(sigma):
    # Every |a - b| < 1/sigma^2: SmoothL1 = sigma^2 * EuclideanLoss, and with
    # loss weights 2 and 2 sigma^2 the diffs reaching both bottoms are equal.
    rng = np.random.RandomState(6)
    bound = 1.0 / sigma ** 2
    b = rng.randn(6, 5)
    a = b + rng.uniform(-0.95, 0.95, (6, 5)) * bound
    net = net_from_text(textwrap.dedent(NATIVE).replace("SIGMA", str(sigma))
                        .replace("NATIVE_WEIGHT", str(2 * sigma ** 2)))
    net.blobs["a"].data[...] = a
    net.blobs["b"].data[...] = b
    net.forward()
    assert net.blobs["native"].data.shape == ()
    native = float(net.blobs["native"].data)
    assert native > 0
    assert float(net.blobs["ours"].data[0]) == pytest.approx(sigma ** 2 * native, rel=1e-5)
    net.backward()
    assert np.abs(net.blobs["a2"].diff).max() > 0
    np.testing.assert_allclose(net.blobs["a1"].diff, net.blobs["a2"].diff, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(net.blobs["b1"].diff, net.blobs["b2"].diff, rtol=1e-5, atol=1e-8)


def test_smooth_l1_is_linear_beyond_the_bound_unlike_euclidean():
    # |a - b| = 10 > 1: SmoothL1 = |d| - 0.5 per element, gradient sign(d) / N.
    net = net_from_text(textwrap.dedent(NATIVE).replace("SIGMA", "1").replace("NATIVE_WEIGHT", "1"))
    net.blobs["a"].data[...] = 10.0
    net.blobs["b"].data[...] = 0.0
    net.forward()
    net.backward()
    assert float(net.blobs["ours"].data[0]) == pytest.approx(30 * 9.5 / 6)
    assert float(net.blobs["native"].data) == pytest.approx(30 * 100 / 12)
    np.testing.assert_allclose(net.blobs["a1"].diff, 2 / 6)


@pytest.mark.parametrize("big", [1e4, 1e30])
def test_smooth_l1_extreme_inputs_are_finite(big):
    net = smooth_net([(4, 3), (4, 3)], "{sigma: 3}")
    a = np.array([[big, -big, 0.0], [big, 1.0, -big], [0.0, 0.0, big], [-big, big, 2.0]])
    net.blobs["pred"].data[...] = a
    net.blobs["target"].data[...] = 0.0
    net.forward()
    net.backward()
    loss = float(net.blobs["loss"].data[0])
    assert np.isfinite(loss) and loss > 0
    assert np.all(np.isfinite(net.blobs["pred"].diff))
    # beyond the bound the gradient is the sign: loss weight 2 * sign / N
    np.testing.assert_allclose(net.blobs["pred"].diff[0], [2 / 4, -2 / 4, 0.0])


def test_smooth_l1_target_shape_may_differ_when_counts_match():
    # conv output (N, 1, 1, 1) against an HDF5 target (N, 1), as EuclideanLoss allows.
    rng = np.random.RandomState(7)
    a, b = away_from_kink(rng, (4, 1), 1.0)
    net = smooth_net([(4, 1, 1, 1), (4, 1)])
    check_net_gradient(net, {"pred": a.reshape(4, 1, 1, 1), "target": b}, wrt=["pred", "target"])


@pytest.mark.parametrize("param_str, message", [
    ("{sigma: 0}", r"SmoothL1Loss: 'sigma' must be > 0\. Received: sigma=0"),
    ("{sigma: -1.5}", r"SmoothL1Loss: 'sigma' must be > 0\. Received: sigma=-1.5"),
    ("{sigma: abc}", r"SmoothL1Loss: 'sigma' must be a number\. Received: sigma='abc'"),
    ("{sigmaa: 1}", r"SmoothL1Loss: unknown key 'sigmaa' in param_str\. Did you mean 'sigma'\?"),
    ("{normalization: BATCH}", r"SmoothL1Loss: 'normalization' must be one of FULL, VALID, BATCH_SIZE, NONE"),
    ("[1, 2]", r"SmoothL1Loss: param_str must be a mapping"),
])
def test_smooth_l1_bad_param_str(param_str, message):
    with pytest.raises((ValueError, TypeError), match=message):
        smooth_net([(4, 3), (4, 3)], param_str)


@pytest.mark.parametrize("shapes, message", [
    ([(4, 3), (4, 2)], r"SmoothL1Loss: bottom 'target' must have as many values as 'pred' \(4, 3\): "
                       r"expected 12, got 8"),
    ([(4, 3), (3, 4)], r"SmoothL1Loss: bottom 'target' must have the N of 'pred' \(4, 3\): "
                       r"expected 4 samples, got 3"),
    ([(4, 3), (4, 3), (4, 1)], r"SmoothL1Loss: bottom 'inside_weights' must have as many values"),
    ([(4, 3), (4, 3), (4, 3), (2, 3)], r"SmoothL1Loss: bottom 'outside_weights' must have as many"),
    ([(4, 3)], r"SmoothL1Loss: expected 2 to 4 bottom\(s\) \(pred, target, \[inside_weights\], "
               r"\[outside_weights\]\), got 1"),
])
def test_smooth_l1_bad_bottoms(shapes, message):
    if len(shapes) == 1:
        with pytest.raises(ValueError, match=message):
            layer_net(MOD, "SmoothL1Loss", {"pred": shapes[0]})
        return
    with pytest.raises(ValueError, match=message):
        smooth_net(shapes)


def test_smooth_l1_reshape_reallocates_workspace():
    net = smooth_net([(4, 3), (4, 3)])
    net.blobs["pred"].reshape(7, 3)
    net.blobs["target"].reshape(7, 3)
    net.reshape()
    net.blobs["pred"].data[...] = 0.5
    net.blobs["target"].data[...] = 0.0
    net.forward()
    assert float(net.blobs["loss"].data[0]) == pytest.approx(3 * 0.125)


# ---------------------------------------------------------------------------
# Expectation
# ---------------------------------------------------------------------------

def test_bin_values():
    np.testing.assert_array_equal(core.bin_values(None, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(core.bin_values({"start": 10, "step": 0.5}, 3), [10, 10.5, 11])
    np.testing.assert_array_equal(core.bin_values({"step": 2}, 3), [0, 2, 4])
    np.testing.assert_array_equal(core.bin_values([1, 5, 9], 3), [1, 5, 9])
    with pytest.raises(ValueError, match=r"Expectation: 'values' must hold one number per bin: "
                                         r"expected 4 \(the scores' axis 1\), got 3"):
        core.bin_values([1, 2, 3], 4)


@pytest.mark.parametrize("use_softmax", [True, False])
def test_expectation_core_finite_differences(use_softmax):
    rng = np.random.RandomState(8)
    x = rng.randn(5, 7) * 2
    if not use_softmax:
        x = np.abs(x)
    v = rng.randn(7) * 10
    g = rng.randn(5, 1)
    e, cache = core.expectation_forward(x, v, softmax=use_softmax)
    grad = core.expectation_backward(cache, g)
    check_gradient(lambda s: np.sum(g * core.expectation_forward(s, v, softmax=use_softmax)[0]),
                   grad, x, rtol=1e-6, atol=1e-7, name="scores")
    p = scipy.special.softmax(x, axis=1) if use_softmax else x
    np.testing.assert_allclose(e[:, 0], p @ v, rtol=1e-12)


def test_expectation_extreme_logits():
    x = np.zeros((2, 100))
    x[0, 37] = 1e4
    x[1, :] = -1e4
    x[1, 99] = 1e4
    e, cache = core.expectation_forward(x)
    np.testing.assert_array_equal(e[:, 0], [37, 99])
    grad = core.expectation_backward(cache, np.ones(2))
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() == 0


@pytest.mark.parametrize("shape, param_str, use_softmax", [
    ((4, 10), "", True),
    ((3, 6, 1, 1), "{values: {start: 20, step: 5}}", True),
    ((4, 5), "{values: [0, 10, 2.5, -3, 7], softmax: false}", False),
])
def test_expectation_layer_gradient_in_net(shape, param_str, use_softmax):
    rng = np.random.RandomState(9)
    x = rng.randn(*shape)
    if not use_softmax:
        x = scipy.special.softmax(x.reshape(shape[0], -1), axis=1).reshape(shape)
    net = layer_net(MOD, "Expectation", {"scores": shape}, tops=("pred_age",),
                    param_str=param_str, loss_weight=None)
    check_net_gradient(net, {"scores": x}, wrt=["scores"], stepsize=1e-3)
    assert net.blobs["pred_age"].data.shape == (shape[0], 1)
    params = {"": None, "{values: {start: 20, step: 5}}": {"start": 20, "step": 5}}.get(
        param_str, [0, 10, 2.5, -3, 7])
    expected, _ = core.expectation_forward(x.astype(np.float32).astype(np.float64), params,
                                           softmax=use_softmax)
    np.testing.assert_allclose(net.blobs["pred_age"].data, expected, rtol=1e-5)


def test_expectation_layer_extreme_logits_in_net():
    net = layer_net(MOD, "Expectation", {"scores": (2, 100)}, tops=("pred_age",), loss_weight=None)
    x = np.full((2, 100), -1e4)
    x[0, 12] = 1e4
    x[1, 88] = 1e4
    net.blobs["scores"].data[...] = x
    net.forward()
    net.backward(pred_age=np.ones((2, 1), np.float32))
    np.testing.assert_array_equal(net.blobs["pred_age"].data[:, 0], [12, 88])
    assert np.all(np.isfinite(net.blobs["scores"].diff))


@pytest.mark.parametrize("shape, param_str, error, message", [
    ((4, 5), "{values: [1, 2, 3]}", ValueError,
     r"Expectation: 'values' must hold one number per bin: expected 5 \(the scores' axis 1\), got 3"),
    ((4, 5), "{values: {stride: 2}}", ValueError,
     r"Expectation: 'values' has unknown key 'stride'.*Received: values=\{'stride': 2\}"),
    ((4, 5), "{values: {start: x}}", TypeError, r"Expectation: 'values' 'start' must be a number"),
    ((4, 5), "{values: 7}", TypeError, r"Expectation: 'values' must be a list of numbers"),
    ((4, 5), "{softmax: maybe}", TypeError, r"Expectation: 'softmax' must be true or false"),
    ((4, 5), "{value: [1]}", ValueError, r"Expectation: unknown key 'value'.*Did you mean 'values'"),
    ((4, 5, 2, 2), "", ValueError,
     r"Expectation: bottom 'scores' must be \(N, K\) or \(N, K, 1, 1\).*Received shape \(4, 5, 2, 2\)"),
    ((4,), "", ValueError, r"Expectation: bottom 'scores' must be \(N, K\)"),
])
def test_expectation_bad_input(shape, param_str, error, message):
    with pytest.raises(error, match=message):
        layer_net(MOD, "Expectation", {"scores": shape}, tops=("pred_age",), param_str=param_str,
                  loss_weight=None)


def test_expectation_rejects_non_finite_scores():
    net = layer_net(MOD, "Expectation", {"scores": (2, 3)}, tops=("pred_age",), loss_weight=None)
    net.blobs["scores"].data[...] = 0
    net.blobs["scores"].data[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"Expectation: bottom 'scores' holds a non-finite value "
                                         r"nan at index \(1, 2\)"):
        net.forward()


def test_expectation_equals_softmax_plus_inner_product_natively():
    # Caffe-native equivalent: Softmax then an InnerProduct with kernel = values.
    text = """
    force_backward: true
    layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 5 dim: 8 } } }
    layer { name: "sx" type: "Split" bottom: "x" top: "x1" top: "x2" }
    layer { name: "ours" type: "Python" bottom: "x1" top: "ours"
            python_param { module: "caffe_losses" layer: "Expectation"
                           param_str: "{values: {start: 3, step: 2}}" } }
    layer { name: "prob" type: "Softmax" bottom: "x2" top: "prob" }
    layer { name: "native" type: "InnerProduct" bottom: "prob" top: "native"
            param { lr_mult: 0 } inner_product_param { num_output: 1 bias_term: false } }
    """
    net = net_from_text(textwrap.dedent(text))
    net.params["native"][0].data[...] = 3 + 2 * np.arange(8)
    rng = np.random.RandomState(10)
    net.blobs["x"].data[...] = rng.randn(5, 8) * 3
    net.forward()
    np.testing.assert_allclose(net.blobs["ours"].data, net.blobs["native"].data, rtol=1e-5)
    g = rng.randn(5, 1).astype(np.float32)
    net.backward(ours=g, native=g)
    assert np.abs(net.blobs["x2"].diff).max() > 0
    np.testing.assert_allclose(net.blobs["x1"].diff, net.blobs["x2"].diff, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# MeanVarianceLoss
# ---------------------------------------------------------------------------

def mean_variance_reference(x, y, v, lm, lv):
    """Term by term, one sample at a time, from Pan et al. eqs. 3-7 (test only)."""
    total = 0.0
    for xi, yi in zip(x, y):
        p = np.exp(xi - xi.max())
        p /= p.sum()
        m = np.sum(p * v)
        s = np.sum(p * (v - m) ** 2)
        total += -np.log(p[int(yi)]) + lm * 0.5 * (m - v[int(yi)]) ** 2 + lv * s
    return total / len(x)


def test_mean_variance_core_against_reference_and_finite_differences():
    rng = np.random.RandomState(11)
    x, y = rng.randn(6, 9), rng.randint(0, 9, 6).astype(float)
    v = np.arange(9.0) * 1.5 + 2
    loss, cache = core.mean_variance_forward(x, y, {"start": 2, "step": 1.5}, lambda_mean=0.3,
                                             lambda_var=0.1)
    assert loss == pytest.approx(mean_variance_reference(x, y, v, 0.3, 0.1), rel=1e-12)
    check_gradient(lambda s: core.mean_variance_forward(s, y, {"start": 2, "step": 1.5},
                                                        lambda_mean=0.3, lambda_var=0.1)[0],
                   core.mean_variance_backward(cache), x, name="scores")


def test_mean_variance_layer_in_net_and_zero_lambdas_equal_softmax_with_loss():
    rng = np.random.RandomState(12)
    x, y = rng.randn(5, 10), rng.randint(0, 10, (5, 1)).astype(float)
    net = layer_net(MOD, "MeanVarianceLoss", {"scores": (5, 10), "label": (5, 1)}, loss_weight=2)
    check_net_gradient(net, {"scores": x, "label": y}, wrt=["scores"], stepsize=1e-3)
    text = """
    force_backward: true
    layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 5 dim: 10 } } }
    layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 5 } } }
    layer { name: "sx" type: "Split" bottom: "x" top: "x1" top: "x2" }
    layer { name: "ours" type: "Python" bottom: "x1" bottom: "y" top: "ours"
            python_param { module: "caffe_losses" layer: "MeanVarianceLoss"
                           param_str: "{lambda_mean: 0, lambda_var: 0}" } loss_weight: 1 }
    layer { name: "native" type: "SoftmaxWithLoss" bottom: "x2" bottom: "y" top: "native" }
    """
    net = net_from_text(textwrap.dedent(text))
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = y[:, 0]
    net.forward()
    net.backward()
    assert float(net.blobs["ours"].data[0]) == pytest.approx(float(net.blobs["native"].data), rel=1e-5)
    np.testing.assert_allclose(net.blobs["x1"].diff, net.blobs["x2"].diff, rtol=1e-4, atol=1e-7)
    assert np.all(net.blobs["y"].diff == 0)


def test_mean_variance_bad_input():
    net = layer_net(MOD, "MeanVarianceLoss", {"scores": (2, 4), "label": (2,)})
    net.blobs["scores"].data[...] = 0
    net.blobs["label"].data[...] = [1, 4]
    with pytest.raises(ValueError, match=r"MeanVarianceLoss: bottom 'label' holds 4\.0 at index \(1,\); "
                                         r"expected integers in \[0, 4\)"):
        net.forward()
    with pytest.raises(ValueError, match=r"MeanVarianceLoss: bottom 'label' must hold one label per "
                                         r"sample of 'scores' \(2, 4\): expected 2 values, got 3"):
        layer_net(MOD, "MeanVarianceLoss", {"scores": (2, 4), "label": (3,)})
    with pytest.raises(ValueError, match=r"MeanVarianceLoss: 'lambda_var' must be >= 0"):
        layer_net(MOD, "MeanVarianceLoss", {"scores": (2, 4), "label": (2,)}, param_str="{lambda_var: -1}")


def test_mean_variance_extreme_logits_are_finite():
    net = layer_net(MOD, "MeanVarianceLoss", {"scores": (2, 100), "label": (2,)}, loss_weight=1)
    x = np.full((2, 100), -1e4)
    x[0, 30] = 1e4        # confident and right
    x[1, 90] = 1e4        # confident and 80 bins wrong
    net.blobs["scores"].data[...] = x
    net.blobs["label"].data[...] = [30, 10]
    net.forward()
    net.backward()
    loss = float(net.blobs["loss"].data[0])
    # sample 1: cross-entropy 2e4 (exact log-softmax), mean term 0.2 * 80^2 / 2; variance 0
    assert loss == pytest.approx((2e4 + 0.2 * 80 ** 2 / 2) / 2, rel=1e-5)
    assert np.all(np.isfinite(net.blobs["scores"].diff))
