"""The regression layers across shape changes (their reshape re-checks the
bottoms only when a shape changes; bad values are still caught on every pass),
and the smooth L1 core on huge float32 inputs."""

import numpy as np
import pytest

from caffe_losses.losses.regression import core
from caffe_losses.glue.testing import layer_net

MOD = "caffe_losses"
RNG = np.random.RandomState(21)


def test_smooth_l1_float32_huge_inputs_and_target_shape():
    pred = np.array([[1e30, -1e30, 0.5, -0.25]], np.float32)
    target = np.zeros((1, 4), np.float32)
    loss, cache = core.smooth_l1_forward(pred, target.reshape(4), normalization="NONE")   # any target shape
    assert loss == pytest.approx(2e30 - 1.0 + 0.125 + 0.03125, rel=1e-6)
    np.testing.assert_array_equal(core.smooth_l1_backward(cache), [[1, -1, 0.5, -0.25]])
    out = np.zeros(4, np.float32)                         # any out shape with the count
    assert core.smooth_l1_backward(cache, scale=3.0, out=out) is out
    np.testing.assert_array_equal(out, [3, -3, 1.5, -0.75])


def test_smooth_l1_layer_follows_shape_and_bottom_changes():
    net = layer_net(MOD, "SmoothL1Loss", {"pred": (4, 3), "target": (4, 3), "w_in": (4, 3),
                                          "w_out": (4, 3)}, param_str="{sigma: 2}", loss_weight=2)
    for shape in [(4, 3), (4, 3), (6, 2, 2), (1, 5)]:
        data = {name: RNG.randn(*shape).astype(np.float32) for name in ("pred", "target")}
        data.update({name: RNG.rand(*shape).astype(np.float32) for name in ("w_in", "w_out")})
        for name, value in data.items():
            net.blobs[name].reshape(*shape)
            net.blobs[name].data[...] = value
        net.forward()
        net.backward()
        d = {k: v.astype(np.float64) for k, v in data.items()}
        want, cache = core.smooth_l1_forward(d["pred"], d["target"], d["w_in"], d["w_out"], sigma=2.0)
        assert float(net.blobs["loss"].data[0]) == pytest.approx(want, rel=1e-5)   # unweighted
        g = core.smooth_l1_backward(cache, scale=2.0)
        np.testing.assert_allclose(net.blobs["pred"].diff, g, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(net.blobs["target"].diff, -g, rtol=1e-5, atol=1e-7)
        assert np.all(net.blobs["w_in"].diff == 0) and np.all(net.blobs["w_out"].diff == 0)
    net.blobs["w_out"].reshape(1, 4)
    with pytest.raises(ValueError, match=r"SmoothL1Loss: bottom 'outside_weights' must have as many "
                                         r"values as 'pred'"):
        net.forward()


# ---------------------------------------------------------------------------
# MeanVarianceLoss labels, Expectation and MeanVarianceLoss reshapes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad, shown", [(4.0, "4.0"), (-1.0, "-1.0"), (1.5, "1.5"), (np.nan, "nan"),
                                        (np.inf, "inf"), (-np.inf, "-inf"), (3.0000002, "3.0000002")])
def test_mean_variance_bad_labels_raise_with_index(bad, shown):
    labels = np.array([0.0, 3.0, bad, 1.0])
    with pytest.raises(ValueError, match=rf"^MeanVarianceLoss: bottom 'label' holds {shown}\d* at index "
                                         rf"\(2,\); expected integers in \[0, 4\)"):
        core.mean_variance_forward(np.zeros((4, 4)), labels)


def test_expectation_and_mean_variance_follow_shape_changes():
    e_net = layer_net(MOD, "Expectation", {"scores": (3, 5)}, tops=("age",), loss_weight=None)
    m_net = layer_net(MOD, "MeanVarianceLoss", {"scores": (3, 5), "label": (3,)}, loss_weight=1)
    for n, k in [(3, 5), (3, 5), (6, 5), (2, 7)]:
        x = RNG.randn(n, k).astype(np.float32)
        y = RNG.randint(0, k, n).astype(np.float32)
        e_net.blobs["scores"].reshape(n, k)
        e_net.blobs["scores"].data[...] = x
        e_net.forward()
        assert e_net.blobs["age"].data.shape == (n, 1)
        want = core.expectation_forward(x.astype(np.float64))[0]
        np.testing.assert_allclose(e_net.blobs["age"].data, want, rtol=1e-5)
        m_net.blobs["scores"].reshape(n, k)
        m_net.blobs["label"].reshape(n)
        m_net.blobs["scores"].data[...] = x
        m_net.blobs["label"].data[...] = y
        m_net.forward()
        m_net.backward()
        want, cache = core.mean_variance_forward(x.astype(np.float64), y)
        assert float(m_net.blobs["loss"].data[0]) == pytest.approx(want, rel=1e-5)
        np.testing.assert_allclose(m_net.blobs["scores"].diff, core.mean_variance_backward(cache),
                                   rtol=1e-4, atol=1e-7)
        assert np.all(m_net.blobs["label"].diff == 0)
    # bad values are caught on any pass, bad shapes after good ones
    m_net.blobs["label"].data[1] = 2.5
    with pytest.raises(ValueError, match=r"MeanVarianceLoss: bottom 'label' holds 2\.5 at index \(1,\)"):
        m_net.forward()
    m_net.blobs["label"].data[1] = 1
    m_net.blobs["scores"].data[0, 3] = np.inf
    with pytest.raises(ValueError, match=r"MeanVarianceLoss: bottom 'scores' holds a non-finite value "
                                         r"inf at index \(0, 3\)"):
        m_net.forward()
    m_net.blobs["label"].reshape(3)
    with pytest.raises(ValueError, match=r"MeanVarianceLoss: bottom 'label' must hold one label per sample"):
        m_net.forward()
    e_net.blobs["scores"].data[1, 2] = -np.inf
    with pytest.raises(ValueError, match=r"Expectation: bottom 'scores' holds a non-finite value "
                                         r"-inf at index \(1, 2\)"):
        e_net.forward()
    e_net.blobs["scores"].reshape(2, 7, 2)
    with pytest.raises(ValueError, match=r"Expectation: bottom 'scores' must be \(N, K\) or \(N, K, 1, 1\)"):
        e_net.forward()
