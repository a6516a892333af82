"""The weighted sigmoid cross-entropy core, in float64 NumPy (no net)."""

import numpy as np
import pytest

from caffe_losses.losses.common import softplus
from caffe_losses.losses.common import check_targets
from caffe_losses.losses.sigmoid.core import weighted_sigmoid_cross_entropy_kernel, weighted_sigmoid_cross_entropy_backward as backward, weighted_sigmoid_cross_entropy_forward as forward
from caffe_losses.glue.testing import check_gradient

RNG = np.random.RandomState(4)
X = RNG.randn(3, 4, 5) * 3                      # logits, N x C x inner
T_SOFT = RNG.rand(3, 4, 5)                      # soft targets
T_BIN = (RNG.rand(3, 4, 5) < 0.3).astype(np.float64)
T_IGN = T_BIN.copy()
T_IGN[0, 1, :3] = 255
T_IGN[2, :, 4] = 255


def naive(x, t, pos_weight=1.0, neg_weight=1.0, ignore_label=None, norm=1.0):
    """The textbook definition -[w_p t log p + w_n (1 - t) log(1 - p)], safe for |x| < 30."""
    p = 1.0 / (1.0 + np.exp(-x))
    valid = np.ones(t.shape, bool) if ignore_label is None else t != ignore_label
    t = np.where(valid, t, 0.0)
    wp = np.reshape(pos_weight, (1, -1, 1)) if np.ndim(pos_weight) else pos_weight
    l = -(wp * t * np.log(p) + neg_weight * (1 - t) * np.log(1 - p))
    return np.sum(np.where(valid, l, 0.0)) / norm


def loss_of(x, t, **kw):
    return forward(x, t, **kw)[0]


def grad_of(x, t, **kw):
    return backward(forward(x, t, **kw)[1]).copy()


CONFIGS = [
    dict(),
    dict(pos_weight=3.0),
    dict(pos_weight=2.5, neg_weight=0.4),
    dict(pos_weight=[1.0, 4.0, 0.5, 10.0]),
    dict(pos_weight=[1.0, 4.0, 0.0, 10.0], neg_weight=2.0),
]


@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("targets", ["soft", "ignored"])
def test_matches_the_textbook_definition(kw, targets):
    t, ign = (T_SOFT, None) if targets == "soft" else (T_IGN, 255)
    got = loss_of(X, t, ignore_label=ign, normalization="NONE", **kw)
    want = naive(X, t, kw.get("pos_weight", 1.0), kw.get("neg_weight", 1.0), ign)
    assert got == pytest.approx(want, rel=1e-12)


def test_pytorch_bce_with_logits_form():
    # PyTorch's documented form (see ../shared/ANCHORS.md):
    # l = (1 - y) x + (1 + (pw - 1) y) softplus(-x), grad (pw y + 1 - y) sigmoid(x) - pw y
    pw = np.array([1.0, 4.0, 0.5, 10.0]).reshape(1, 4, 1)
    l = (1 - T_SOFT) * X + (1 + (pw - 1) * T_SOFT) * softplus(-X)
    assert loss_of(X, T_SOFT, pos_weight=pw.ravel().tolist(), normalization="FULL") == \
        pytest.approx(l.mean(), rel=1e-12)
    g = ((pw * T_SOFT + 1 - T_SOFT) / (1 + np.exp(-X)) - pw * T_SOFT) / X.size
    np.testing.assert_allclose(grad_of(X, T_SOFT, pos_weight=pw.ravel().tolist(),
                                       normalization="FULL"), g, rtol=1e-12, atol=1e-17)


def test_golden_value_at_zero_logits():
    # x = 0: p = 1/2, so each element costs (w_p t + w_n (1 - t)) log 2 and its
    # gradient is (w_p t + w_n (1 - t)) / 2 - w_p t (derived by hand).
    t = np.array([[1.0, 0.0, 0.25]])
    loss, cache = forward(np.zeros((1, 3)), t, pos_weight=3.0, neg_weight=2.0, normalization="NONE")
    assert loss == pytest.approx((3 + 2 + (0.75 + 1.5)) * np.log(2), rel=1e-15)
    np.testing.assert_allclose(backward(cache), [[-1.5, 1.0, 2.25 / 2 - 0.75]], rtol=1e-15)


