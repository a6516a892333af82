"""The focal losses' NumPy core: the formulas, float64 finite differences of every key
combination, the gamma < 1 limit, extreme logits."""

import itertools

import numpy as np
import pytest

from caffe_losses.losses.focal import core
from caffe_losses.glue.testing import check_gradient

RNG = np.random.RandomState(21)


# ---------------------------------------------------------------------------
# Naive formulas, straight from the issue text (float64, moderate logits only)
# ---------------------------------------------------------------------------

def naive_sigmoid_focal(x, t, gamma, alpha, ignore_label, normalization):
    """torchvision's sigmoid_focal_loss, element by element, then our reductions."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64).reshape(np.shape(x))
    valid = np.ones(x.shape, bool) if ignore_label is None else t != ignore_label
    tt = np.where(valid, t, 0)
    p = 1 / (1 + np.exp(-x))
    ce = -(tt * np.log(p) + (1 - tt) * np.log(1 - p))
    p_t = p * tt + (1 - p) * (1 - tt)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * tt + (1 - alpha) * (1 - tt))
    total = loss[valid].sum()
    norm = {"VALID": valid.sum(), "FULL": x.size, "BATCH_SIZE": x.shape[0], "NONE": 1,
            "POSITIVES": ((tt == 1) & valid).sum()}[normalization]
    return total / max(1, norm)


def naive_softmax_focal(x, y, gamma, alpha, axis, ignore_label, normalization):
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)        # (..., C)
    C = x.shape[-1]
    y = np.asarray(y).reshape(x.shape[:-1])
    valid = np.ones(y.shape, bool) if ignore_label is None else y != ignore_label
    yy = np.where(valid, y, 0).astype(int)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p_y = np.take_along_axis(p, yy[..., None], -1)[..., 0]
    a = np.full(C, alpha) if np.ndim(alpha) == 0 else np.asarray(alpha, np.float64)
    loss = -a[yy] * (1 - p_y) ** gamma * np.log(p_y)
    total = loss[valid].sum()
    outer = int(np.prod(np.asarray(x.shape)[:axis % (x.ndim)])) if axis % x.ndim else 1
    norm = {"VALID": valid.sum() if ignore_label is not None else y.size, "FULL": y.size,
            "BATCH_SIZE": outer, "NONE": 1}[normalization]
    return total / max(1, norm)


def targets(shape, ignore_label=None, soft=True):
    t = (RNG.rand(*shape) < 0.3).astype(np.float64)
    if soft:
        t[RNG.rand(*shape) < 0.3] = RNG.rand()
    if ignore_label is not None:
        t[RNG.rand(*shape) < 0.2] = ignore_label
    return t


# ---------------------------------------------------------------------------
# Sigmoid form: every key combination
# ---------------------------------------------------------------------------

GAMMAS = (0.0, 0.3, 1.0, 2.0, 3.5)
SIGMOID_GRID = list(itertools.product(GAMMAS, (None, 0.25, 0.0, 1.0), (None, -1),
                                      core.SIGMOID_NORMALIZATIONS))


@pytest.mark.parametrize("gamma, alpha, ignore_label, normalization", SIGMOID_GRID)
def test_sigmoid_focal_value_and_gradient_every_key(gamma, alpha, ignore_label, normalization):
    x = RNG.randn(3, 4, 2) * 3
    t = targets(x.shape, ignore_label)
    kw = dict(gamma=gamma, alpha=alpha, ignore_label=ignore_label, normalization=normalization)
    loss, cache = core.sigmoid_focal_forward(x, t, **kw)
    assert loss == pytest.approx(naive_sigmoid_focal(x, t, **kw), rel=1e-12, abs=1e-15)
    grad = core.sigmoid_focal_backward(cache, scale=1.5)
    check_gradient(lambda z: 1.5 * core.sigmoid_focal_forward(z, t, **kw)[0], grad, x,
                   eps=1e-5, rtol=1e-6, atol=1e-8)
    if ignore_label is not None:
        assert np.all(grad[t == ignore_label] == 0)


def test_sigmoid_positives_normalization_counts_ones_not_ignored_at_least_one():
    x = RNG.randn(2, 5)
    t = np.array([[1, 0, 0.5, 1, -1], [0, 0, 1, -1, -1]], np.float64)
    total = core.sigmoid_focal_forward(x, t, ignore_label=-1, normalization="NONE")[0]
    assert core.sigmoid_focal_forward(x, t, ignore_label=-1, normalization="POSITIVES")[0] == \
        pytest.approx(total / 3)
    zeros = np.zeros((2, 5))
    assert core.sigmoid_focal_forward(x, zeros, normalization="POSITIVES")[0] == pytest.approx(
        core.sigmoid_focal_forward(x, zeros, normalization="NONE")[0])       # no positive: 1


def test_sigmoid_gamma_zero_alpha_none_is_bce_with_logits():
    x, t = RNG.randn(4, 6) * 5, RNG.rand(4, 6)
    bce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))           # Caffe's formula
    loss, cache = core.sigmoid_focal_forward(x, t, gamma=0, alpha=None, normalization="FULL")
    assert loss == pytest.approx(bce.mean(), rel=1e-13)
    p = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(core.sigmoid_focal_backward(cache), (p - t) / x.size, rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_sigmoid_gamma_below_one_near_and_at_the_limit(gamma, t):
    # q = 1 - p_t -> 0: (1 - p_t)^(gamma - 1) diverges, the gradient does not
    sign = 1 if t == 1 else -1
    x = sign * np.array([5.0, 15.0, 30.0, 36.0])
    tt = np.full(x.shape, t)
    kw = dict(gamma=gamma, alpha=0.25, normalization="NONE")
    for i in range(x.size):          # one element at a time: each its own scale
        xi, ti = x[i:i + 1], tt[i:i + 1]
        loss, cache = core.sigmoid_focal_forward(xi, ti, **kw)
        grad = core.sigmoid_focal_backward(cache)
        assert 0 < loss and np.all(np.isfinite(grad)) and grad[0] * sign < 0
        check_gradient(lambda z: core.sigmoid_focal_forward(z, ti, **kw)[0], grad, xi, eps=1e-4,
                       rtol=1e-5, atol=1e-300)
    # exactly at the limit (q rounds to 0): loss and gradient 0, not NaN
    for dtype in (np.float64, np.float32):
        big = (sign * np.array([1e4, 800.0])).astype(dtype)
        loss, cache = core.sigmoid_focal_forward(big, np.full(2, t, dtype), **kw)
        grad = core.sigmoid_focal_backward(cache)
        assert loss == 0 and np.all(grad == 0) and grad.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_logits_of_1e4_are_exact_and_finite(dtype, gamma):
    x = np.array([1e4, -1e4, 1e4, -1e4, 1e4, -1e4], dtype)
    t = np.array([0, 1, 1, 0, 0.5, 0.5], dtype)
    loss, cache = core.sigmoid_focal_forward(x, t, gamma=gamma, alpha=0.25, normalization="NONE")
    # wrong side: ce = 1e4, q = 1; right side: 0; soft: ce = 5e3, q = 1/2, a = 1/2
    expected = 0.75 * 1e4 + 0.25 * 1e4 + 2 * 0.5 * 5e3 * 0.5 ** gamma
    assert loss == pytest.approx(expected, rel=1e-6)
    grad = core.sigmoid_focal_backward(cache)
    assert np.all(np.isfinite(grad)) and grad.dtype == dtype
    np.testing.assert_allclose(grad[:4], [0.75, -0.25, 0, 0], atol=1e-7)
    np.testing.assert_allclose(grad[4:], np.array([0.5, -0.5]) * 0.5 * 0.5 ** gamma, rtol=1e-6)


def test_sigmoid_float32_matches_float64():
    x, t = RNG.randn(8, 3, 5) * 4, targets((8, 3, 5), -1)
    kw = dict(gamma=2, alpha=0.25, ignore_label=-1)
    l64, c64 = core.sigmoid_focal_forward(x, t, **kw)
    l32, c32 = core.sigmoid_focal_forward(x.astype(np.float32), t.astype(np.float32), **kw)
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(core.sigmoid_focal_backward(c32), core.sigmoid_focal_backward(c64),
                               rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("bad, message", [
    (dict(gamma=-1), "'gamma' must be a finite number >= 0"),
    (dict(alpha=1.5), "'alpha' must be a number in [0, 1] or none"),
    (dict(normalization="BATCH"), "'normalization' must be one of"),
])
def test_sigmoid_bad_settings(bad, message):
    with pytest.raises(ValueError, match=r"^SigmoidFocalLoss: " + message.replace("[", r"\[")
                       .replace("]", r"\]")):
        core.sigmoid_focal_forward(np.zeros((2, 2)), np.zeros((2, 2)), **bad)


def test_sigmoid_bad_targets_and_counts():
    with pytest.raises(ValueError, match=r"SigmoidFocalLoss: bottom 'targets' holds 2.0 at index \(0, 1\)"):
        core.sigmoid_focal_forward(np.zeros((2, 2)), np.array([[0, 2], [0, 1]]))
    with pytest.raises(ValueError, match=r"SigmoidFocalLoss: bottom 'targets' must have as many values"):
        core.sigmoid_focal_forward(np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"non-finite value nan"):
        core.sigmoid_focal_forward(np.array([0, np.nan]), np.zeros(2))


# ---------------------------------------------------------------------------
# Softmax form: every key combination
# ---------------------------------------------------------------------------

ALPHAS = (1.0, 0.25, [0.25, 1.0, 2.0])
SOFTMAX_GRID = list(itertools.product(GAMMAS, ALPHAS, (None, 255), core.SOFTMAX_NORMALIZATIONS))


@pytest.mark.parametrize("gamma, alpha, ignore_label, normalization", SOFTMAX_GRID)
def test_softmax_focal_value_and_gradient_every_key(gamma, alpha, ignore_label, normalization):
    x = RNG.randn(2, 3, 2, 3) * 3
    y = RNG.randint(0, 3, (2, 1, 2, 3)).astype(np.float64)
    if ignore_label is not None:
        y[0, 0, 0, :2] = ignore_label
    kw = dict(gamma=gamma, alpha=alpha, ignore_label=ignore_label, normalization=normalization)
    loss, cache = core.softmax_focal_forward(x, y, **kw)
    assert loss == pytest.approx(naive_softmax_focal(x, y, axis=1, **kw), rel=1e-12)
    grad = core.softmax_focal_backward(cache, scale=0.5)
    check_gradient(lambda z: 0.5 * core.softmax_focal_forward(z, y, **kw)[0], grad, x,
                   eps=1e-5, rtol=1e-6, atol=1e-8)
    if ignore_label is not None:
        assert np.all(grad[0, :, 0, :2] == 0)


@pytest.mark.parametrize("axis, shape, label_shape", [
    (1, (4, 5), (4,)), (-1, (3, 2, 4), (3, 2)), (2, (2, 3, 4, 2), (2, 3, 2)), (0, (3, 4), (4,)),
])
def test_softmax_focal_axis(axis, shape, label_shape):
    x = RNG.randn(*shape) * 2
    C = shape[axis]
    y = RNG.randint(0, C, label_shape).astype(np.float64)
    kw = dict(gamma=1.5, alpha=list(np.linspace(0.5, 1.5, C)), ignore_label=None,
              normalization="BATCH_SIZE")
    loss, cache = core.softmax_focal_forward(x, y, axis=axis, **kw)
    assert loss == pytest.approx(naive_softmax_focal(x, y, axis=axis, **kw), rel=1e-12)
    check_gradient(lambda z: core.softmax_focal_forward(z, y, axis=axis, **kw)[0],
                   core.softmax_focal_backward(cache), x, eps=1e-5, rtol=1e-6, atol=1e-8)
    p = np.exp(x - x.max(axis, keepdims=True))
    np.testing.assert_allclose(core.softmax_focal_prob(cache), p / p.sum(axis, keepdims=True),
                               rtol=1e-12)


def test_softmax_gamma_zero_alpha_one_is_softmax_cross_entropy():
    x, y = RNG.randn(6, 4) * 3, RNG.randint(0, 4, 6)
    loss, cache = core.softmax_focal_forward(x, y, gamma=0, alpha=1)
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(6), y]).mean(), rel=1e-13)
    np.testing.assert_allclose(core.softmax_focal_backward(cache), (p - np.eye(4)[y]) / 6, rtol=1e-12,
                               atol=1e-16)


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9])
def test_softmax_gamma_below_one_near_and_at_the_limit(gamma):
    # the label's score far above the rest: q = 1 - p_y -> 0
    x = np.array([[5.0, 0, 0], [15.0, 0, -1], [30.0, 1, 0], [36.0, 0, 0]])
    y = np.zeros(4)
    kw = dict(gamma=gamma, normalization="NONE")
    for i in range(len(x)):          # one row at a time: each its own scale
        xi, yi = x[i:i + 1], y[i:i + 1]
        loss, cache = core.softmax_focal_forward(xi, yi, **kw)
        grad = core.softmax_focal_backward(cache)
        assert 0 < loss and np.all(np.isfinite(grad))
        check_gradient(lambda z: core.softmax_focal_forward(z, yi, **kw)[0], grad, xi, eps=1e-4,
                       rtol=1e-5, atol=1e-300)
    for dtype in (np.float64, np.float32):
        big = np.array([[1e4, 0, 0], [800, -800, 0]], dtype)
        loss, cache = core.softmax_focal_forward(big, np.zeros(2), **kw)
        grad = core.softmax_focal_backward(cache)
        assert loss == 0 and np.all(grad == 0) and grad.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_logits_of_1e4_are_exact_and_finite(dtype, gamma):
    x = np.array([[1e4, -1e4, 0], [-1e4, 1e4, 1e4]], dtype)
    y = np.array([1, 0])
    loss, cache = core.softmax_focal_forward(x, y, gamma=gamma, alpha=[0.5, 2, 1],
                                             normalization="NONE")
    # both wrong: p_y = 0 exactly, q = 1, -log p_y = 2e4 and 2e4 + log 2
    assert loss == pytest.approx(2 * 2e4 + 0.5 * (2e4 + np.log(2)), rel=1e-6)
    grad = core.softmax_focal_backward(cache)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[2, -2, 0], [-0.5, 0.25, 0.25]], atol=1e-6)


def test_softmax_bad_inputs():
    with pytest.raises(ValueError, match=r"SoftmaxFocalLoss: bottom 'label' holds 3.0 at index \(1,\)"):
        core.softmax_focal_forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"SoftmaxFocalLoss: 'alpha' has 2 weight\(s\) but bottom 'scores' "
                                         r"has 3 classes"):
        core.softmax_focal_forward(np.zeros((2, 3)), np.zeros(2), alpha=[1, 1])
    with pytest.raises(ValueError, match=r"SoftmaxFocalLoss: bottom 'label' must hold one label per position"):
        core.softmax_focal_forward(np.zeros((2, 3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match=r"SoftmaxFocalLoss: 'axis' must be in \[-2, 2\)"):
        core.softmax_focal_forward(np.zeros((2, 3)), np.zeros(2), axis=2)
    with pytest.raises(ValueError, match=r"SoftmaxFocalLoss: 'normalization' must be one of VALID, FULL"):
        core.softmax_focal_forward(np.zeros((2, 3)), np.zeros(2), normalization="POSITIVES")
    with pytest.raises(ValueError, match=r"non-finite value inf"):
        core.softmax_focal_forward(np.array([[0, np.inf]]), np.zeros(1))
