"""Every kernel against its reference: the same loss, gradient and errors over a generated grid.

A kernel is a faster variant of a core's reference with the same inputs and
results (``docs/DEVELOPING.md``).  The grid crosses every size or shape
threshold any kernel has or had (4096, 16384 and 65536 elements, 64
classes), spatial axes, every H kind (identity, one weight for all, class
weights, full), every weight case, ignore labels, the four normalizations,
extreme logits, float32 and float64.  Each case runs the reference and the
kernel on the same inputs and compares loss and gradient (and, for bad
inputs, the error message).
"""

import itertools
import zlib

import numpy as np
import pytest

from caffe_losses.losses import common
from caffe_losses.losses.infogain import core as ig
from caffe_losses.losses.sigmoid import core as sg

NORMALIZATIONS = ("VALID", "FULL", "BATCH_SIZE", "NONE")
# element counts on both sides of the old size thresholds
THRESHOLDS = (4096, 16384, 65536)
DTYPES = (np.float64, np.float32)


def seeded(*case):
    """A RandomState seeded by the case (``hash`` of a str changes from run to run)."""
    return np.random.RandomState(zlib.crc32(repr(case).encode()))


def tolerance(dtype):
    """(rtol of the loss, rtol and atol of the gradient) between two float computations."""
    return (1e-12, 1e-11, 1e-15) if dtype == np.float64 else (2e-6, 2e-5, 1e-6)


def assert_same(reference, kernel, dtype, grad_bound=None):
    """Equal losses, and gradients equal up to rounding of terms as large as ``grad_bound``.

    ``grad_bound`` bounds the terms a gradient entry is made of (e.g. ``(w_p t
    + w_n (1 - t)) p`` and ``w_p t`` over the normalizer): where they cancel,
    the rounding of each is what the two computations may differ by.  The
    default is the largest gradient entry.
    """
    (want, want_g), (got, got_g) = reference, kernel
    rtol, grad_rtol, grad_atol = tolerance(dtype)
    assert got == pytest.approx(want, rel=rtol, abs=1e-300)
    assert got_g.shape == want_g.shape and got_g.dtype == want_g.dtype
    if grad_bound is None:
        grad_bound = float(np.max(np.abs(want_g)))
    np.testing.assert_allclose(got_g, want_g, rtol=grad_rtol, atol=grad_atol * max(grad_bound, 1e-30))


def outcome(forward, backward, *args, **kw):
    """(loss, gradient times 1.5) or the error message."""
    try:
        loss, cache = forward(*args, **kw)
    except ValueError as err:
        return str(err)
    return loss, backward(cache, scale=1.5).copy()


# ---------------------------------------------------------------------------
# Infogain: the in-place kernel (no rows of a diagonal H)
# ---------------------------------------------------------------------------