@pytest.mark.parametrize("mode", ["NONE", "BATCH_SIZE", "FULL", "VALID"])
def test_normalization_modes_as_caffe(mode):
    # LossParameter.NormalizationMode: NONE 1, BATCH_SIZE N, FULL all elements,
    # VALID the non-ignored ones (Caffe's get_normalizer)
    divisor = {"NONE": 1, "BATCH_SIZE": 3, "FULL": 60, "VALID": int(np.sum(T_IGN != 255))}[mode]
    assert 0 < np.sum(T_IGN == 255) < 60
    got = loss_of(X, T_IGN, ignore_label=255, normalization=mode, pos_weight=2.0)
    assert got == pytest.approx(naive(X, T_IGN, 2.0, 1.0, 255) / divisor, rel=1e-12)


def test_default_normalization_is_batch_size_like_native():
    assert loss_of(X, T_SOFT) == pytest.approx(naive(X, T_SOFT) / 3, rel=1e-12)


def test_all_ignored_gives_zero_and_divisor_one():
    t = np.full((2, 3), -1.0)
    loss, cache = forward(RNG.randn(2, 3), t, ignore_label=-1, normalization="VALID")
    assert loss == 0.0 and np.all(backward(cache) == 0)


@pytest.mark.parametrize("kw", CONFIGS + [dict(balance="auto"),
                                          dict(balance="auto", pos_weight=[1.0, 2.0, 3.0, 4.0],
                                               neg_weight=1.1)])
@pytest.mark.parametrize("targets", ["soft", "binary", "ignored"])
def test_gradient_matches_finite_differences(kw, targets):
    t = {"soft": T_SOFT, "binary": T_BIN, "ignored": T_IGN}[targets]
    ign = 255 if targets == "ignored" else None
    kw = dict(kw, ignore_label=ign, normalization="VALID")
    check_gradient(lambda v: loss_of(v, t, **kw), grad_of(X, t, **kw), X, name="scores")


def test_ignored_elements_have_zero_gradient_and_no_loss():
    g = grad_of(X, T_IGN, ignore_label=255, pos_weight=[1.0, 4.0, 0.5, 10.0])
    assert np.all(g[T_IGN == 255] == 0) and np.all(g[T_IGN != 255] != 0)
    x2 = X.copy()
    x2[T_IGN == 255] = RNG.randn(int(np.sum(T_IGN == 255))) * 50        # changing ignored logits changes nothing
    assert loss_of(x2, T_IGN, ignore_label=255) == loss_of(X, T_IGN, ignore_label=255)


def test_balance_auto_is_hed_per_sample_weights():
    # HED eq. 2 by hand, per sample over its non-ignored 0/1 targets:
    # beta = |Y-|/|Y| on positives, 1 - beta = |Y+|/|Y| on negatives.
    want = 0.0
    for i in range(3):
        valid = T_IGN[i] != 255
        pos, neg = np.sum(T_IGN[i][valid] == 1), np.sum(T_IGN[i][valid] == 0)
        beta = neg / (pos + neg)
        want += naive(X[i:i + 1], T_IGN[i:i + 1], beta, 1 - beta, 255)
    got = loss_of(X, T_IGN, ignore_label=255, balance="auto", normalization="NONE")
    assert got == pytest.approx(want, rel=1e-12)
    # pos_weight / neg_weight multiply the balance (e.g. RCF's 1.1 on negatives)
    got = loss_of(X, T_IGN, ignore_label=255, balance="auto", neg_weight=1.1, pos_weight=2.0,
                  normalization="NONE")
    want2 = sum(naive(X[i:i + 1], T_IGN[i:i + 1], 2.0 * b, 1.1 * (1 - b), 255) for i, b in
                enumerate([np.sum(T_IGN[i] == 0) / np.sum(T_IGN[i] != 255) for i in range(3)]))
    assert got == pytest.approx(want2, rel=1e-12)


def test_balance_auto_sample_without_positives_adds_nothing():
    t = np.zeros((2, 1, 4))
    t[1, 0, 0] = 1
    x = RNG.randn(2, 1, 4)
    loss, cache = forward(x, t, balance="auto", normalization="NONE")
    assert loss == pytest.approx(naive(x[1:], t[1:], 0.75, 0.25), rel=1e-12)
    assert np.all(backward(cache)[0] == 0)


