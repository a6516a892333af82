"""Shared core helpers: Caffe's normalizer, stable softmax, label checks."""

import numpy as np
import pytest

from caffe_losses.core.common import (canonical_shape, check_labels, log_softmax, normalizer,
                                      sigmoid, softmax, softplus)


def test_normalizer_matches_caffe_get_normalizer():
    # LossLayer<Dtype>::GetNormalizer in BVLC caffe src/caffe/layers/loss_layer.cpp
    assert normalizer("FULL", 4, 6, 10) == 24
    assert normalizer("VALID", 4, 6, 10) == 10
    assert normalizer("VALID", 4, 6, None) == 24      # no ignore label: all count
    assert normalizer("BATCH_SIZE", 4, 6, 10) == 4
    assert normalizer("NONE", 4, 6, 10) == 1
    assert normalizer("VALID", 4, 6, 0) == 1          # clamped to at least 1
    with pytest.raises(ValueError, match="normalization"):
        normalizer("MEAN", 1, 1)


def test_canonical_shape():
    assert canonical_shape((8, 21, 5, 7), 1) == (8, 21, 35)
    assert canonical_shape((8, 21), 1) == (8, 21, 1)
    assert canonical_shape((8, 5, 21), -1) == (40, 21, 1)
    with pytest.raises(ValueError):
        canonical_shape((8, 21), 2)


def test_stable_functions_at_extremes():
    x = np.array([[-1e4, 0.0, 1e4]])
    ls = log_softmax(x)
    assert np.all(np.isfinite(ls)) and ls[0, 2] == 0.0 and ls[0, 0] == -2e4
    assert np.allclose(softmax(x), [[0, 0, 1]])
    assert np.all(np.isfinite(softplus(x))) and softplus(x)[0, 2] == 1e4
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(np.array([-1e4, 0.0, 1e4]))
    assert s.tolist() == [0.0, 0.5, 1.0]


def test_softplus_matches_definition_where_safe():
    x = np.linspace(-30, 30, 101)
    assert np.allclose(softplus(x), np.log1p(np.exp(x)), rtol=1e-12, atol=1e-300)


def test_check_labels():
    lab, valid = check_labels("L", np.array([0., 2., 1.]), 3)
    assert lab.tolist() == [0, 2, 1] and valid is None
    lab, valid = check_labels("L", np.array([0., 255., 1.]), 3, ignore_label=255)
    assert lab.tolist() == [0, 0, 1] and valid.tolist() == [True, False, True]
    with pytest.raises(ValueError, match=r"L: bottom 'label' holds 3\.0 at index \(1,\); expected integers in \[0, 3\)"):
        check_labels("L", np.array([0., 3., 1.]), 3)
    with pytest.raises(ValueError, match=r"holds 1\.5 at index \(0, 1\)"):
        check_labels("L", np.array([[0., 1.5]]), 3)
    with pytest.raises(ValueError, match="holds nan"):
        check_labels("L", np.array([np.nan]), 3)
    with pytest.raises(ValueError, match="-1.0 at index"):
        check_labels("L", np.array([-1.0]), 3, ignore_label=255)


def test_check_labels_fast_path_agrees_with_the_full_check():
    rng = np.random.RandomState(0)
    for dtype in (np.float32, np.float64, np.int64):
        lab = rng.randint(0, 7, (4, 5)).astype(dtype)
        y, valid = check_labels("L", lab, 7)
        assert valid is None and y.shape == (4, 5) and np.array_equal(y, lab.astype(np.int64))
    # an ignore label that is itself a class index takes the full path
    y, valid = check_labels("L", np.array([0., 2., 1.]), 3, ignore_label=2)
    assert y.tolist() == [0, 0, 1] and valid.tolist() == [True, False, True]
    # more classes than the probe covers
    y, _ = check_labels("L", np.array([70000.0, 3.0]), 100000)
    assert y.tolist() == [70000, 3]
    with pytest.raises(ValueError, match=r"holds 100000\.0 at index \(0,\)"):
        check_labels("L", np.array([100000.0, 3.0]), 100000)
    with pytest.raises(ValueError, match=r"holds 4294967296\.0"):
        check_labels("L", np.array([2.0**32]), 5)
