"""migrate's rules for the forks' Dice layers: each fork's formula transcribed from its own source,
against what the migrated layer computes in real Caffe (or in the core, where the fork's formula is
only defined there)."""

import numpy as np
import pytest

from caffe_losses.glue.testing import net_from_text
from caffe_losses.losses.dice import core
from caffe_losses.nets.migrate import migrate_text


# ---------------------------------------------------------------------------
# V-Net: faustomilletari/VNet, pyLayer.py, class DiceLoss (forward and backward, transcribed)
# ---------------------------------------------------------------------------

def vnet_forward(prob, label):
    """V-Net's forward: the hard Dice of channel 1 (arg-max), per sample, summed; and its sums."""
    n = prob.shape[0]
    result = np.argmax(prob, axis=1).reshape(n, -1).astype(np.float32)
    gt = (label.reshape(n, -1) > 0.5).astype(np.float32)
    union = result.sum(axis=1) + gt.sum(axis=1)
    intersection = (result * gt).sum(axis=1)
    dice = 2 * intersection / (union + 0.00001)
    return dice.sum(), (gt, union, intersection)


def vnet_backward(prob, saved):
    """V-Net's backward: channel 0 gets +2 (g U - 2 p1 I) / U^2, channel 1 the opposite."""
    gt, union, intersection = saved
    diff = np.zeros(prob.shape)
    for i in range(prob.shape[0]):          # as the fork writes it, sample by sample
        term = 2.0 * ((gt[i] * union[i]) / (union[i] ** 2)
                      - 2.0 * prob[i, 1] * intersection[i] / (union[i] ** 2))
        diff[i, 0] += term
        diff[i, 1] -= term
    return diff


VNET_NET = """
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 3 dim: 2 dim: 40 } } }
layer { name: "label_flat" type: "Input" top: "label_flat" input_param { shape { dim: 3 dim: 40 } } }
layer {
    name: "softmax"
    type: "Softmax"
    bottom: "x"
    top: "softmax_out"
}
layer {
  type: 'Python'
  name: 'loss'
  top: 'loss'
  bottom: 'softmax_out'
  bottom: "label_flat"
  python_param {
    # the module name -- usually the filename -- that needs to be in $PYTHONPATH
    module: 'pyLayer'
    # the layer name -- the class name in the module
    layer: 'DiceLoss'
  }
  loss_weight: 1
}
"""


def _binary_case(seed=0, n=3, m=40):
    rng = np.random.RandomState(seed)
    fg = (rng.rand(n, m) < 0.4).astype(np.float64)          # the prediction, one-hot
    prob = np.stack([1 - fg, fg], axis=1)
    label = (rng.rand(n, m) < 0.3).astype(np.float64)
    return prob, label


def test_vnet_is_translated_to_probabilities_in_channel_1_squared():
    result = migrate_text(VNET_NET)
    assert not result.problems
    assert [str(c) for c in result.changes] == [
        "layer 'loss': type Python pyLayer.DiceLoss -> Python caffe_losses.DiceLoss"]
    assert result.migrated["loss"] == ("DiceLoss", {"activation": "none", "squared": True,
                                                    "include_background": False, "smooth": 1e-5})
    assert any("divided by N" in n and "loss_weight 2N" in n for n in result.notes)
    assert "pyLayer" not in result.text


def test_vnet_formula_equals_ours_where_its_forward_and_backward_agree():
    # V-Net's forward is the hard (arg-max) Dice and its backward uses those hard sums: they are the
    # soft Dice's when the probabilities are 0 or 1; there ours is V-Net's loss and gradient:
    # loss = 1 - V-Net's / N, dL/dp1 = V-Net's channel-1 diff / N, and 0 on channel 0
    params = migrate_text(VNET_NET).migrated["loss"][1]
    for seed in range(3):
        prob, label = _binary_case(seed)
        top, saved = vnet_forward(prob, label)
        loss, cache = core.dice_forward(prob, label, **params)
        n = prob.shape[0]
        assert loss == pytest.approx(1 - top / n, abs=1e-6)
        ours = core.dice_backward(cache)
        theirs = vnet_backward(prob, saved)
        np.testing.assert_allclose(n * ours[:, 1], theirs[:, 1], rtol=1e-5, atol=1e-9)
        assert not ours[:, 0].any()
        np.testing.assert_allclose(theirs[:, 0], -theirs[:, 1])


def test_vnet_migrated_net_runs_in_caffe():
    result = migrate_text(VNET_NET)
    net = net_from_text(result.text)
    rng = np.random.RandomState(4)
    prob, label = _binary_case(4)
    net.blobs["x"].data[...] = np.where(prob > 0.5, 1e4, -1e4)     # probabilities exactly 0 and 1
    net.blobs["label_flat"].data[...] = label
    out = float(net.forward()["loss"][0])
    top, _ = vnet_forward(prob, label)
    assert out == pytest.approx(1 - top / 3, abs=1e-5)
    # through Caffe's Softmax: the gradient of the same Dice with the softmax inside, on the logits
    net = net_from_text("force_backward: true\n" + result.text)
    x = rng.randn(3, 2, 40)
    net.blobs["x"].data[...] = x
    net.blobs["label_flat"].data[...] = label
    net.forward()
    net.backward()
    params = dict(result.migrated["loss"][1], activation="softmax")
    loss, cache = core.dice_forward(x, label, **params)
    assert float(net.blobs["loss"].data[0]) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(net.blobs["x"].diff, core.dice_backward(cache), rtol=1e-3, atol=1e-7)
    assert migrate_text(result.text).changes == []            # migrated: nothing left to do