@pytest.mark.parametrize("kernel", [False, True])
def test_extreme_logits_are_exact_in_float64_and_float32(kernel):
    # x = -1e4 with t = 1 costs w_p * 1e4 (softplus(1e4) = 1e4 exactly); x = 1e4
    # with t = 0 costs w_n * 1e4; the right answers cost exp(-1e4) = 0. Gradients:
    # (w_p t + w_n (1-t)) p - w_p t with p = 0 or 1 exactly.
    x = np.array([[-1e4, 1e4, -1e4, 1e4, -1e4, 1e4]])
    t = np.array([[1.0, 0.0, 0.0, 1.0, 0.5, 0.5]])
    want_l = 3.0 * 1e4 + 2.0 * 1e4 + 0 + 0 + (3.0 * 0.5 * 1e4) + (2.0 * 0.5 * 1e4)
    want_g = [-3.0, 2.0, 0.0, 0.0, -1.5, 1.0]
    for dtype in (np.float64, np.float32):
        with np.errstate(all="raise", under="ignore"):
            loss, cache = (weighted_sigmoid_cross_entropy_kernel if kernel else forward)(
                x.astype(dtype), t.astype(dtype), pos_weight=3.0, neg_weight=2.0, normalization="NONE")
            g = backward(cache)
        assert g.dtype == dtype
        assert loss == want_l
        assert g.ravel().tolist() == want_g


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", [False, True])
def test_tiny_terms_are_not_lost(dtype, kernel):
    # t = 1, x = 40: the loss is softplus(-40) = 4.25e-18, not 0 (log(1 + exp(-x))
    # rounds it away); t = 0, x = -40 likewise.
    fwd = weighted_sigmoid_cross_entropy_kernel if kernel else forward
    loss, _ = fwd(np.array([[40.0, -40.0]], dtype), np.array([[1.0, 0.0]], dtype), normalization="NONE")
    assert loss == pytest.approx(2 * np.exp(-40.0), rel=1e-12 if dtype == np.float64 else 1e-6)


def test_float32_close_to_float64():
    x32, t32 = X.astype(np.float32), T_SOFT.astype(np.float32)
    l32, c32 = forward(x32, t32, pos_weight=[1.0, 4.0, 0.5, 10.0])
    l64, c64 = forward(x32.astype(np.float64), t32.astype(np.float64), pos_weight=[1.0, 4.0, 0.5, 10.0])
    assert l32 == pytest.approx(l64, rel=1e-6)
    # the gradient is c p - a with c up to 10/3 here: float32 rounding of c p is ~2e-7
    np.testing.assert_allclose(backward(c32), backward(c64), rtol=1e-5, atol=1e-6)


def test_backward_scale_and_out():
    loss, cache = forward(X, T_SOFT, pos_weight=2.0, neg_weight=0.5)
    g = backward(cache).copy()
    out = np.empty_like(X)
    assert backward(cache, scale=-3.0, out=out) is out
    np.testing.assert_allclose(out, -3.0 * g, rtol=1e-12, atol=1e-15)


def test_bad_input_messages():
    name = "weighted_sigmoid_cross_entropy"
    with pytest.raises(ValueError, match=rf"{name}: bottom 'target' holds 1.5 at index \(1, 2\); "
                                         r"expected values in \[0, 1\] \(1 bad value"):
        t = np.zeros((2, 3))
        t[1, 2] = 1.5
        forward(np.zeros((2, 3)), t)
    with pytest.raises(ValueError, match=r"holds -1.0 at index \(0, 0\).*or the ignore_label 255"):
        forward(np.zeros((2, 3)), np.array([[-1.0, 255, 0], [0, 0, 0]]), ignore_label=255)
    with pytest.raises(ValueError, match=r"bottom 'target' holds nan"):
        forward(np.zeros((2, 3)), np.array([[np.nan, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"'pos_weight' has 2 weight\(s\) but bottom 'scores' \(2, 3\) has 3 "
                                         r"channel\(s\) along axis 1"):
        forward(np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"'pos_weight' must hold finite numbers >= 0; item 1 is -2"):
        forward(np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=[1.0, -2.0, 1.0])
    with pytest.raises(ValueError, match=r"'neg_weight' must be a finite number >= 0"):
        forward(np.zeros((2, 3)), np.zeros((2, 3)), neg_weight=-1.0)
    with pytest.raises(ValueError, match=r"bottom 'target' must have as many values as 'scores' "
                                         r"\(2, 3\): expected 6, got 5"):
        forward(np.zeros((2, 3)), np.zeros(5))
    with pytest.raises(ValueError, match=r"'balance' must be one of none, auto"):
        forward(np.zeros((2, 3)), np.zeros((2, 3)), balance="hed")
    with pytest.raises(ValueError, match=r"bottom 'scores' holds a non-finite value inf at index \(0, 1\)"):
        forward(np.array([[0.0, np.inf, 0.0]]), np.zeros((1, 3)))


def test_check_targets_mask():
    t = np.array([0.0, 1.0, 0.5, 255.0])
    assert check_targets("o", t, 255).tolist() == [False, False, False, True]
    assert check_targets("o", t[:3]) is None
    assert check_targets("o", t[:3], 255) is None     # nothing ignored: no mask
