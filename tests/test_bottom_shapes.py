"""Every layer takes equal-count bottoms of other shapes wherever its docs allow them.

Forward and backward in a real net with ``force_backward: true`` (so Caffe asks
for every bottom's diff): the loss and the gradients equal those of the same
data in the canonical shapes, and each gradient lands in its own bottom's
shape (SmoothL1Loss's target gradient used to be written in pred's shape:
"non-broadcastable output operand").
"""

import numpy as np
import pytest

from caffe_losses.files.hmatrix import save_h
from caffe_losses.glue.testing import check_net_gradient, layer_net

MOD = "caffe_losses"
RNG = np.random.RandomState(31)


def run(layer, bottoms, data, param_str="", tops=("loss",), loss_weight=2):
    """Forward and backward of ``layer`` on ``data`` (name -> array, reshaped to ``bottoms``)."""
    net = layer_net(MOD, layer, bottoms, tops=tops, param_str=param_str, loss_weight=loss_weight)
    for name, shape in bottoms.items():
        net.blobs[name].data[...] = np.reshape(data[name], shape)
    net.forward()
    net.backward()
    for name, shape in bottoms.items():
        assert net.blobs[name].diff.shape == tuple(shape), name
    top = net.blobs[tops[0]].data.copy()
    return top, {name: net.blobs[name].diff.copy() for name in bottoms}


def assert_same_result(layer, canonical, other, data, param_str="", **kw):
    """The layer gives the same top and diffs (up to shape) for both bottom shapes; returns the diffs."""
    top, diffs = run(layer, canonical, data, param_str, **kw)
    top2, diffs2 = run(layer, other, data, param_str, **kw)
    np.testing.assert_allclose(top2.ravel(), top.ravel(), rtol=1e-6)
    for name in canonical:
        np.testing.assert_allclose(diffs2[name].ravel(), diffs[name].ravel(), rtol=1e-6, atol=1e-8)
    return diffs2


@pytest.mark.parametrize("layer", ["SoftmaxWithInfogainLoss", "InfogainLoss"])
@pytest.mark.parametrize("label_shape", [(4, 2, 3), (4, 1, 2, 3), (24,)])
@pytest.mark.parametrize("h_shape", [(3, 3), (1, 1, 3, 3)])
def test_infogain_labels_and_h(tmp_path, layer, label_shape, h_shape):
    x = RNG.randn(4, 3, 2, 3)
    if layer == "InfogainLoss":
        x = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    data = {"x": x, "label": RNG.randint(0, 3, 24), "H": RNG.rand(3, 3) + np.eye(3)}
    canonical = {"x": (4, 3, 2, 3), "label": (4, 1, 2, 3), "H": (1, 1, 3, 3)}
    other = {"x": (4, 3, 2, 3), "label": label_shape, "H": h_shape}
    diffs = assert_same_result(layer, canonical, other, data)
    assert np.all(diffs["label"] == 0) and np.all(diffs["H"] == 0)
    assert np.any(diffs["x"] != 0)
    # the same with H from a file
    path = str(tmp_path / "H.binaryproto")
    save_h(path, data["H"])
    del canonical["H"], other["H"]
    assert_same_result(layer, canonical, other, data, param_str=f"{{source: '{path}'}}")


@pytest.mark.parametrize("target_shape", [(4, 12), (4, 3, 4), (4, 12, 1, 1)])
def test_weighted_sigmoid_target(target_shape):
    data = {"scores": RNG.randn(4, 3, 2, 2) * 3, "target": (RNG.rand(48) < 0.3).astype(float)}
    canonical = {"scores": (4, 3, 2, 2), "target": (4, 3, 2, 2)}
    other = {"scores": (4, 3, 2, 2), "target": target_shape}
    diffs = assert_same_result("WeightedSigmoidCrossEntropyLoss", canonical, other, data,
                               "{pos_weight: [2, 1, 0.5], ignore_label: 255}")
    assert np.all(diffs["target"] == 0)


