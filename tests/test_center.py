"""CenterLoss: the NumPy core and the Caffe layer in real nets (no solver)."""

import textwrap

import numpy as np
import pytest

import caffe
from caffe_losses.losses.center import core
from caffe_losses.glue.testing import check_gradient, check_net_gradient, layer_net, net_from_text

RNG = np.random.RandomState(4)

# A hand-made batch: 3 classes in 2-D, class 2 absent from the batch.
CENTERS = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
X = np.array([[2.0, 0.0], [0.0, 4.0], [1.0, 3.0]])
Y = np.array([0, 0, 1])
# Worked by hand from the paper's eq. (4), delta_c_j = sum_{y_i=j} (c_j - x_i) / (1 + n_j):
#   class 0 (n=2): ((0-2) + (0-0), (0-0) + (0-4)) / 3 = (-2/3, -4/3)
#   class 1 (n=1): ((1-1), (1-3)) / 2                 = (0, -1)
#   class 2 (n=0): (0, 0)
DELTA = np.array([[-2.0 / 3, -4.0 / 3], [0.0, -1.0], [0.0, 0.0]])
# and with alpha = 0.5: c <- c - 0.5 * delta
UPDATED = np.array([[1.0 / 3, 2.0 / 3], [1.0, 1.5], [5.0, 5.0]])
# loss: d = x - c_y = (2,0), (0,4), (0,2); sum ||d||^2 = 4 + 16 + 4 = 24; L = 24 / (2 * 3) = 4
LOSS = 4.0


def random_batch(n=7, d=3, c=4, dtype=np.float64):
    x = RNG.randn(n, d).astype(dtype)
    y = RNG.randint(0, c, size=n)
    centers = RNG.randn(c, d).astype(dtype)
    return x, y, centers


# ---------------------------------------------------------------------------
# core
# ---------------------------------------------------------------------------

def test_core_loss_and_update_on_hand_made_batch():
    loss, cache = core.center_loss_forward(X, Y, CENTERS)
    assert loss == pytest.approx(LOSS, rel=1e-12)
    np.testing.assert_allclose(core.center_update(cache), DELTA, rtol=1e-12, atol=1e-15)
    centers = CENTERS.copy()
    core.apply_center_update(centers, core.center_update(cache), 0.5)
    np.testing.assert_allclose(centers, UPDATED, rtol=1e-12, atol=1e-15)


def test_core_update_matches_a_per_class_loop():
    x, y, centers = random_batch(n=40, d=5, c=6)
    y[y == 3] = 0          # leave class 3 out of the batch
    _, cache = core.center_loss_forward(x, y, centers)
    expected = np.zeros_like(centers)
    for j in range(len(centers)):       # the paper's formula, written out
        members = x[y == j]
        expected[j] = np.sum(centers[j] - members, axis=0) / (1 + len(members))
    np.testing.assert_allclose(core.center_update(cache), expected, rtol=1e-12, atol=1e-14)
    assert np.all(core.center_update(cache)[3] == 0)


def test_update_moves_center_towards_batch_mean_but_not_past_it():
    # c_new = c + alpha * n (m - c) / (1 + n): between c and the class mean m for alpha in (0, 1]
    x, y, centers = random_batch(n=30, d=2, c=3)
    _, cache = core.center_loss_forward(x, y, centers)
    new = core.apply_center_update(centers.copy(), core.center_update(cache), 1.0)
    for j in range(3):
        m, n = x[y == j].mean(axis=0), np.sum(y == j)
        np.testing.assert_allclose(new[j], centers[j] + n * (m - centers[j]) / (1 + n), rtol=1e-12)


@pytest.mark.parametrize("normalization", ["BATCH_SIZE", "FULL", "VALID", "NONE"])
def test_core_gradient_finite_differences(normalization):
    x, y, centers = random_batch()
    loss, cache = core.center_loss_forward(x, y, centers, normalization=normalization)
    grad = core.center_loss_backward(cache)
    f = lambda v: core.center_loss_forward(v, y, centers, normalization=normalization)[0]
    check_gradient(f, grad, x, name="features")
    norm = 1.0 if normalization == "NONE" else len(x)
    assert loss == pytest.approx(0.5 * np.sum((x - centers[y]) ** 2) / norm, rel=1e-12)


