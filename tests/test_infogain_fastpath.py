"""The small-size fast paths of the infogain cores and layers: same results, same errors.

The fast label check, the per-shape Workspace, the label-score shift of a
diagonal H (and its fall-back to the row maximum when exp overflows), and
the layers' reshape that checks shapes only when they change.
"""

import warnings

import numpy as np
import pytest

from caffe_losses.core import common
from caffe_losses.core import infogain as ig
from caffe_losses.core.common import log_softmax, softmax
from caffe_losses.testing import layer_net

RNG = np.random.RandomState(21)


# ---------------------------------------------------------------------------
# Labels: the fast check accepts what common.check_labels accepts, and
# raises exactly its errors otherwise
# ---------------------------------------------------------------------------

BAD_VALUES = [np.nan, np.inf, -np.inf, -1.0, -0.5, 2.5, 4.0, 5.0, 255.0, 1e20, 2.0 ** 32,
              2.0 ** 32 + 2, -(2.0 ** 40)]


def outcome(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")         # the fast path must not warn either
        try:
            y, valid = fn(*args, **kw)
        except ValueError as err:
            return ("raise", str(err))
    return ("ok", y.tolist(), None if valid is None else valid.tolist())


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.uint8])
@pytest.mark.parametrize("ignore_label", [None, 255, 0, -1])
def test_fast_check_labels_equals_common(dtype, ignore_label):
    good = np.array([[0, 3, 1], [2, 2, 0]])
    cases = [good, good[:, :0], np.zeros((2, 1, 3))]
    if np.dtype(dtype).kind == "f":
        cases += [np.array([-0.0, 1.0, 2.0])]
        for bad in BAD_VALUES:
            lab = good.astype(np.float64)
            lab[1, 2] = bad
            cases.append(lab)
    else:
        for bad in (-1, 4, 255, 2 ** 31 - 1):
            lab = good.astype(np.int64)
            lab[0, 1] = bad
            cases.append(lab)
    for lab in cases:
        with np.errstate(over="ignore", invalid="ignore"):
            lab = lab.astype(dtype)          # e.g. 255 as uint8, 1e20 as float32
        expected = outcome(common.check_labels, "Own", lab, 4, ignore_label)
        assert outcome(ig.check_labels, "Own", lab, 4, ignore_label) == expected, lab


def test_fast_check_labels_error_names_value_and_index():
    lab = np.zeros((2, 3), np.float32)
    lab[1, 2] = -1
    with pytest.raises(ValueError, match=r"Own: bottom 'label' holds -1\.0 at index \(1, 2\)"):
        ig.check_labels("Own", lab, 4)


# ---------------------------------------------------------------------------
# Workspace: reused across calls, replaced when the shape changes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["full", "diagonal", "identity"])
def test_workspace_reuse_gives_fresh_results(kind):
    C = 5
    H = {"full": RNG.rand(C, C), "diagonal": np.diag(RNG.rand(C) + 0.5), "identity": np.eye(C)}[kind]
    ws = ig.Workspace((6, C), 1, np.float64)
    for shape in [(6, C), (6, C), (3, C), (2, C, 4)]:
        x = RNG.randn(*shape) * 3
        y = RNG.randint(0, C, (shape[0],) + shape[2:]).astype(np.float64)
        loss, cache = ig.softmax_infogain_forward(x, y, H, workspace=ws)
        grad = ig.softmax_infogain_backward(cache)
        fresh_loss, fresh_cache = ig.softmax_infogain_forward(x, y, H)
        assert loss == pytest.approx(fresh_loss, rel=1e-14)
        np.testing.assert_allclose(grad, ig.softmax_infogain_backward(fresh_cache), rtol=1e-13, atol=1e-16)
        assert (cache["ws"] is ws) == (shape == (6, C))


def test_workspace_axis_error_names_the_owner():
    with pytest.raises(ValueError, match=r"Own: 'axis' axis 2 is out of range .*\(bottom 'scores'\)"):
        ig.Workspace((3, 4), 2, np.float32, owner="Own")


