"""MarginProduct's NumPy core: the logits against an arccos reference, exact gradients (float64
finite differences away from the kinks), the kinks themselves (cos = +-1), zero norms, float32."""

import itertools
import math

import numpy as np
import pytest

from caffe_losses.glue.testing import check_gradient
from caffe_losses.losses.margin import core


def reference_logits(x, w, y, *, scale, feature_norm=False, m1=1, m2=0.0, m3=0.0, easy_margin=False, lam=0.0):
    """The definitions, with arccos (float64): issue 22's formulas, written independently of the core."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    v = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = np.clip(u @ v.T, -1, 1)
    s = np.linalg.norm(x, axis=1) if feature_norm else np.full(len(x), scale)
    z = cos * s[:, None]
    for i, label in enumerate(y):
        t = cos[i, label]
        theta = math.acos(t)
        if m1 > 1:
            k = min(int(theta * m1 / math.pi), m1 - 1)
            psi = (-1) ** k * math.cos(m1 * theta) - 2 * k
            g = (lam * t + psi) / (1 + lam)
        elif m2 == 0:
            g = t - m3
        elif easy_margin:
            g = (math.cos(theta + m2) if t > 0 else t) - m3
        else:     # insightface: cos(theta + m2) where theta + m2 < pi, else cos(theta) - m2 sin(m2)
            g = (math.cos(theta + m2) if t > math.cos(math.pi - m2) else t - m2 * math.sin(m2)) - m3
        z[i, label] = s[i] * g
    return z


SETTINGS = [
    dict(m2=0.5), dict(m2=0.5, m3=0.2), dict(m2=0.0, m3=0.35), dict(m2=0.0),
    dict(m2=0.5, easy_margin=True), dict(m2=0.3, m3=0.2, easy_margin=True), dict(m2=1.2),
    dict(m1=2, lam=0.0), dict(m1=3, lam=0.5), dict(m1=4, lam=5.0), dict(m1=4, lam=0.0),
]


def _data(seed, n=7, d=5, c=6, dtype=np.float64):
    rng = np.random.RandomState(seed)
    return (rng.randn(n, d).astype(dtype), rng.randn(c, d).astype(dtype),
            rng.randint(0, c, n), rng.randn(n, c).astype(dtype))


@pytest.mark.parametrize("kw,feature_norm", list(itertools.product(SETTINGS, (False, True))))
def test_logits_match_the_arccos_reference(kw, feature_norm):
    x, w, y, _ = _data(1)
    z, _ = core.margin_forward(x, w, y, scale=3.0, feature_norm=feature_norm, **kw)
    np.testing.assert_allclose(z, reference_logits(x, w, y, scale=3.0, feature_norm=feature_norm, **kw),
                               rtol=1e-12, atol=1e-12)


def _far_from_kinks(x, w, y, kw):
    """True when no target cosine is within 1e-3 of a kink (the fallback threshold, 0, +-1, cos(j pi / m1))."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    v = w / np.linalg.norm(w, axis=1, keepdims=True)
    t = (u * v[y]).sum(1)
    kinks = [1.0, -1.0]
    if kw.get("m2", 0) > 0:
        kinks.append(0.0 if kw.get("easy_margin") else -math.cos(kw["m2"]))
    return np.abs(t[:, None] - np.array(kinks)).min() > 1e-3


@pytest.mark.parametrize("kw,feature_norm,ignore", list(itertools.product(SETTINGS, (False, True), (None, 2))))
def test_exact_gradients_of_features_and_weights(kw, feature_norm, ignore):
    for seed in range(2, 40):
        x, w, y, dz = _data(seed)
        if _far_from_kinks(x, w, y, kw):
            break
    opts = dict(scale=2.5, feature_norm=feature_norm, ignore_label=ignore, **kw)
    _, cache = core.margin_forward(x, w, y, **opts)
    gx, gw = core.margin_backward(cache, dz)
    check_gradient(lambda a: (core.margin_forward(a, w, y, **opts)[0] * dz).sum(), gx, x, rtol=1e-6, atol=1e-8)
    check_gradient(lambda a: (core.margin_forward(x, a, y, **opts)[0] * dz).sum(), gw, w, rtol=1e-6, atol=1e-8,
                   name="weights")


def test_both_sides_of_arcface_fallback_and_easy_margin_are_checked():
    # the data of the gradient test visits both branches (else that test would not cover the fallback)
    x, w, y, _ = _data(2, n=40)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    v = w / np.linalg.norm(w, axis=1, keepdims=True)
    t = (u * v[y]).sum(1)
    assert (t > -math.cos(1.2)).any() and (t <= -math.cos(1.2)).any()
    assert (t > 0).any() and (t <= 0).any()
    z, _ = core.margin_forward(x, w, y, scale=1.0, m2=1.2)
    fallback = t <= -math.cos(1.2)
    np.testing.assert_allclose(z[fallback, y[fallback]], t[fallback] - 1.2 * math.sin(1.2))


def test_arcface_fallback_is_monotonic_and_below_cos():
    t = np.linspace(-1, 1, 2001)
    g, a, b = core.target_margin(t, np.sqrt(1 - t * t), m2=0.5)
    assert (g <= t + 1e-12).all()                       # the margin never raises the target logit
    assert (np.diff(g) >= -1e-12).all()                 # monotonic in cos(theta)