def test_core_keeps_dtype_and_accepts_4d_features():
    x, y, centers = random_batch(dtype=np.float32)
    loss, cache = core.center_loss_forward(x[:, :, None, None], y.astype(np.float32), centers)
    assert core.center_loss_backward(cache).shape == x.shape + (1, 1)
    assert core.center_loss_backward(cache).dtype == np.float32
    assert core.center_update(cache).dtype == np.float32


def test_core_bad_input():
    x, y, centers = random_batch(c=4)
    with pytest.raises(ValueError, match=r"bottom 'label' holds 4\.0 .*expected integers in \[0, 4\)"):
        core.center_loss_forward(x, np.where(np.arange(len(y)) == 2, 4, y), centers)
    with pytest.raises(ValueError, match=r"holds 1\.5 .*expected integers"):
        core.center_loss_forward(x, np.where(np.arange(len(y)) == 0, 1.5, y), centers)
    with pytest.raises(ValueError, match=r"bottom 'label' must hold one label per sample of 'features' \(7, 3\): "
                                         r"expected 7 values, got 6"):
        core.center_loss_forward(x, y[:6], centers)
    with pytest.raises(ValueError, match=r"centers must be \(num_classes, D\) with D=3"):
        core.center_loss_forward(x, y, centers[:, :2])


# ---------------------------------------------------------------------------
# the layer in real nets
# ---------------------------------------------------------------------------

def center_net(param_str, n=6, d=2, c=3, *, feature_shape=None, loss_weight=2):
    shape = feature_shape or (n, d)
    return layer_net("caffe_losses", "CenterLoss", {"x": shape, "y": (n,)},
                     param_str=param_str, loss_weight=loss_weight)


def test_centers_are_a_learnable_blob_created_at_setup():
    net = center_net("{num_classes: 5}", n=4, d=3)
    assert list(net.params) == ["under_test"]
    centers = net.params["under_test"][0]
    assert centers.data.shape == (5, 3) and np.all(centers.data == 0)


@pytest.mark.parametrize("shape", [(6, 2), (6, 2, 1, 1)])
def test_in_net_gradient_with_loss_weight_2_centers_fixed(shape):
    # update: solver only writes the centers' diff: with no solver step the
    # centers stay where they are while the checker perturbs the features.
    net = center_net("{num_classes: 3, update: solver}", feature_shape=shape)
    centers = RNG.randn(3, 2).astype(np.float32)
    net.params["under_test"][0].data[...] = centers
    x = RNG.randn(*shape).astype(np.float32)
    y = np.array([0, 1, 2, 0, 0, 1], np.float32)
    results = check_net_gradient(net, {"x": x, "y": y}, wrt=["x"])
    np.testing.assert_array_equal(net.params["under_test"][0].data, centers)
    analytic, _ = results["x"]
    expected = 2 * (x.reshape(6, 2) - centers[y.astype(int)]) / 6
    np.testing.assert_allclose(analytic, expected.ravel(), rtol=1e-5, atol=1e-7)
    assert np.all(net.blobs["y"].diff == 0)     # force_backward: zero diff into the labels


def test_in_net_gradient_in_test_phase_direct_update_does_not_move_centers():
    text = textwrap.dedent("""
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 6 dim: 2 } } }
        layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 6 } } }
        layer { name: "center_loss" type: "Python" bottom: "x" bottom: "y" top: "loss"
                python_param { module: "caffe_losses" layer: "CenterLoss"
                               param_str: "{num_classes: 3, update: direct}" }
                loss_weight: 2 }
    """)
    net = net_from_text(text, phase=caffe.TEST)
    centers = RNG.randn(3, 2).astype(np.float32)
    net.params["center_loss"][0].data[...] = centers
    x = RNG.randn(6, 2).astype(np.float32)
    y = np.array([2, 1, 2, 0, 0, 1], np.float32)
    check_net_gradient(net, {"x": x, "y": y}, wrt=["x"])
    np.testing.assert_array_equal(net.params["center_loss"][0].data, centers)