# ---------------------------------------------------------------------------
# OrganSegRSTN: 198808xc/OrganSegRSTN, DiceLossLayer/dice_loss_layer.cpp (Forward_cpu, Backward_cpu)
# ---------------------------------------------------------------------------

FLT_EPSILON = 0.000001    # the fork's own #define


def organseg_forward(score, target):
    """``loss = 1 - (eps + sum 2 t p) / (eps + sum (t + p))`` over every element, p = sigmoid(score)."""
    p = 1 / (1 + np.exp(-score.ravel()))
    t = target.ravel()
    up = FLT_EPSILON + np.sum(2 * t * p)
    down = FLT_EPSILON + np.sum(t + p)
    return 1 - up / down


def organseg_backward(score, target, loss_weight):
    """``diff = -((2 t (U + eps) - 2 I - eps) / (U + eps)^2) p (1 - p)``, times the loss weight."""
    p = 1 / (1 + np.exp(-score.ravel()))
    t = target.ravel()
    intersection = np.sum(t * p)
    union = np.sum(t + p)
    down = (union + FLT_EPSILON) ** 2
    up = 2 * t * (union + FLT_EPSILON) - 2 * intersection - FLT_EPSILON
    return (-(up / down) * p * (1 - p) * loss_weight).reshape(score.shape)


def organseg_net(channels, loss_extra="loss_weight: 2"):
    return f"""
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 2 dim: 1 dim: 8 dim: 8 }} }} }}
layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ dim: 2 dim: {channels} dim: 8 dim: 8 }} }} }}
layer {{
  name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param {{ num_output: {channels} kernel_size: 3 stride: 1 pad: 1
                       weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" value: 0 }} }}
}}
layer {{ name: "loss" type: "DiceLoss" bottom: "score" bottom: "label" top: "loss" {loss_extra} }}
"""


@pytest.mark.parametrize("channels", [1, 3])
def test_organseg_migrated_net_gives_the_fork_s_loss_and_gradient(channels):
    result = migrate_text(organseg_net(channels))
    assert not result.problems
    expected = {"activation": "sigmoid", "smooth": 1e-6, "batch": True}
    if channels > 1:
        expected["weights"] = [1] * channels
    assert result.migrated["loss"] == ("DiceLoss", expected)
    net = net_from_text(result.text)
    rng = np.random.RandomState(channels)
    net.blobs["data"].data[...] = rng.randn(2, 1, 8, 8) * 3
    label = (rng.rand(2, channels, 8, 8) < 0.3).astype(np.float32)
    net.blobs["label"].data[...] = label
    loss = float(net.forward()["loss"][0])
    score = net.blobs["score"].data.astype(np.float64)
    assert loss == pytest.approx(organseg_forward(score, label), rel=1e-5)
    net.backward()
    np.testing.assert_allclose(net.blobs["score"].diff, organseg_backward(score, label, 2.0),
                               rtol=2e-3, atol=1e-8)


def test_organseg_loss_param_is_dropped_with_a_note():
    result = migrate_text(organseg_net(1, 'loss_param { ignore_label: 255 } loss_weight: 1'))
    assert not result.problems
    assert "layer 'loss': loss_param { ignore_label: 255 } -> dropped" in [str(c) for c in result.changes]
    assert any("reads no loss_param" in n for n in result.notes)


def test_organseg_refused_when_the_channel_count_is_unknown():
    text = organseg_net(3).replace(
        'layer { name: "loss" type: "DiceLoss" bottom: "score"',
        'layer { name: "sum" type: "Eltwise" bottom: "score" bottom: "score" top: "fused" }\n'
        'layer { name: "loss" type: "DiceLoss" bottom: "fused"')
    result = migrate_text(text)
    assert len(result.problems) == 1
    assert ("OrganSegRSTN's DiceLoss pools every channel of 'fused' into one Dice" in result.problems[0]
            and "layer 'sum' (type Eltwise)" in result.problems[0])
    assert result.text == text                                  # nothing written


def test_vnet_gradient_through_the_softmax_is_2n_times_ours():
    # the note's claim: with V-Net's backward formula (fed the soft sums, where its forward would
    # take the arg-max), what reaches the logits through the Softmax is 2N times the migrated layer's
    rng = np.random.RandomState(7)
    n = 3
    x = rng.randn(n, 2, 40)
    label = (rng.rand(n, 40) < 0.3).astype(np.float64)
    prob = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    p1 = prob[:, 1]
    soft = (label, (p1 ** 2).sum(axis=1) + label.sum(axis=1), (p1 * label).sum(axis=1))
    d = vnet_backward(prob, soft)
    theirs = prob * (d - (prob * d).sum(axis=1, keepdims=True))        # Caffe's Softmax backward
    params = dict(migrate_text(VNET_NET).migrated["loss"][1], activation="softmax", smooth=1e-12)
    _, cache = core.dice_forward(x, label, **params)
    np.testing.assert_allclose(theirs, 2 * n * core.dice_backward(cache), rtol=1e-6, atol=1e-12)


def test_another_fork_s_dice_loss_with_its_own_block_is_refused():
    text = organseg_net(1, "dice_loss_param { smooth: 1 } loss_weight: 1")
    result = migrate_text(text)
    assert result.problems[0] == (
        "layer 'loss': DiceLoss with 'dice_loss_param': OrganSegRSTN's DiceLoss, the one migrate "
        "translates, has no parameter block, so this is another fork's DiceLoss, whose formula migrate "
        "does not know: cannot translate")
    assert result.text == text