@pytest.mark.parametrize("m1", [2, 3, 4])
def test_sphereface_psi_is_continuous_and_decreasing_in_theta(m1):
    theta = np.linspace(0, math.pi, 4001)
    t = np.cos(theta)
    g, a, _ = core.target_margin(t, np.sin(theta), m1=m1, lam=0.0)
    k = np.minimum((theta * m1 / math.pi).astype(int), m1 - 1)
    np.testing.assert_allclose(g, (-1.0) ** k * np.cos(m1 * theta) - 2 * k, atol=1e-9)
    assert (np.diff(g) <= 1e-12).all()
    assert g[-1] == pytest.approx(-2 * m1 + 1)          # psi(pi) = -(2 m1 - 1)
    # the slope: d psi / dt = (-1)^k m1 sin(m1 theta) / sin(theta)  (t away from +-1)
    inner = slice(5, -5)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (-1.0) ** k * m1 * np.sin(m1 * theta) / np.sin(theta)
    np.testing.assert_allclose(a[inner], slope[inner], rtol=1e-7, atol=1e-7)


def test_sphereface_lambda_as_the_fork_computes_it():
    # wy1iu/sphereface margin_inner_product_layer.cpp: lambda = max(base (1 + gamma iter)^-power, lambda_min)
    assert core.sphereface_lambda(1, base=1000, gamma=0.12, power=1, lambda_min=5) == pytest.approx(1000 / 1.12)
    assert core.sphereface_lambda(10 ** 6, base=1000, gamma=0.12, power=1, lambda_min=5) == 5
    assert core.sphereface_lambda(3) == 1.0             # the fork's defaults: base 1, gamma 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", SETTINGS)
def test_feature_equal_to_its_class_weight(dtype, kw):
    # cos(theta) = +1 exactly (and -1 for the opposite): arccos's derivative is infinite there
    x, w, y, dz = _data(3, dtype=dtype)
    x[0] = 3 * w[y[0]]
    x[1] = -2 * w[y[1]]
    z, cache = core.margin_forward(x, w, y, scale=2.0, **kw)
    gx, gw = core.margin_backward(cache, dz)
    assert np.isfinite(z).all() and np.isfinite(gx).all() and np.isfinite(gw).all()
    ref = reference_logits(x.astype(np.float64), w.astype(np.float64), y, scale=2.0, **kw)
    np.testing.assert_allclose(z, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_nearly_aligned_feature_keeps_its_angle_in_float32():
    # sqrt(1 - t^2) loses every digit near t = 1 in float32; the core takes sin(theta) from the vectors
    w = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    x = np.array([[1.0, 1e-4, 0.0]], np.float32)
    z, _ = core.margin_forward(x, w, np.array([0]), scale=1.0, m2=0.5)
    assert z[0, 0] == pytest.approx(math.cos(1e-4 + 0.5), rel=1e-6)


@pytest.mark.parametrize("where", ["features", "weights"])
@pytest.mark.parametrize("bad", [0.0, np.nan, np.inf])
def test_zero_or_non_finite_rows_are_refused_with_their_index(where, bad):
    x, w, y, _ = _data(4)
    (x if where == "features" else w)[2] = bad
    with pytest.raises(ValueError, match="row 2 has norm"):
        core.margin_forward(x, w, y, scale=2.0)


def test_huge_and_tiny_float32_features():
    x, w, y, dz = _data(5, dtype=np.float32)
    for factor in (1e20, 1e-30):
        z, cache = core.margin_forward(x * np.float32(factor), w, y, scale=64.0, m2=0.5)
        ref, _ = core.margin_forward(x, w, y, scale=64.0, m2=0.5)
        np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-4)
        gx, gw = core.margin_backward(cache, dz)
        assert np.isfinite(gx).all() and np.isfinite(gw).all()


def test_float32_agrees_with_float64():
    x, w, y, dz = _data(6)
    for kw in SETTINGS:
        z64, c64 = core.margin_forward(x, w, y, scale=4.0, **kw)
        z32, c32 = core.margin_forward(x.astype(np.float32), w.astype(np.float32), y, scale=4.0, **kw)
        assert z32.dtype == np.float32
        np.testing.assert_allclose(z32, z64, rtol=1e-4, atol=1e-4)
        for a, b in zip(core.margin_backward(c32, dz.astype(np.float32)), core.margin_backward(c64, dz)):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_without_labels_the_logits_are_plain_scaled_cosines():
    x, w, _, _ = _data(7)
    z, _ = core.margin_forward(x, w, None, scale=5.0, m2=0.5, m3=0.3)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    v = w / np.linalg.norm(w, axis=1, keepdims=True)
    np.testing.assert_allclose(z, 5.0 * u @ v.T)


def test_labels_out_of_range_and_ignored():
    x, w, y, _ = _data(8)
    with pytest.raises(ValueError, match=r"bottom 'label' holds 6\.0 at index \(1,\)"):
        core.margin_forward(x, w, np.where(np.arange(7) == 1, 6, y), scale=2.0)
    y2 = y.copy()
    y2[3] = -1
    z, _ = core.margin_forward(x, w, y2, scale=2.0, ignore_label=-1)
    plain, _ = core.margin_forward(x, w, None, scale=2.0)
    np.testing.assert_allclose(z[3], plain[3])
    assert not np.allclose(z[0], plain[0])