# ---------------------------------------------------------------------------
# Diagonal H: the label-score shift, and its fall-back when exp overflows
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
def test_label_shift_and_overflow_fallback_are_exact(dtype, gap, uniform):
    # row 0: a score `gap` above the label's (exp(gap) overflows float32 past 88,
    # float64 past 709); row 1: the label is the top score; row 2: ties
    C = 4
    x = np.array([[0.0, gap, -1.0, 2.0], [gap, 0.0, 1.0, -gap], [1.0, 1.0, 1.0, 1.0]], dtype)
    y = np.array([0.0, 0.0, 3.0])
    w = np.ones(C) if uniform else np.array([0.5, 2.0, 1.0, 3.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, cache = ig.softmax_infogain_forward(x, y, np.diag(w).astype(dtype))
        grad = ig.softmax_infogain_backward(cache, scale=2.0)
    expected, expected_grad = reference(x, y, w, scale=2.0)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert loss == pytest.approx(expected, rel=rtol)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol * 10, atol=rtol * 1e-2)
    overflowed = gap > (88 if dtype == np.float32 else 709)
    assert (cache["e_at_label"] is None) == overflowed     # the row-maximum fall-back ran
    np.testing.assert_allclose(ig.softmax_infogain_prob(cache), softmax(x.astype(np.float64)),
                               rtol=rtol * 10, atol=1e-30)


def test_non_finite_scores_still_raise_on_the_diagonal_path():
    x = np.zeros((3, 4))
    for bad in (np.nan, np.inf):
        x[1, 2] = bad
        with pytest.raises(ValueError, match=r"bottom 'scores' holds a non-finite value "
                                             rf"{bad} at index \(1, 2\)"):
            ig.softmax_infogain_forward(x, np.zeros(3), np.eye(4))


# ---------------------------------------------------------------------------
# Layers: shapes checked when they change, labels checked every forward
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["SoftmaxWithInfogainLoss", "InfogainLoss"])
@pytest.mark.parametrize("keys", ["", ", ignore_label: 255"])
def test_layer_follows_shape_changes_and_checks_every_batch(tmp_path, layer, keys):
    H = RNG.rand(4, 4) + np.eye(4)
    path = str(tmp_path / "H.npy")
    np.save(path, H)
    net = layer_net("caffe_losses", layer, {"x": (3, 4), "y": (3,)},
                    param_str="{source: '%s'%s}" % (path, keys), loss_weight=2)
    for n in (3, 3, 5, 2, 5):
        if net.blobs["x"].data.shape[0] != n:
            net.blobs["x"].reshape(n, 4)
            net.blobs["y"].reshape(n)
            net.reshape()
        x = softmax(RNG.randn(n, 4)) if layer == "InfogainLoss" else RNG.randn(n, 4)
        y = RNG.randint(0, 4, n).astype(np.float32)
        net.blobs["x"].data[...] = x
        net.blobs["y"].data[...] = y
        net.forward()
        net.backward()
        core_fwd = ig.infogain_forward if layer == "InfogainLoss" else ig.softmax_infogain_forward
        core_bwd = ig.infogain_backward if layer == "InfogainLoss" else ig.softmax_infogain_backward
        loss, cache = core_fwd(net.blobs["x"].data.astype(np.float64), y, H)
        assert float(net.blobs["loss"].data[0]) == pytest.approx(loss, rel=1e-5)
        np.testing.assert_allclose(net.blobs["x"].diff, 2 * core_bwd(cache), rtol=1e-4, atol=1e-6)
        # a bad label in an unchanged shape is still caught, with its index
        y[n - 1] = 7
        net.blobs["y"].data[...] = y
        with pytest.raises(ValueError, match=rf"{layer}: bottom 'label' holds 7\.0 at index \({n - 1},\)"):
            net.forward()
