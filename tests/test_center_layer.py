"""CenterLoss: the center update against the paper's loop, the float64 loss sum
at small and large sizes; the layer checks shapes when they change and labels
on every forward."""

import warnings

import numpy as np
import pytest

from caffe_losses.losses.center import core
from caffe_losses.losses.center.layer import CenterUpdateWarning
from caffe_losses.glue.testing import layer_net

RNG = np.random.RandomState(8)


def loop_update(x, y, centers):
    """The paper's eq. (4), one class at a time."""
    expected = np.zeros_like(centers)
    for j in range(len(centers)):
        members = x[y == j]
        expected[j] = np.sum(centers[j] - members, axis=0) / (1 + len(members))
    return expected


@pytest.mark.parametrize("n,d,c", [(5, 3, 4), (64, 7, 200), (300, 4, 3), (1, 2, 1)])
def test_center_update_agrees_with_the_loop(n, d, c):
    x = RNG.randn(n, d)
    y = RNG.randint(0, c, n)
    y[y == c // 2] = 0              # a class absent from the batch (when c > 1)
    centers = RNG.randn(c, d)
    _, cache = core.center_loss_forward(x, y, centers)
    expected = loop_update(x, y, centers)
    np.testing.assert_allclose(core.center_update(cache), expected, rtol=1e-12, atol=1e-14)
    out = np.full((c, d), np.nan)
    np.testing.assert_allclose(core.center_update(cache, out, scale=0.5), 0.5 * expected,
                               rtol=1e-12, atol=1e-14)
    if c > 1:
        assert np.all(out[c // 2] == 0)


@pytest.mark.parametrize("n,d", [(3, 2), (300, 300)])
def test_loss_sum_of_squares_in_float64(n, d):
    x = RNG.randn(n, d).astype(np.float32)
    y = RNG.randint(0, 5, n)
    centers = RNG.randn(5, d).astype(np.float32)
    loss, cache = core.center_loss_forward(x, y, centers, normalization="NONE")
    diff = x.astype(np.float64) - centers[y].astype(np.float64)
    assert loss == pytest.approx(0.5 * np.sum(diff ** 2), rel=1e-6)
    grad = core.center_loss_backward(cache, scale=3.0)
    np.testing.assert_allclose(grad, 3 * diff, rtol=1e-5, atol=1e-6)


def center_net(param_str, shape=(6, 2), label_shape=(6,)):
    return layer_net("caffe_losses", "CenterLoss", {"x": shape, "y": label_shape},
                     param_str=param_str, loss_weight=2)


def test_layer_label_errors_keep_the_label_blob_indexes():
    net = center_net("{num_classes: 3}", shape=(4, 2, 1, 1), label_shape=(4, 1, 1, 1))
    net.blobs["y"].data[...] = np.array([0, 1, 2, 1], np.float32).reshape(4, 1, 1, 1)
    net.forward()
    for bad, text in [(3, r"3\.0"), (-1, r"-1\.0"), (np.nan, "nan"), (1.5, r"1\.5")]:
        y = np.array([0, 1, 2, 1], np.float32)
        y[2] = bad
        net.blobs["y"].data[...] = y.reshape(4, 1, 1, 1)
        with pytest.raises(ValueError, match=rf"CenterLoss: bottom 'label' holds {text} at index "
                                             r"\(2, 0, 0, 0\)"):
            net.forward()


def test_layer_follows_batch_size_changes():
    net = center_net("{num_classes: 3, update: solver}")
    centers = RNG.randn(3, 2).astype(np.float32)
    net.params["under_test"][0].data[...] = centers
    for n in (6, 6, 4, 9, 4):
        if net.blobs["x"].data.shape[0] != n:
            net.blobs["x"].reshape(n, 2)
            net.blobs["y"].reshape(n)
            net.reshape()
        x = RNG.randn(n, 2).astype(np.float32)
        y = RNG.randint(0, 3, n).astype(np.float32)
        net.blobs["x"].data[...] = x
        net.blobs["y"].data[...] = y
        net.params["under_test"][0].diff[...] = 0
        net.forward()
        net.backward()
        d = x.astype(np.float64) - centers[y.astype(int)]
        assert float(net.blobs["loss"].data[0]) == pytest.approx(0.5 * np.sum(d ** 2) / n, rel=1e-5)
        np.testing.assert_allclose(net.blobs["x"].diff, 2 * d / n, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(net.params["under_test"][0].diff,
                                   loop_update(x.astype(np.float64), y.astype(int), centers),
                                   rtol=1e-5, atol=1e-6)


def test_direct_mode_guard_warns_only_when_someone_else_moved_the_centers():
    net = center_net("{num_classes: 3}")
    net.blobs["x"].data[...] = RNG.randn(6, 2)
    net.blobs["y"].data[...] = [0, 1, 2, 0, 1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):             # the layer's own updates: no warning
            net.forward()
            net.backward()
    net.params["under_test"][0].data[0, 0] += 1
    with pytest.warns(CenterUpdateWarning, match="centers changed"):
        net.forward()
