"""The forum layer's prototxt runs on WeightedSigmoidCrossEntropyLoss.

The forum layer: ``SigmoidCrossEntropyWeightLossLayer`` from "Weighted Caffe
Sigmoid Cross Entropy" (haomeiwen.com, 2018-12-27), kept verbatim in
``tests/seed_layers.py``.  Its prototxt block is used as the post gives it,
with only ``module`` and ``layer`` changed; the forum layer itself runs
beside it in the same net, fed the same blobs through Splits.
"""

import textwrap

import numpy as np
import pytest

from caffe_losses.glue.testing import net_from_text

RNG = np.random.RandomState(2)
SHAPE = (4, 1, 5, 5)

# The forum layer's block, with module/layer changed (and its comments kept).
SEED_BLOCK_OURS = r'''
layer{
    name: "loss"
    type: "Python"
    bottom: "score_ours"
    bottom: "label_ours"
    top: "loss"
    python_param{
        module: "caffe_losses"
        layer: "WeightedSigmoidCrossEntropyLoss"
        param_str: "{\"cls_weight\":100}"
    }
    include {
        phase: TRAIN
    }
    # set loss weight so Caffe knows this is a loss layer.
    # since PythonLayer inherits directly from Layer, this isn't automatically
    # known to Caffe
    loss_weight: 1
}
'''


def seed_pair_net(ours_block=SEED_BLOCK_OURS):
    dims = " ".join(f"dim: {d}" for d in SHAPE)
    return net_from_text(textwrap.dedent(f"""
        force_backward: true
        layer {{ name: "score" type: "Input" top: "score" input_param {{ shape {{ {dims} }} }} }}
        layer {{ name: "label" type: "Input" top: "label" input_param {{ shape {{ {dims} }} }} }}
        layer {{ name: "ss" type: "Split" bottom: "score" top: "score_ours" top: "score_seed" }}
        layer {{ name: "sl" type: "Split" bottom: "label" top: "label_ours" top: "label_seed" }}
        layer {{ name: "seed" type: "Python" bottom: "score_seed" bottom: "label_seed" top: "seed_loss"
                python_param {{ module: "seed_layers" layer: "SigmoidCrossEntropyWeightLossLayer"
                               param_str: "{{\\"cls_weight\\":100}}" }}
                loss_weight: 1 }}
    """) + ours_block)


def run(net, x, t):
    net.blobs["score"].data[...] = x
    net.blobs["label"].data[...] = t
    with np.errstate(over="ignore"):          # the forum layer's exp(-x) overflows for x < -88
        net.forward()
        net.backward()
    return (float(net.blobs["loss"].data[0]), float(net.blobs["seed_loss"].data[0]),
            net.blobs["score_ours"].diff.copy(), net.blobs["score_seed"].diff.copy())


@pytest.mark.parametrize("targets", ["binary", "soft"])
def test_seed_prototxt_matches_the_seed_formula_times_n(targets):
    # Where exp(-x) does not overflow, the forum layer's sum equals N times our
    # default (BATCH_SIZE) value: cls_weight is read as pos_weight.
    x = (RNG.randn(*SHAPE) * 4).astype(np.float32)
    t = (RNG.rand(*SHAPE) < 0.2).astype(np.float32) if targets == "binary" else \
        RNG.rand(*SHAPE).astype(np.float32)
    ours, seed, g_ours, g_seed = run(seed_pair_net(), x, t)
    n = SHAPE[0]
    assert ours * n == pytest.approx(seed, rel=1e-5)
    np.testing.assert_allclose(g_ours * n, g_seed, rtol=1e-4, atol=1e-5)


def test_normalization_none_gives_the_seed_value_itself():
    block = SEED_BLOCK_OURS.replace(r'{\"cls_weight\":100}', r'{\"cls_weight\":100, \"normalization\": \"NONE\"}')
    x = (RNG.randn(*SHAPE) * 4).astype(np.float32)
    t = (RNG.rand(*SHAPE) < 0.2).astype(np.float32)
    ours, seed, g_ours, g_seed = run(seed_pair_net(block), x, t)
    assert ours == pytest.approx(seed, rel=1e-5)
    np.testing.assert_allclose(g_ours, g_seed, rtol=1e-4, atol=1e-5)


def test_where_the_seed_overflows_ours_is_exact():
    # One positive pixel with logit -100: the forum layer's log(1 + exp(100)) is inf in
    # float32; the loss is 100 * 100 (cls_weight times softplus(100) = 100).
    x = np.full(SHAPE, 20.0, np.float32)
    t = np.zeros(SHAPE, np.float32)
    x[0, 0, 0, 0] = -100.0
    t[0, 0, 0, 0] = 1.0
    x[1] = -20.0                              # right answers: t = 0, x = -20
    ours, seed, g_ours, g_seed = run(seed_pair_net(), x, t)
    assert np.isinf(seed)
    n = SHAPE[0]
    # every x = 20, t = 0 element costs softplus(20) = 20 + log1p(exp(-20))
    others = (3 * 25 - 1) * (20 + np.log1p(np.exp(-20.0))) + 25 * np.log1p(np.exp(-20.0))
    assert ours * n == pytest.approx(100 * 100 + others, rel=1e-6)
    assert np.isfinite(g_ours).all()
    assert g_ours[0, 0, 0, 0] * n == pytest.approx(-100.0, rel=1e-6)