def infogain_shapes():
    """(shape, axis) pairs: N x C across the class and element thresholds, and spatial layouts."""
    shapes = [((5, 3), 1), ((7, 63), 1), ((7, 64), 1), ((7, 65), 1), ((3, 4, 5, 6), 1),
              ((2, 3, 4), -1), ((3, 5, 2), 0), ((2, 64, 3), 1)]
    for count in THRESHOLDS:
        for c in (8, 64):
            for total in (count - c, count, count + c):
                shapes.append(((total // c, c), 1))
        shapes.append(((2, 4, count // 8 + 1), 1))          # spatial, just beyond the threshold
    return shapes


def make_h(kind, c, rng):
    return {"identity": np.eye(c), "same weight": 2.5 * np.eye(c),
            "class weights": np.diag(rng.rand(c) + 0.1),
            "a zero weight": np.diag(np.r_[0.0, rng.rand(c - 1) + 0.5]),
            "full": rng.rand(c, c), "full with zero rows": np.r_[np.zeros((1, c)), rng.rand(c - 1, c)]}[kind]


H_KINDS = ("identity", "same weight", "class weights", "a zero weight", "full", "full with zero rows")
IGNORE_CASES = ("none", "some", "all")


def infogain_grid():
    cases = itertools.cycle(itertools.product(H_KINDS, IGNORE_CASES, NORMALIZATIONS))
    for (shape, axis), dtype in itertools.product(infogain_shapes(), DTYPES):
        for _ in range(3):                        # every combination comes round; each size sees three
            yield shape, axis, dtype, *next(cases)


@pytest.mark.parametrize("shape, axis, dtype, h_kind, ignore, normalization", list(infogain_grid()))
def test_softmax_infogain_kernel(shape, axis, dtype, h_kind, ignore, normalization):
    rng = seeded(shape, axis, h_kind, ignore)
    outer, c, inner = common.canonical_shape(shape, axis)
    x = (rng.randn(*shape) * 4).astype(dtype)
    x.flat[::17] *= 50                            # a few confident scores (exp underflows to 0)
    y = rng.randint(0, c, outer * inner).astype(np.float64)
    if ignore == "some":
        y[::5] = 255
    elif ignore == "all":
        y[:] = 255
    H = make_h(h_kind, c, rng)
    kw = dict(axis=axis, ignore_label=None if ignore == "none" else 255, normalization=normalization)
    reference = outcome(ig.softmax_infogain_forward, ig.softmax_infogain_backward, x, y, H, **kw)
    # gradient entries are p rowsum(H)[y] - H[y, k], times 1.5 / norm
    valid = None if ignore == "none" else int(np.count_nonzero(y != 255))
    bound = 1.5 * H.sum(axis=1).max() / common.normalizer(normalization, outer, inner, valid)
    workspace = common.Workspace()
    for _ in range(2):                           # a reused workspace gives fresh results
        kernel = outcome(ig.softmax_infogain_kernel, ig.softmax_infogain_kernel_backward,
                         x, y, H, workspace=workspace, **kw)
        assert_same(reference, kernel, dtype, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h_kind", ["identity", "class weights"])
@pytest.mark.parametrize("gap", ["below", "above"])
def test_softmax_infogain_kernel_diagonal_overflow(dtype, h_kind, gap):
    """The diagonal path's one threshold: a score so far above its label's that ``exp(x - x_y)``
    overflows sends the batch to the general path; both sides give the reference's results."""
    limit = float(np.log(np.finfo(dtype).max))            # ~88.7 (float32), ~709.8 (float64)
    rng = seeded("overflow", dtype, h_kind, gap)
    x = rng.randn(6, 5).astype(dtype)
    x[2, 4] = x[2, 0] + (limit - 1 if gap == "below" else limit + 1)
    y = np.array([1.0, 3.0, 0.0, 2.0, 4.0, 0.0])
    H = make_h(h_kind, 5, rng)
    reference = outcome(ig.softmax_infogain_forward, ig.softmax_infogain_backward, x, y, H)
    _, cache = ig.softmax_infogain_kernel(x, y, H)
    assert (cache.rows is None) == (gap == "below")       # the path taken
    kernel = outcome(ig.softmax_infogain_kernel, ig.softmax_infogain_kernel_backward, x, y, H)
    assert_same(reference, kernel, dtype, 1.5 * H.sum(axis=1).max() / 6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", ["label", "nan score", "inf score", "label count", "H shape"])
def test_softmax_infogain_kernel_errors(dtype, bad):
    x = np.zeros((4, 5), dtype)
    y = np.array([0.0, 1.0, 2.0, 3.0])
    H = np.eye(5)
    if bad == "label":
        y[2] = 7
    elif bad == "nan score":
        x[1, 3] = np.nan
    elif bad == "inf score":
        x[2, 0] = np.inf
    elif bad == "label count":
        y = np.zeros(5)
    else:
        H = np.eye(4)
    reference = outcome(ig.softmax_infogain_forward, ig.softmax_infogain_backward, x, y, H)
    kernel = outcome(ig.softmax_infogain_kernel, ig.softmax_infogain_kernel_backward, x, y, H)
    assert isinstance(reference, str) and kernel == reference


# ---------------------------------------------------------------------------
# Weighted sigmoid cross-entropy: the in-place kernel
# ---------------------------------------------------------------------------

WEIGHTS = [
    dict(),
    dict(pos_weight=5.0),
    dict(pos_weight=0.25),
    dict(pos_weight=2.5, neg_weight=0.4),
    dict(pos_weight=0.0),
    dict(neg_weight=0.0),
    dict(pos_weight=0.0, neg_weight=0.0),
    dict(pos_weight="per channel"),
    dict(pos_weight="per channel with a zero", neg_weight=2.0),
    dict(balance="auto"),
    dict(balance="auto", pos_weight="per channel", neg_weight=1.1),
]
SIGMOID_IGNORE = (None, 255, 0, 1)      # 0 and 1 lie inside the target range


def sigmoid_shapes():
    shapes = [(3, 4), (3, 4, 5), (2, 3, 2, 2), (6,), (1, 1, 1)]
    for count in THRESHOLDS:
        for total in (count - 4, count, count + 4):
            shapes.append((4, total // 4))
        shapes.append((2, 1, count // 2 + 3))            # HED-like N x 1 x H x W, flattened
    return shapes


def sigmoid_grid():
    cases = itertools.cycle(itertools.product(range(len(WEIGHTS)), SIGMOID_IGNORE, NORMALIZATIONS,
                                              ("soft", "binary", "extreme")))
    for shape, dtype in itertools.product(sigmoid_shapes(), DTYPES):
        for _ in range(4):
            yield shape, dtype, *next(cases)


@pytest.mark.parametrize("shape, dtype, weights, ignore_label, normalization, data",
                         list(sigmoid_grid()))
def test_weighted_sigmoid_kernel(shape, dtype, weights, ignore_label, normalization, data):
    rng = seeded(shape, weights, ignore_label, data)
    x = rng.randn(*shape) * 3
    if data == "extreme":                        # +-20: log1p matters; +-1e4: exp underflows
        x = np.sign(x) * rng.choice([20.0, 40.0, 1e4], size=shape)
    t = rng.rand(*shape) if data == "soft" else (rng.rand(*shape) < 0.3).astype(np.float64)
    if ignore_label == 255:
        t.flat[::7] = 255
    x, t = x.astype(dtype), t.astype(dtype)
    kw = dict(WEIGHTS[weights], ignore_label=ignore_label, normalization=normalization)
    channels = sg.channel_shape(shape)[1]
    if kw.get("pos_weight") == "per channel":
        kw["pos_weight"] = list(rng.rand(channels) * 5)
    elif kw.get("pos_weight") == "per channel with a zero":
        kw["pos_weight"] = [0.0] + list(rng.rand(channels - 1) * 5)
    reference = outcome(sg.weighted_sigmoid_cross_entropy_forward,
                        sg.weighted_sigmoid_cross_entropy_backward, x, t, **kw)
    # gradient entries are (a + b) p - a, times 1.5 / norm, with a, b <= the weights
    n, c, inner = sg.channel_shape(shape)
    valid = None if ignore_label is None else int(np.count_nonzero(t != ignore_label))
    norm = common.normalizer(normalization, n, c * inner, valid)
    bound = 1.5 * (np.max(kw.get("pos_weight", 1.0)) + kw.get("neg_weight", 1.0)) / norm
    workspace = common.Workspace()
    for _ in range(2):                           # a reused workspace gives fresh results
        kernel = outcome(sg.weighted_sigmoid_cross_entropy_kernel,
                         sg.weighted_sigmoid_cross_entropy_backward, x, t, workspace=workspace, **kw)
        assert_same(reference, kernel, dtype, bound)


# -1e-45 is a float64 normal number but float32's smallest denormal
BAD_TARGETS = [1.5, -0.25, -1e-45, 1.0000001, np.nan, np.inf, -np.inf, 254.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", BAD_TARGETS)
@pytest.mark.parametrize("kw", [dict(), dict(pos_weight=0.25), dict(pos_weight=[1.0, 4.0, 0.5, 10.0]),
                                dict(ignore_label=255), dict(balance="auto")])
def test_weighted_sigmoid_kernel_errors(dtype, value, kw):
    rng = np.random.RandomState(1)
    x = rng.randn(3, 4, 5).astype(dtype)
    t = (rng.rand(3, 4, 5) < 0.3).astype(dtype)
    t[1, 2, 3] = value
    reference = outcome(sg.weighted_sigmoid_cross_entropy_forward,
                        sg.weighted_sigmoid_cross_entropy_backward, x, t, **kw)
    kernel = outcome(sg.weighted_sigmoid_cross_entropy_kernel,
                     sg.weighted_sigmoid_cross_entropy_backward, x, t, **kw)
    assert isinstance(reference, str) and "at index (1, 2, 3)" in reference
    assert kernel == reference


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_sigmoid_kernel_overflow_and_non_finite_scores(dtype):
    x = np.full((2, 3), -1e4, dtype)
    t = np.ones((2, 3), dtype)
    for kw in [dict(pos_weight=[3e38] * 3), dict(pos_weight=1e300)]:
        with np.errstate(over="ignore"):
            reference = outcome(sg.weighted_sigmoid_cross_entropy_forward,
                                sg.weighted_sigmoid_cross_entropy_backward, x, t, normalization="NONE", **kw)
            kernel = outcome(sg.weighted_sigmoid_cross_entropy_kernel,
                             sg.weighted_sigmoid_cross_entropy_backward, x, t, normalization="NONE", **kw)
        if dtype == np.float32:
            assert "the loss overflowed" in reference and kernel == reference
        else:
            assert_same(reference, kernel, dtype)
    x[1, 2] = np.nan
    reference = outcome(sg.weighted_sigmoid_cross_entropy_forward, sg.weighted_sigmoid_cross_entropy_backward, x, t)
    kernel = outcome(sg.weighted_sigmoid_cross_entropy_kernel, sg.weighted_sigmoid_cross_entropy_backward, x, t)
    assert "bottom 'scores' holds a non-finite value nan at index (1, 2)" in reference
    assert kernel == reference
