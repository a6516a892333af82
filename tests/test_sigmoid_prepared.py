"""``WeightedSigmoidCrossEntropy`` (the prepared loss the layer runs) against the core functions.

The prepared loss has its own fast path (weights folded into stacked rows,
one argmin as the range check, a gemv backward up to 4096 elements and a
pass-based one beyond); every case here must give the loss and gradient of
``weighted_sigmoid_cross_entropy_forward`` / ``_backward`` to float64
rounding, and raise the same errors.
"""

import re

import numpy as np
import pytest

from caffe_losses.core.sigmoid import (WeightedSigmoidCrossEntropy,
                                       weighted_sigmoid_cross_entropy_backward as backward,
                                       weighted_sigmoid_cross_entropy_forward as forward)
from caffe_losses.testing import layer_net

RNG = np.random.RandomState(11)
OWNER = "weighted_sigmoid_cross_entropy"

# (N, C, inner): 60 elements (gemv backward) and 6000 (pass-based backward)
SHAPES = [(3, 4, 5), (6, 4, 250)]

WEIGHTS = [
    dict(),                                            # a = 1: a plain copy
    dict(pos_weight=5.0),                              # a > 1: folded into the copy
    dict(pos_weight=0.25),                             # a < 1: applied after the check
    dict(pos_weight=2.5, neg_weight=0.4),
    dict(pos_weight=0.5, neg_weight=3.0),
    dict(pos_weight=0.0),
    dict(neg_weight=0.0),                              # F = w_p, b = 0
    dict(pos_weight=0.0, neg_weight=0.0),              # all zero: loss 0, gradient 0
    dict(pos_weight=[1.0, 4.0, 0.5, 10.0]),            # per channel
    dict(pos_weight=[1.0, 4.0, 0.0, 10.0], neg_weight=2.0),
    dict(pos_weight=[1.0, 4.0, 0.5, 10.0], neg_weight=0.0),
]


def data(shape, kind="soft", big=3.0):
    x = RNG.randn(*shape) * big
    if kind == "soft":
        t = RNG.rand(*shape)
    else:
        t = (RNG.rand(*shape) < 0.3).astype(np.float64)
    return x, t


def both(x, t, scale=1.0, **kw):
    """(loss, grad) of the core functions and of a prepared loss."""
    want, cache = forward(x, t, **kw)
    want_g = backward(cache, scale=scale).copy()
    plan = WeightedSigmoidCrossEntropy(x.shape, x.dtype, **kw)
    got = plan.forward(x, t)
    got_g = plan.backward(scale).copy()
    return (want, want_g), (got, got_g)


def assert_same(want, got, float32=False):
    assert got[0] == pytest.approx(want[0], rel=1e-5 if float32 else 1e-13, abs=1e-300)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5 if float32 else 1e-12,
                               atol=1e-6 if float32 else 1e-15)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kw", WEIGHTS)
@pytest.mark.parametrize("normalization", ["BATCH_SIZE", "FULL", "VALID", "NONE"])
def test_equals_core_functions(shape, kw, normalization):
    x, t = data(shape)
    want, got = both(x, t, scale=-1.5, normalization=normalization, **kw)
    assert_same(want, got)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kw", [dict(), dict(pos_weight=5.0), dict(pos_weight=0.25, neg_weight=2.0),
                                dict(pos_weight=[1.0, 4.0, 0.5, 10.0])])
@pytest.mark.parametrize("big", [20.0, 1e4])
def test_extreme_logits_exact(shape, kw, big):
    # logits of +-20 (exp(-|x|) below float32's epsilon, where log1p matters)
    # and +-1e4 (exp underflows to 0): the same exact values, no inf or NaN
    x, t = data(shape, "binary")
    x = np.sign(x) * big
    want, got = both(x, t, **kw)
    assert np.isfinite(got[0]) and np.all(np.isfinite(got[1]))
    assert_same(want, got)