@pytest.mark.parametrize("shapes", [
    [(4, 1, 1, 1), (4, 1)],                                    # the case: conv output vs HDF5 target
    [(4, 1, 1, 1), (4, 1), (4, 1), (4, 1, 1, 1)],              # ... with inside and outside weights
    [(4, 3), (4, 3, 1, 1), (4, 1, 3), (4, 3)],
    [(4, 1), (4, 1, 1, 1), (4, 1, 1, 1), (4, 1)],
])
def test_smooth_l1_target_and_weights(shapes):
    names = ("pred", "target", "inside_weights", "outside_weights")[:len(shapes)]
    count = int(np.prod(shapes[0]))
    data = {"pred": RNG.randn(count) * 2, "target": RNG.randn(count),
            "inside_weights": RNG.rand(count) + 0.5, "outside_weights": RNG.rand(count)}
    canonical = {name: shapes[0] for name in names}
    other = dict(zip(names, shapes))
    diffs = assert_same_result("SmoothL1Loss", canonical, other, data, "{sigma: 2}")
    np.testing.assert_array_equal(diffs["target"].ravel(), -diffs["pred"].ravel())
    assert np.any(diffs["pred"] != 0)
    for name in names[2:]:
        assert np.all(diffs[name] == 0)


def test_smooth_l1_target_gradient_in_its_own_shape_checks_against_finite_differences():
    # away from the kink |d| = 1/sigma^2 = 1 so that finite differences are exact enough
    d = RNG.choice([-1, 1], 6) * RNG.uniform(0.1, 0.8, 6)
    d[::2] *= 3
    pred = RNG.randn(6)
    net = layer_net(MOD, "SmoothL1Loss", {"pred": (6, 1, 1, 1), "target": (6, 1), "w_in": (6, 1),
                                          "w_out": (6, 1, 1, 1)}, loss_weight=2)
    check_net_gradient(net, {"pred": pred.reshape(6, 1, 1, 1), "target": (pred - d).reshape(6, 1),
                             "w_in": np.ones((6, 1)), "w_out": RNG.rand(6, 1, 1, 1) + 0.5},
                       wrt=["pred", "target"])


@pytest.mark.parametrize("label_shape", [(4,), (4, 1), (4, 1, 1, 1)])
def test_center_loss_features_and_labels(label_shape):
    data = {"features": RNG.randn(4, 2), "label": np.array([0, 2, 1, 2])}
    canonical = {"features": (4, 2), "label": (4,)}
    other = {"features": (4, 2, 1, 1), "label": label_shape}
    diffs = assert_same_result("CenterLoss", canonical, other, data, "{num_classes: 3, update: solver}")
    assert np.all(diffs["label"] == 0) and np.any(diffs["features"] != 0)


@pytest.mark.parametrize("label_shape", [(4,), (4, 1), (4, 1, 1, 1)])
def test_mean_variance_scores_and_labels(label_shape):
    data = {"scores": RNG.randn(4, 5), "label": np.array([0, 4, 1, 2])}
    canonical = {"scores": (4, 5), "label": (4,)}
    other = {"scores": (4, 5, 1, 1), "label": label_shape}
    diffs = assert_same_result("MeanVarianceLoss", canonical, other, data)
    assert np.all(diffs["label"] == 0) and np.any(diffs["scores"] != 0)


def test_expectation_scores():
    data = {"scores": RNG.randn(4, 5)}
    top, diffs = run("Expectation", {"scores": (4, 5)}, data, tops=("age",), loss_weight=2)
    top2, diffs2 = run("Expectation", {"scores": (4, 5, 1, 1)}, data, tops=("age",), loss_weight=2)
    np.testing.assert_allclose(top2, top, rtol=1e-6)
    np.testing.assert_allclose(diffs2["scores"].ravel(), diffs["scores"].ravel(), rtol=1e-6)
