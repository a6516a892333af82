"""Caffe's fillers in NumPy (caffe_losses.glue.fillers) and CenterLoss's center_filler key.

The expected distributions and fan rules are those of Caffe's
include/caffe/filler.hpp: for a blob (num, d1, ...), fan_in = count / num and
fan_out = count / d1; xavier draws from U[-sqrt(3 / n), sqrt(3 / n)], msra
from N(0, sqrt(2 / n)).
"""

import caffe
import numpy as np
import pytest

from caffe_losses.glue.fillers import as_filler, fill
from caffe_losses.glue.testing import layer_net


def test_as_filler_reads_a_type_name_or_a_filler_parameter():
    assert as_filler("xavier") == {"type": "xavier"}
    assert as_filler({"type": "Gaussian", "std": 1}) == {"type": "gaussian", "std": 1.0}
    assert as_filler({"type": "xavier", "variance_norm": "average"}) == \
        {"type": "xavier", "variance_norm": "AVERAGE"}
    assert as_filler({"value": 2}) == {"type": "constant", "value": 2.0}


@pytest.mark.parametrize("value,error,pattern", [
    (3, TypeError, r"must be a filler type"),
    ("ones", ValueError, r"type must be one of constant, uniform"),
    ({"type": "gaussian", "sigma": 1}, ValueError, r"unknown key\(s\) sigma"),
    ({"type": "gaussian", "std": True}, TypeError, r"std must be a number, not a boolean"),
    ({"type": "gaussian", "std": float("nan")}, ValueError, r"std must be finite"),
    ({"type": "constant", "value": 1e39}, ValueError, r"value must fit float32"),
    ({"type": "gaussian", "std": -1}, ValueError, r"std must be >= 0"),
    ({"type": "uniform", "min": 2, "max": 1}, ValueError, r"min must be <= max"),
    ({"type": "xavier", "variance_norm": "FAN"}, ValueError, r"variance_norm must be one of"),
])
def test_as_filler_refuses(value, error, pattern):
    with pytest.raises(error, match=pattern):
        as_filler(value)


def test_fill_follows_caffes_distributions_and_fans():
    caffe.set_random_seed(3)             # Caffe's generator draws the values (issue 18)
    shape = (200, 50)                        # fan_in 50, fan_out 200
    assert np.all(fill(shape, as_filler({"type": "constant", "value": 0.5})) == 0.5)
    u = fill(shape, as_filler({"type": "uniform", "min": -2, "max": 3}))
    assert u.dtype == np.float32 and -2 <= u.min() and u.max() <= 3
    bound = np.sqrt(3.0 / 50)
    x = fill(shape, as_filler("xavier"))
    assert np.abs(x).max() <= bound and np.abs(x).max() > 0.9 * bound
    bound_out = np.sqrt(3.0 / 200)
    assert np.abs(fill(shape, as_filler({"type": "xavier", "variance_norm": "FAN_OUT"}))).max() <= bound_out
    m = fill(shape, as_filler("msra"))
    assert m.std() == pytest.approx(np.sqrt(2.0 / 50), rel=0.05)
    g = fill(shape, as_filler({"type": "gaussian", "mean": 1, "std": 0.1}))
    assert g.mean() == pytest.approx(1, abs=0.01) and g.std() == pytest.approx(0.1, rel=0.05)
    b = fill((4, 3, 2), as_filler("positive_unitball"))
    assert np.all(b >= 0)
    np.testing.assert_allclose(b.reshape(4, -1).sum(axis=1), 1, rtol=1e-6)


def test_center_filler_initialises_the_centers_in_a_net():
    zeros = layer_net("caffe_losses", "CenterLoss", {"x": (4, 3), "y": (4,)},
                      param_str="{num_classes: 5}")
    assert np.all(zeros.params["under_test"][0].data == 0)
    caffe.set_random_seed(0)
    net = layer_net("caffe_losses", "CenterLoss", {"x": (4, 3), "y": (4,)},
                    param_str="{num_classes: 5, center_filler: {type: constant, value: 0.25}}")
    assert np.all(net.params["under_test"][0].data == 0.25)
    net = layer_net("caffe_losses", "CenterLoss", {"x": (4, 3), "y": (4,)},
                    param_str="{num_classes: 5, center_filler: xavier}")
    centers = net.params["under_test"][0].data
    assert centers.shape == (5, 3) and np.abs(centers).max() <= np.sqrt(3.0 / 3) and centers.any()


def test_center_filler_errors_name_the_key():
    with pytest.raises(ValueError, match=r"CenterLoss: 'center_filler' value must fit float32"):
        layer_net("caffe_losses", "CenterLoss", {"x": (4, 3), "y": (4,)},
                  param_str="{num_classes: 5, center_filler: {type: constant, value: 1e39}}")