def test_exact_values_at_1e4():
    # x = -1e4, t = 1: loss w_p * 1e4; x = 1e4, t = 0: w_n * 1e4; right ones: 0
    x = np.array([[-1e4, 1e4, 1e4, -1e4]])
    t = np.array([[1.0, 0.0, 1.0, 0.0]])
    plan = WeightedSigmoidCrossEntropy(x.shape, np.float64, pos_weight=3.0, neg_weight=0.5,
                                       normalization="NONE")
    assert plan.forward(x, t) == 3.0 * 1e4 + 0.5 * 1e4
    np.testing.assert_array_equal(plan.backward(), [[-3.0, 0.5, 0.0, 0.0]])


def test_float32_close_to_float64():
    x, t = data((6, 4, 250))
    kw = dict(pos_weight=[1.0, 4.0, 0.5, 10.0])
    l64, g64 = both(x, t, **kw)[0]
    for shape in [(3, 4, 5), (6, 4, 250)]:
        n, c, i = shape
        xs, ts = x[:n, :c, :i], t[:n, :c, :i]
        plan = WeightedSigmoidCrossEntropy(shape, np.float32, **kw)
        l32 = plan.forward(xs.astype(np.float32), ts.astype(np.float32))
        ref_l, ref_c = forward(xs, ts, **kw)
        assert l32 == pytest.approx(ref_l, rel=1e-5)
        np.testing.assert_allclose(plan.backward(), backward(ref_c), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_ignore_label_switches_paths_call_by_call(shape):
    # 255 fails the range check, so the call goes to the general path; the
    # next call without it takes the fast path again: each must be right.
    kw = dict(pos_weight=[1.0, 4.0, 0.5, 10.0], ignore_label=255, normalization="VALID")
    plan = WeightedSigmoidCrossEntropy(shape, np.float64, **kw)
    for step in range(4):
        x, t = data(shape, "binary")
        if step % 2 == 0:
            t[0, 1, :3] = 255
        got = plan.forward(x, t), plan.backward(2.0).copy()
        want_l, cache = forward(x, t, **kw)
        assert_same((want_l, backward(cache, scale=2.0)), got)


@pytest.mark.parametrize("kw", [dict(ignore_label=0), dict(ignore_label=1, pos_weight=3.0),
                                dict(balance="auto"), dict(balance="auto", ignore_label=255)])
def test_general_path_configs(kw):
    x, t = data((3, 4, 5), "binary")
    if kw.get("ignore_label") == 255:
        t[1, 2, :] = 255
    want, got = both(x, t, **kw)
    assert_same(want, got)


# -1e-45 is a float64 normal number but float32's smallest denormal: with a
# pos_weight below 1 applied before the check it would round to -0 and pass.
BAD_TARGETS = [1.5, -0.25, -1e-45, 1.0000001, np.nan, np.inf, -np.inf, 254.0]


@pytest.mark.parametrize("value", BAD_TARGETS)
@pytest.mark.parametrize("kw", [dict(), dict(pos_weight=5.0), dict(pos_weight=0.25),
                                dict(pos_weight=[1.0, 4.0, 0.5, 10.0]), dict(neg_weight=0.0),
                                dict(ignore_label=255)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bad_targets_raise_with_value_and_index(value, kw, dtype):
    x, t = data((3, 4, 5), "binary")
    x, t = x.astype(dtype), t.astype(dtype)
    t[1, 2, 3] = value
    stored = float(t[1, 2, 3])
    assert stored != 0 and not 0 <= stored <= 1
    message = rf"^{OWNER}: bottom 'target' holds {re.escape(str(stored))} at index \(1, 2, 3\); " \
              rf"expected values in \[0, 1\]"
    plan = WeightedSigmoidCrossEntropy(x.shape, dtype, **kw)
    with pytest.raises(ValueError, match=message):
        plan.forward(x, t)
    with pytest.raises(ValueError, match=message):
        forward(x, t, **kw)
    t[1, 2, 3] = 1.0                                  # and the next good call works
    want, got = both(x, t, **kw)
    assert_same(want, got, float32=dtype == np.float32)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise(value):
    x, t = data((3, 4, 5))
    x[2, 0, 1] = value
    plan = WeightedSigmoidCrossEntropy(x.shape, np.float64, pos_weight=2.0)
    with np.errstate(invalid="ignore"):
        with pytest.raises(ValueError, match=rf"{OWNER}: bottom 'scores' holds a non-finite value "
                                             rf"{value} at index \(2, 0, 1\)"):
            plan.forward(x, t)


def test_huge_weights_agree_or_raise():
    x = np.full((2, 3), -1e4, np.float32)
    t = np.ones((2, 3), np.float32)
    for kw in [dict(pos_weight=1e30), dict(pos_weight=1e300), dict(pos_weight=1e30, neg_weight=1e-30)]:
        plan = WeightedSigmoidCrossEntropy(x.shape, np.float32, normalization="NONE", **kw)
        assert plan.forward(x, t) == pytest.approx(forward(x, t, normalization="NONE", **kw)[0], rel=1e-6)
    # per-channel weights are float32 arrays: the dot product overflows
    plan = WeightedSigmoidCrossEntropy(x.shape, np.float32, pos_weight=[3e38] * 3, normalization="NONE")
    with pytest.raises(ValueError, match=rf"{OWNER}: the loss overflowed"):
        plan.forward(x, t)
    with np.errstate(over="ignore"), pytest.raises(ValueError, match=rf"{OWNER}: the loss overflowed"):
        forward(x, t, pos_weight=[3e38] * 3, normalization="NONE")


def test_bad_parameters_and_counts():
    with pytest.raises(ValueError, match=r"'pos_weight' has 2 weight\(s\) but bottom 'scores' has 4"):
        WeightedSigmoidCrossEntropy((3, 4, 5), pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"'neg_weight' must be a finite number >= 0"):
        WeightedSigmoidCrossEntropy((3, 4), neg_weight=-1.0)
    with pytest.raises(ValueError, match=r"'balance' must be one of none, auto"):
        WeightedSigmoidCrossEntropy((3, 4), balance="hed")
    with pytest.raises(ValueError, match=r"normalization must be one of"):
        WeightedSigmoidCrossEntropy((3, 4), normalization="BATCH")
    plan = WeightedSigmoidCrossEntropy((3, 4), np.float64)
    with pytest.raises(RuntimeError, match="backward before forward"):
        plan.backward()
    with pytest.raises(ValueError, match=r"bottom 'target' must have as many values as 'scores' "
                                         r"\(3, 4\): expected 12, got 10"):
        plan.forward(np.zeros((3, 4)), np.zeros(10))
    with pytest.raises(ValueError, match=r"bottom 'scores' \(2, 4\) does not have the 12 values"):
        plan.forward(np.zeros((2, 4)), np.zeros(8))


def test_backward_out_scale_and_layouts():
    x, t = data((3, 4, 5))
    plan = WeightedSigmoidCrossEntropy(x.shape, np.float64, pos_weight=2.0, neg_weight=0.5)
    plan.forward(x, t)
    g = plan.backward().copy()
    out = np.empty_like(x)
    assert plan.backward(-3.0, out) is out
    np.testing.assert_allclose(out, -3.0 * g, rtol=1e-14)
    strided = np.zeros((3, 4, 10))[:, :, ::2]          # not contiguous: written through a copy
    assert plan.backward(2.0, strided) is strided
    np.testing.assert_allclose(strided, 2.0 * g, rtol=1e-14)
    flat = np.empty(60)                                # any shape with the count
    plan.backward(1.0, flat)
    np.testing.assert_array_equal(flat, g.reshape(-1))


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
        want, cache = forward(x.astype(np.float64), t.astype(np.float64), **kw)
        assert float(net.blobs["loss"].data[0]) == pytest.approx(want, rel=1e-5)
        np.testing.assert_allclose(net.blobs["scores"].diff, backward(cache), rtol=1e-4, atol=1e-6)
        assert np.all(net.blobs["target"].diff == 0)
    net.blobs["target"].data[1, 2] = 3.0
    with pytest.raises(ValueError, match=r"WeightedSigmoidCrossEntropyLoss: bottom 'target' holds 3.0 "
                                         r"at index \(1, 2\)"):
        net.forward()
    net.blobs["target"].reshape(3, 3)                  # a bad shape after good ones
    with pytest.raises(ValueError, match=r"WeightedSigmoidCrossEntropyLoss: bottom 'target' must have "
                                         r"as many values as 'scores'"):
        net.forward()
