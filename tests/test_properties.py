"""Property tests of the NumPy cores (hypothesis): random shapes, weights, labels,
logits up to 1e4.  For every draw the loss is finite and non-negative, the
gradient is finite, and (at moderate scale, where float64 central differences
are meaningful) the gradient equals finite differences.
"""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from caffe_losses.losses.center import core as center
from caffe_losses.losses.infogain import core as infogain
from caffe_losses.losses.regression import core as regression
from caffe_losses.losses.sigmoid import core as sigmoid
from caffe_losses.glue.testing import check_gradient

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)
NORMS = st.sampled_from(["FULL", "VALID", "BATCH_SIZE", "NONE"])


@st.composite
def classification(draw, max_scale=1e4):
    n = draw(st.integers(1, 5))
    c = draw(st.integers(2, 6))
    inner = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1.0, 10.0, max_scale]))
    rng = np.random.RandomState(seed)
    x = rng.randn(n, c, inner) * scale
    label = rng.randint(0, c, (n, inner)).astype(np.float64)
    ignore = draw(st.booleans())
    if ignore:
        label[rng.rand(n, inner) < 0.3] = 255
    return x, label, (255 if ignore else None), rng, scale


def finite_nonneg(loss, grad):
    assert np.isfinite(loss) and loss >= -1e-12, loss
    assert np.all(np.isfinite(grad))


@SETTINGS
@given(classification(), NORMS, st.sampled_from(["identity", "diagonal", "full"]))
def test_softmax_infogain(data, norm, kind, ):
    x, label, ignore, rng, scale = data
    c = x.shape[1]
    H = {"identity": np.eye(c), "diagonal": np.diag(rng.rand(c) * 3),
         "full": rng.rand(c, c) * 2}[kind]
    kw = dict(axis=1, ignore_label=ignore, normalization=norm)
    loss, cache = infogain.softmax_infogain_forward(x, label, H, **kw)
    grad = infogain.softmax_infogain_backward(cache).copy()
    finite_nonneg(loss, grad)
    if scale <= 10:
        check_gradient(lambda v: infogain.softmax_infogain_forward(v, label, H, **kw)[0], grad, x,
                       rtol=1e-5, atol=1e-7)


@SETTINGS
@given(classification(max_scale=10.0), NORMS)
def test_classic_infogain_on_probabilities(data, norm):
    x, label, ignore, rng, _ = data
    c = x.shape[1]
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assume(p.min() > 1e-2)     # where float64 differences of log p are accurate
    H = rng.rand(c, c) * 2
    kw = dict(axis=1, ignore_label=ignore, normalization=norm)
    loss, cache = infogain.infogain_forward(p, label, H, **kw)
    grad = infogain.infogain_backward(cache).copy()
    finite_nonneg(loss, grad)
    check_gradient(lambda v: infogain.infogain_forward(v, label, H, **kw)[0], grad, p, eps=1e-7,
                   rtol=1e-5, atol=1e-7)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**31 - 1),
       st.sampled_from([1.0, 10.0, 1e4]), NORMS, st.booleans(), st.booleans())
def test_weighted_sigmoid(n, c, inner, seed, scale, norm, per_channel, soft):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, c, inner) * scale
    t = rng.rand(n, c, inner) if soft else (rng.rand(n, c, inner) < 0.3).astype(np.float64)
    pos = list(rng.rand(c) * 5) if per_channel else float(rng.rand() * 5)
    kw = dict(pos_weight=pos, neg_weight=float(rng.rand() * 2), normalization=norm)
    loss, cache = sigmoid.weighted_sigmoid_cross_entropy_forward(x, t, **kw)
    grad = sigmoid.weighted_sigmoid_cross_entropy_backward(cache).copy()
    finite_nonneg(loss, grad)
    if scale <= 10:
        check_gradient(lambda v: sigmoid.weighted_sigmoid_cross_entropy_forward(v, t, **kw)[0], grad, x,
                       rtol=1e-5, atol=1e-7)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**31 - 1), st.sampled_from([0.5, 1.0, 3.0]),
       st.sampled_from([1.0, 1e4]), st.booleans(), NORMS)
def test_smooth_l1(n, c, seed, sigma, scale, weighted, norm):
    rng = np.random.RandomState(seed)
    pred, target = rng.randn(n, c) * scale, rng.randn(n, c) * scale
    w_in = rng.rand(n, c) * 2 if weighted else None
    w_out = rng.rand(n, c) * 2 if weighted else None
    d = (pred - target) * (w_in if weighted else 1)
    assume(np.all(np.abs(np.abs(d) - 1 / sigma**2) > 1e-3))      # away from the kink
    kw = dict(sigma=sigma, normalization=norm)
    loss, cache = regression.smooth_l1_forward(pred, target, w_in, w_out, **kw)
    grad = regression.smooth_l1_backward(cache).copy()
    finite_nonneg(loss, grad)
    if scale == 1.0:     # at 1e4 the loss is ~1e4: float64 differences are too coarse
        check_gradient(lambda v: regression.smooth_l1_forward(v, target, w_in, w_out, **kw)[0], grad, pred,
                       rtol=1e-5, atol=1e-7)


@SETTINGS
@given(st.integers(1, 4), st.integers(2, 8), st.integers(0, 2**31 - 1), st.sampled_from([1.0, 10.0, 1e4]))
def test_expectation(n, k, seed, scale):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, k) * scale
    values = list(rng.randn(k) * 20)
    e, cache = regression.expectation_forward(x, values)
    g = rng.randn(n)
    grad = np.asarray(regression.expectation_backward(cache, g)).copy()
    assert np.all(np.isfinite(e)) and np.all(np.isfinite(grad))
    assert np.all(np.asarray(e).ravel() >= min(values) - 1e-9) and np.all(np.asarray(e).ravel() <= max(values) + 1e-9)
    if scale <= 10:
        check_gradient(lambda v: float(np.dot(g, np.asarray(regression.expectation_forward(v, values)[0]).ravel())),
                       grad.reshape(x.shape), x, rtol=1e-5, atol=1e-7)


@SETTINGS
@given(st.integers(1, 4), st.integers(2, 8), st.integers(0, 2**31 - 1), st.sampled_from([1.0, 10.0, 1e4]))
def test_mean_variance(n, k, seed, scale):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, k) * scale
    labels = rng.randint(0, k, n).astype(np.float64)
    loss, cache = regression.mean_variance_forward(x, labels)
    grad = np.asarray(regression.mean_variance_backward(cache)).copy()
    finite_nonneg(loss, grad)
    if scale <= 10:
        check_gradient(lambda v: regression.mean_variance_forward(v, labels)[0], grad.reshape(x.shape), x,
                       rtol=1e-5, atol=1e-7)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**31 - 1),
       st.sampled_from([1.0, 1e4]), NORMS)
def test_center_loss(n, d, classes, seed, scale, norm):
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d) * scale
    centers = rng.randn(classes, d) * scale
    labels = rng.randint(0, classes, n).astype(np.float64)
    loss, cache = center.center_loss_forward(x, labels, centers, normalization=norm)
    grad = np.asarray(center.center_loss_backward(cache)).copy()
    finite_nonneg(loss, grad)
    if scale == 1.0:
        check_gradient(lambda v: center.center_loss_forward(v, labels, centers, normalization=norm)[0],
                       grad.reshape(x.shape), x, rtol=1e-5, atol=1e-7)