def test_direct_update_in_train_phase_applies_the_paper_rule_after_the_gradient():
    net = center_net("{num_classes: 3, alpha: 0.5}", n=3, d=2)
    net.params["under_test"][0].data[...] = CENTERS
    net.blobs["x"].data[...] = X
    net.blobs["y"].data[...] = Y
    net.forward()
    assert float(net.blobs["loss"].data[0]) == pytest.approx(LOSS, rel=1e-6)
    net.backward()
    # gradient from the centers of the forward pass (before the update), times loss weight 2
    np.testing.assert_allclose(net.blobs["x"].diff, 2 * (X - CENTERS[Y]) / 3, rtol=1e-6)
    np.testing.assert_allclose(net.params["under_test"][0].data, UPDATED, rtol=1e-6)
    # a second forward sees the new centers
    net.forward()
    assert float(net.blobs["loss"].data[0]) == pytest.approx(
        0.5 * np.sum((X - UPDATED[Y]) ** 2) / 3, rel=1e-6)


def test_solver_mode_adds_delta_to_the_centers_diff():
    net = center_net("{num_classes: 3, update: solver}", n=3, d=2, loss_weight=7)
    net.params["under_test"][0].data[...] = CENTERS
    net.blobs["x"].data[...] = X
    net.blobs["y"].data[...] = Y
    net.forward()
    net.backward()
    np.testing.assert_array_equal(net.params["under_test"][0].data, CENTERS)   # not moved
    # not scaled by the loss weight (7): the update is not a gradient of the loss
    np.testing.assert_allclose(net.params["under_test"][0].diff, DELTA, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(net.blobs["x"].diff, 7 * (X - CENTERS[Y]) / 3, rtol=1e-6)
    # diffs accumulate (iter_size > 1) until the solver clears them
    net.forward()
    net.backward()
    np.testing.assert_allclose(net.params["under_test"][0].diff, 2 * DELTA, rtol=1e-6, atol=1e-7)


def test_normalization_none_in_net():
    net = center_net("{num_classes: 3, normalization: NONE}", n=3, d=2)
    net.params["under_test"][0].data[...] = CENTERS
    net.blobs["x"].data[...] = X
    net.blobs["y"].data[...] = Y
    net.forward()
    assert float(net.blobs["loss"].data[0]) == pytest.approx(3 * LOSS, rel=1e-6)


def test_layer_bad_input():
    with pytest.raises(ValueError, match=r"CenterLoss: param_str must set 'num_classes'"):
        center_net("")
    with pytest.raises(ValueError, match=r"CenterLoss: param_str must set 'num_classes'"):
        center_net("{alpha: 0.5}")
    with pytest.raises(ValueError, match=r"CenterLoss: 'alpha' must be > 0\. Received: alpha=0"):
        center_net("{num_classes: 3, alpha: 0}")
    with pytest.raises(ValueError, match=r"CenterLoss: 'alpha' must be <= 1\. Received: alpha=1\.5"):
        center_net("{num_classes: 3, alpha: 1.5}")
    with pytest.raises(ValueError, match=r"CenterLoss: unknown key 'lambda'.*Valid keys: num_classes, "
                                         r"alpha, normalization, update"):
        center_net("{num_classes: 3, lambda: 0.1}")
    with pytest.raises(ValueError, match=r"CenterLoss: 'update' must be one of direct, solver"):
        center_net("{num_classes: 3, update: sgd}")
    with pytest.raises(ValueError, match=r"CenterLoss: 'alpha' is not used with update: solver.*"
                                         r"base_lr \* lr_mult.*Received: alpha=0\.5"):
        center_net("{num_classes: 3, alpha: 0.5, update: solver}")
    with pytest.raises(ValueError, match=r"CenterLoss: 'num_classes' must be >= 1"):
        center_net("{num_classes: 0}")
    with pytest.raises(ValueError, match=r"CenterLoss: bottom 'label' must hold one label per sample "
                                         r"of 'features' \(6, 2\): expected 6 values, got 5"):
        layer_net("caffe_losses", "CenterLoss", {"x": (6, 2), "y": (5,)}, param_str="{num_classes: 3}")
    with pytest.raises(ValueError, match=r"CenterLoss: bottom 'features' must be \(N, D\) or"):
        layer_net("caffe_losses", "CenterLoss", {"x": (6,), "y": (6,)}, param_str="{num_classes: 3}")


def test_layer_bad_labels_and_feature_size_change():
    net = center_net("{num_classes: 3}")
    net.blobs["x"].data[...] = RNG.randn(6, 2)
    net.blobs["y"].data[...] = [0, 1, 2, 3, 0, 1]
    with pytest.raises(ValueError, match=r"CenterLoss: bottom 'label' holds 3\.0 at index \(3,\); "
                                         r"expected integers in \[0, 3\)"):
        net.forward()
    net.blobs["y"].data[...] = [0, 1, 2, 0.5, 0, 1]
    with pytest.raises(ValueError, match=r"CenterLoss: bottom 'label' holds 0\.5 .*expected integers"):
        net.forward()
    net.blobs["y"].data[...] = [0, 1, -1, 0, 0, 1]
    with pytest.raises(ValueError, match=r"CenterLoss: bottom 'label' holds -1\.0"):
        net.forward()
    net.blobs["x"].reshape(6, 3)
    with pytest.raises(ValueError, match=r"CenterLoss: bottom 'features' must be \(N, 2\) or "
                                         r"\(N, 2, 1, 1\).*got shape \(6, 3\)"):
        net.reshape()


def test_batch_size_may_change_between_reshapes():
    net = center_net("{num_classes: 3}")
    net.blobs["x"].reshape(3, 2)
    net.blobs["y"].reshape(3)
    net.reshape()
    net.params["under_test"][0].data[...] = CENTERS
    net.blobs["x"].data[...] = X
    net.blobs["y"].data[...] = Y
    net.forward()
    assert float(net.blobs["loss"].data[0]) == pytest.approx(LOSS, rel=1e-6)


def test_zero_loss_weight_warns():
    from caffe_losses.glue.base import LossWeightWarning
    net = center_net("{num_classes: 3}", loss_weight=None)
    net.blobs["y"].data[...] = 0
    with pytest.warns(LossWeightWarning, match="CenterLoss"):
        net.forward()    # no weight and no gradient came back: warned at the next forward
        net.forward()


def test_a_refused_batch_moves_no_center():
    # features of 1e20 give a loss finite in float64 (1e40) but inf in the
    # float32 top: refused, and neither that backward nor a later one moves
    # the centers with that batch (before, they jumped to 3.3e19)
    net = center_net("{num_classes: 3}", n=4)
    net.params["under_test"][0].data[...] = 1.0
    net.blobs["y"].data[...] = [0, 1, 2, 0]
    net.blobs["x"].data[...] = 1e20
    with pytest.raises(ValueError, match=r"CenterLoss: the loss (1e\+40 does not fit float32|overflowed to inf .* too large for float32)"):
        net.forward()
    with pytest.raises(ValueError, match=r"CenterLoss: backward without a forward this layer accepted"):
        net.backward()
    np.testing.assert_array_equal(net.params["under_test"][0].data, 1.0)
    net.blobs["x"].data[...] = 2.0             # a good batch trains again
    net.forward()
    net.backward()
    assert np.all(net.params["under_test"][0].data[:3] > 1.0)


def test_centers_are_checked_against_free_memory_before_allocating(monkeypatch):
    from caffe_losses.files import safety
    monkeypatch.setattr(safety, "available_memory", lambda: 10 ** 6)
    with pytest.raises(ValueError, match=r"CenterLoss: the centers \(100000 x 2 float32, data and diff\) "
                                         r"would need 1\.5 MiB, more than the 976\.6 KiB of memory available"):
        center_net("{num_classes: 100000}")
    center_net("{num_classes: 1000}")
