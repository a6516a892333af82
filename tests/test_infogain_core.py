"""The NumPy cores of the infogain losses, in float64: formulas, gradients, extremes."""

import numpy as np
import pytest

from caffe_losses.losses.infogain import core as ig
from caffe_losses.losses.common import log_softmax, softmax
from caffe_losses.glue.testing import check_gradient

RNG = np.random.RandomState(3)
IGN = 255


def reference_loss(x, label, H, axis=1, ignore_label=None, normalization="VALID"):
    """The definition, written plainly: -(1/norm) sum_i sum_l H[y_i, l] log p_il."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)        # (..., C)
    logp = log_softmax(x, axis=-1)
    y = np.asarray(label, np.float64).reshape(x.shape[:-1])
    valid = np.ones(y.shape, bool) if ignore_label is None else y != ignore_label
    total = 0.0
    for idx in np.ndindex(*y.shape):   # clarity over speed: this is the reference
        if valid[idx]:
            total -= np.dot(H[int(y[idx])], logp[idx])
    norm = {"VALID": valid.sum(), "FULL": y.size, "BATCH_SIZE": x.shape[0] if axis != 0 else 1,
            "NONE": 1}[normalization]
    return total / max(norm, 1)


def random_case(shape, axis=1, ignore=False, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(*shape) * 2
    C = shape[axis]
    lab_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    y = rng.randint(0, C, lab_shape).astype(np.float64)
    if ignore:
        y.flat[::3] = IGN
    return x, y, C


def test_golden_value_by_hand():
    # scores (0, ln 3) -> p = (1/4, 3/4); H = [[1, .5], [.5, 1]]; label 0:
    # L = -(1 * ln(1/4) + 0.5 * ln(3/4)) = 2 ln 2 + 0.5 ln(4/3)   (hand derivation)
    x = np.array([[0.0, np.log(3.0)]])
    H = np.array([[1.0, 0.5], [0.5, 1.0]])
    loss, cache = ig.softmax_infogain_forward(x, np.array([0.0]), H)
    assert loss == pytest.approx(2 * np.log(2) + 0.5 * np.log(4 / 3), rel=1e-14)
    # gradient (p * rowsum - H[y]) = (1/4 * 1.5 - 1, 3/4 * 1.5 - 0.5) = (-0.625, 0.625)
    np.testing.assert_allclose(ig.softmax_infogain_backward(cache), [[-0.625, 0.625]], rtol=1e-14)
    # the same on probabilities: L and dL/dp = -H[y] / p = (-4, -2/3)
    loss_p, cache_p = ig.infogain_forward(softmax(x), np.array([0.0]), H)
    assert loss_p == pytest.approx(loss, rel=1e-14)
    np.testing.assert_allclose(ig.infogain_backward(cache_p), [[-4.0, -2 / 3]], rtol=1e-14)


@pytest.mark.parametrize("normalization", ["VALID", "FULL", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("shape,axis", [((5, 4), 1), ((3, 4, 2, 3), 1), ((2, 3, 4), -1)])
def test_matches_definition(shape, axis, normalization):
    x, y, C = random_case(shape, axis, ignore=True)
    H = RNG.rand(C, C)
    loss, _ = ig.softmax_infogain_forward(x, y, H, axis=axis, ignore_label=IGN,
                                          normalization=normalization)
    if axis == -1 and normalization == "BATCH_SIZE":
        # outer = product of the dims before the class axis
        expected = reference_loss(x, y, H, axis, IGN, "NONE") / (shape[0] * shape[1])
    else:
        expected = reference_loss(x, y, H, axis, IGN, normalization)
    assert loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", ["full", "diagonal", "identity"])
@pytest.mark.parametrize("shape,ignore", [((4, 5), False), ((2, 4, 3, 2), True)])
def test_softmax_infogain_gradient_finite_differences(kind, shape, ignore):
    x, y, C = random_case(shape, ignore=ignore, seed=1)
    H = {"full": RNG.rand(C, C), "identity": np.eye(C)}.get(kind, np.diag(RNG.rand(C) + 0.5))
    info = ig.infogain_matrix(H)
    assert (info.diagonal is not None) == (kind in ("diagonal", "identity"))
    kw = dict(ignore_label=IGN if ignore else None)
    loss, cache = ig.softmax_infogain_forward(x, y, info, **kw)
    grad = ig.softmax_infogain_backward(cache)
    check_gradient(lambda v: ig.softmax_infogain_forward(v, y, info, **kw)[0], grad, x)
    if ignore:   # ignored positions get exactly zero gradient
        ignored = np.moveaxis(grad, 1, -1)[y.reshape(2, 3, 2) == IGN]
        assert ignored.size and np.all(ignored == 0)


def test_identity_is_softmax_cross_entropy():
    x, y, C = random_case((8, 6), seed=4)
    loss, cache = ig.softmax_infogain_forward(x, y, np.eye(C))
    yi = y.astype(int)
    expected = -np.mean(log_softmax(x)[np.arange(8), yi])
    assert loss == pytest.approx(expected, rel=1e-13)
    onehot = np.eye(C)[yi]
    np.testing.assert_allclose(ig.softmax_infogain_backward(cache), (softmax(x) - onehot) / 8,
                               rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extreme_logits_are_exact(dtype):
    # label 1 scored -1e4 while class 0 has 1e4: log p_1 = -2e4 - log(1 + e^-2e4 + e^-1e4) = -2e4
    x = np.array([[1e4, -1e4, 0.0], [0.0, 1e4, -1e4]], dtype)
    y = np.array([1.0, 1.0])
    H = np.array([[1.0, 0.2, 0.0], [0.3, 1.0, 0.1], [0.0, 0.0, 2.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # underflow to 0 is fine
        loss, cache = ig.softmax_infogain_forward(x, y, H)
        grad = ig.softmax_infogain_backward(cache)
    # sample 0: -(0.3 * log p_0 + 1 * log p_1 + 0.1 * log p_2) = 0 + 2e4 + 0.1 * 1e4
    # sample 1: -(0.3 * (-1e4) + 0 + 0.1 * (-2e4)) = 5e3; mean over 2 samples
    assert loss == pytest.approx((2.1e4 + 5e3) / 2, rel=1e-7)
    assert np.all(np.isfinite(grad))
    p = np.array([[1, 0, 0], [0, 1, 0]], np.float64)
    expected = (p * H.sum(1)[[1, 1]][:, None] - H[[1, 1]]) / 2     # (p rowsum - H[y]) / N
    np.testing.assert_allclose(grad, expected, atol=1e-7)
    # probabilities at exactly 0 in the classic form: finite, clamped at eps = 1e-20
    lp, cp = ig.infogain_forward(p.astype(dtype), y, H)
    gp = ig.infogain_backward(cp)
    # sample 0: -(0.3 log 1 + 1.0 log eps + 0.1 log eps); sample 1: -(0.3 log eps + 0.1 log eps)
    assert lp == pytest.approx(-(1.1 + 0.4) * np.log(1e-20) / 2, rel=1e-6)
    q = np.maximum(p, 1e-20)
    np.testing.assert_allclose(gp, -H[[1, 1]] / q / 2, rtol=1e-6)
    assert np.all(np.isfinite(gp))


def test_infogain_on_probabilities_gradient_finite_differences():
    rng = np.random.RandomState(5)
    p = rng.uniform(0.05, 0.95, (3, 4, 5))
    y = rng.randint(0, 4, (3, 5)).astype(float)
    y[0, 0] = IGN
    for H in (rng.rand(4, 4), np.diag(rng.rand(4) + 0.5)):
        loss, cache = ig.infogain_forward(p, y, H, ignore_label=IGN, normalization="FULL")
        grad = ig.infogain_backward(cache)
        check_gradient(lambda v: ig.infogain_forward(v, y, H, ignore_label=IGN,
                                                     normalization="FULL")[0], grad, p)
        assert np.all(grad[0, :, 0] == 0)


def test_infogain_on_softmax_composes_to_the_fused_gradient():
    # chain rule: J_softmax^T (-H[y] / p) = p * rowsum(H)[y] - H[y]
    x, y, C = random_case((5, 4), seed=6)
    H = RNG.rand(C, C)
    p = softmax(x)
    loss_p, cache_p = ig.infogain_forward(p, y, H)
    g_p = ig.infogain_backward(cache_p)
    through_softmax = p * (g_p - np.sum(g_p * p, axis=1, keepdims=True))
    loss, cache = ig.softmax_infogain_forward(x, y, H)
    assert loss_p == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(through_softmax, ig.softmax_infogain_backward(cache), rtol=1e-10)


def test_probabilities_outside_unit_interval_point_to_the_fused_layer():
    y = np.array([0.0, 1.0])
    with pytest.raises(ValueError, match=r"InfogainLoss: bottom 'prob' holds 2\.5 at index "
                                         r"\(1, 0\).*use SoftmaxWithInfogainLoss"):
        ig.infogain_forward(np.array([[0.5, 0.5], [2.5, -1.0]]), y, np.eye(2))
    with pytest.raises(ValueError, match="nan"):
        ig.infogain_forward(np.array([[0.5, np.nan], [0.5, 0.5]]), y, np.eye(2))


def test_infogain_matrix_validation():
    assert ig.infogain_matrix(np.eye(3).reshape(1, 1, 3, 3)).matrix.shape == (3, 3)
    with pytest.raises(ValueError, match=r"Own: H must be an L x L matrix.*Received shape \(9,\)"):
        ig.infogain_matrix(np.ones(9), owner="Own")
    with pytest.raises(ValueError, match=r"holds a negative value -1\.0 at H\[0, 1\]"):
        ig.infogain_matrix(np.array([[1.0, -1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"holds a non-finite value nan at H\[1, 1\]"):
        ig.infogain_matrix(np.array([[1.0, 0.0], [0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"H is 2 x 2, but the predictions have 3 classes"):
        ig.infogain_matrix(np.eye(2), 3)


def test_label_errors_name_value_and_position():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"bottom 'label' holds 4\.0 at index \(2,\)"):
        ig.softmax_infogain_forward(x, np.array([0.0, 1.0, 4.0]), np.eye(4))
    with pytest.raises(ValueError, match=r"bottom 'label' holds 1\.5 at index \(1,\)"):
        ig.softmax_infogain_forward(x, np.array([0.0, 1.5, 2.0]), np.eye(4))
    with pytest.raises(ValueError, match=r"expected 3 values, got 4"):
        ig.softmax_infogain_forward(x, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"bottom 'scores' holds a non-finite value nan at index \(0, 1\)"):
        ig.softmax_infogain_forward(np.array([[0.0, np.nan]]), np.array([0.0]), np.eye(2))
    with pytest.raises(ValueError, match=r"bottom 'scores' holds a non-finite value inf at index \(1, 0, 1, 1\)"):
        x = np.zeros((2, 2, 2, 2))
        x[1, 0, 1, 1] = np.inf
        ig.softmax_infogain_forward(x, np.zeros((2, 1, 2, 2)), np.eye(2))


# ---------------------------------------------------------------------------
# A diagonal H (class weights): exact at any gap between the scores
# ---------------------------------------------------------------------------

def reference(x, y, w, scale=1.0):
    """Class-weighted softmax loss and gradient in float64, from log_softmax."""
    x = x.astype(np.float64)
    yi = y.astype(int)
    n = len(yi)
    logp = log_softmax(x)
    wy = w[yi]
    loss = -np.sum(wy * logp[np.arange(n), yi]) / n
    onehot = np.eye(x.shape[1])[yi]
    grad = scale * wy[:, None] * (softmax(x) - onehot) / n
    return loss, grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gap", [3.0, 80.0, 100.0, 800.0, 1e4])
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("kernel", [False, True])
def test_class_weighted_softmax_is_exact_at_any_gap(dtype, gap, uniform, kernel):
    # row 0: a score `gap` above the label's (exp(gap) overflows float32 past 88,
    # float64 past 709); row 1: the label is the top score; row 2: ties
    C = 4
    x = np.array([[0.0, gap, -1.0, 2.0], [gap, 0.0, 1.0, -gap], [1.0, 1.0, 1.0, 1.0]], dtype)
    y = np.array([0.0, 0.0, 3.0])
    w = np.ones(C) if uniform else np.array([0.5, 2.0, 1.0, 3.0])
    forward, backward = ((ig.softmax_infogain_kernel, ig.softmax_infogain_kernel_backward)
                         if kernel else (ig.softmax_infogain_forward, ig.softmax_infogain_backward))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, cache = forward(x, y, np.diag(w).astype(dtype))
        grad = backward(cache, scale=2.0)
    expected, expected_grad = reference(x, y, w, scale=2.0)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert loss == pytest.approx(expected, rel=rtol)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol * 10, atol=rtol * 1e-2)
    prob = ig.softmax_infogain_kernel_prob if kernel else ig.softmax_infogain_prob
    np.testing.assert_allclose(prob(cache), softmax(x.astype(np.float64)), rtol=rtol * 10, atol=1e-30)


@pytest.mark.parametrize("forward", [ig.softmax_infogain_forward, ig.softmax_infogain_kernel])
def test_non_finite_scores_raise_with_a_diagonal_h(forward):
    x = np.zeros((3, 4))
    for bad in (np.nan, np.inf):
        x[1, 2] = bad
        with pytest.raises(ValueError, match=r"bottom 'scores' holds a non-finite value "
                                             rf"{bad} at index \(1, 2\)"):
            forward(x, np.zeros(3), np.eye(4))
