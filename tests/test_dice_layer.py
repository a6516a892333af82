"""DiceLoss in real caffe.Nets: float32 gradient checks, agreement with the float64 core, extreme
logits, label shapes, and every bad input refused with the layer's name."""

import re

import numpy as np
import pytest

from caffe_losses.glue.testing import check_net_gradient, layer_net
from caffe_losses.losses.dice import core

IGNORE = 255


def _data(activation, shape=(2, 3, 4, 5), ignore=True, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(*shape).astype(np.float32)
    if activation == "none":
        x = (0.1 + 0.8 * rng.rand(*shape)).astype(np.float32)
    if activation != "sigmoid":
        label = rng.randint(0, shape[1], (shape[0], 1) + shape[2:]).astype(np.float32)
    else:
        label = (rng.rand(*shape) < 0.3).astype(np.float32)
    if ignore:
        label.reshape(-1)[rng.rand(label.size) < 0.15] = IGNORE
    return x, label


def _net(x_shape, label_shape, param_str, loss_weight=2):
    return layer_net("caffe_losses", "DiceLoss", {"scores": x_shape, "label": label_shape},
                     param_str=param_str, loss_weight=loss_weight)


SETTINGS = [
    "{}",
    "{ignore_label: 255, squared: true}",
    "{ignore_label: 255, weights: generalized, batch: true}",
    "{ignore_label: 255, weights: [0.5, 2, 1], include_background: false}",
    "{activation: sigmoid, ignore_label: 255}",
    "{activation: sigmoid, ignore_label: 255, weights: generalized, squared: true, smooth: 0.5}",
    "{activation: sigmoid, batch: true, include_background: false, ignore_label: 255}",
    "{activation: none, ignore_label: 255, squared: true, include_background: false}",
]


@pytest.mark.parametrize("param_str", SETTINGS)
def test_in_net_gradient_and_value_match_the_core(param_str):
    activation = ("sigmoid" if "sigmoid" in param_str else "none" if "none" in param_str
                  else "softmax")
    x, label = _data(activation, ignore="ignore_label" in param_str)
    net = _net(x.shape, label.shape, param_str)
    check_net_gradient(net, {"scores": x, "label": label}, wrt=["scores"], stepsize=1e-2,
                       threshold=1e-2)
    net.blobs["scores"].data[...] = x
    net.blobs["label"].data[...] = label
    net.forward()
    params = net.layers[list(net._layer_names).index("under_test")].params
    loss, cache = core.dice_forward(x.astype(np.float64), label, **params)
    assert float(net.blobs["loss"].data[0]) == pytest.approx(loss, rel=1e-5, abs=1e-6)
    net.backward()
    np.testing.assert_allclose(net.blobs["scores"].diff, core.dice_backward(cache, scale=2.0),
                               rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("label_shape", [(2, 1, 4, 5), (2, 4, 5), (2, 20)])
def test_label_shapes_with_the_same_count(label_shape):
    x, label = _data("softmax", ignore=False)
    net = _net(x.shape, label_shape, "{}")
    net.blobs["scores"].data[...] = x
    net.blobs["label"].data[...] = label.reshape(label_shape)
    net.forward()
    assert float(net.blobs["loss"].data[0]) == pytest.approx(core.dice_forward(x, label)[0], rel=1e-6)


@pytest.mark.parametrize("param_str", ["{}", "{activation: sigmoid, squared: true}",
                                       "{weights: generalized, batch: true}"])
def test_extreme_logits_in_a_net(param_str):
    activation = "sigmoid" if "sigmoid" in param_str else "softmax"
    x, label = _data(activation, ignore=False)
    x = np.sign(x) * np.float32(1e4)
    net = _net(x.shape, label.shape, param_str)
    net.blobs["scores"].data[...] = x
    net.blobs["label"].data[...] = label
    net.forward()
    net.backward()
    assert np.isfinite(net.blobs["loss"].data).all() and 0 <= net.blobs["loss"].data[0] <= 1
    assert np.isfinite(net.blobs["scores"].diff).all()


@pytest.mark.parametrize("param_str, words", [
    ("{smoth: 1}", "unknown key 'smoth' in param_str. Did you mean 'smooth'?"),
    ("{smooth: 0}", "'smooth' must be > 0"),
    ("{smooth: -1}", "'smooth' must be > 0"),
    ("{activation: relu}", "'activation' must be one of softmax, sigmoid, none"),
    ("{weights: inverse}", "'weights' must be none, generalized or a list"),
    ("{weights: [1, -2, 1]}", "'weights' must be >= 0"),
    ("{squared: yes}", "'squared' must be true or false"),
    ("{batch: 2}", "'batch' must be true or false"),
    ("[1, 2]", "param_str must be a mapping"),
])
def test_bad_param_str_names_the_layer_and_key(param_str, words):
    with pytest.raises(Exception, match="DiceLoss: " + re.escape(words)):
        _net((2, 3, 4), (2, 1, 4), param_str)


@pytest.mark.parametrize("x_shape, label_shape, param_str, words", [
    ((2, 3, 4), (2, 1, 5), "{}", "bottom 'label' must hold one class index per position"),
    ((2, 3, 4), (4, 1, 2), "{}", "N = 2 first"),
    ((2, 1, 4), (2, 1, 4), "{}", "activation softmax needs at least 2 classes"),
    ((2, 3, 4), (2, 1, 4), "{activation: sigmoid}", "bottom 'label' must have as many values"),
    ((2, 3, 4), (2, 1, 4), "{weights: [1, 2]}", "'weights' has 2 weight(s)"),
    ((2, 1, 4), (2, 1, 4), "{activation: sigmoid, include_background: false}", "drops class 0"),
    ((6,), (6,), "{}", "at least 2 axes"),
])
def test_bad_shapes_are_refused_at_setup(x_shape, label_shape, param_str, words):
    with pytest.raises(ValueError, match="DiceLoss: .*" + re.escape(words)):
        _net(x_shape, label_shape, param_str)


@pytest.mark.parametrize("param_str, label_value, words", [
    ("{}", 3, "3.0 at index (0, 0, 0, 3); expected integers in [0, 3)"),
    ("{}", 1.5, "1.5 at index"),
    ("{ignore_label: 255}", -1, "or the ignore_label 255"),
    ("{activation: sigmoid}", 2, "expected 0 or 1"),
])
def test_labels_out_of_range_are_refused_in_forward(param_str, label_value, words):
    activation = "sigmoid" if "sigmoid" in param_str else "softmax"
    x, label = _data(activation, ignore=False)
    label.reshape(-1)[3] = label_value
    net = _net(x.shape, label.shape, param_str)
    net.blobs["scores"].data[...] = x
    net.blobs["label"].data[...] = label
    with pytest.raises(ValueError, match=r"DiceLoss: bottom 'label' holds .*" + re.escape(words)):
        net.forward()


def test_non_finite_scores_are_named():
    x, label = _data("softmax", ignore=False)
    x[1, 2, 3, 4] = np.nan
    net = _net(x.shape, label.shape, "{}")
    net.blobs["scores"].data[...] = x
    net.blobs["label"].data[...] = label
    with pytest.raises(ValueError, match=r"DiceLoss: bottom 'scores' holds a non-finite value nan "
                                         r"at index \(1, 2, 3, 4\)"):
        net.forward()
