"""Shared core helpers: Caffe's normalizer, stable softmax, label checks, the loss sum,
the non-finite reporter, the output view and the workspace."""

import re

import numpy as np
import pytest

from caffe_losses.losses.common import Workspace, canonical_shape, check_labels, first_bad_index, log_softmax, loss_sum, normalizer, out_view, raise_non_finite, sigmoid, softmax, softplus


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


def test_check_labels_bad_values_in_every_dtype_and_with_ignore_labels():
    good = np.array([[0, 3, 1], [2, 2, 0]])
    for bad, shown in [(np.nan, "nan"), (np.inf, "inf"), (-1.0, "-1.0"), (2.5, "2.5"), (4.0, "4.0"),
                       (1e20, "1e+20"), (-(2.0 ** 40), "-1099511627776.0")]:
        lab = good.astype(np.float64)
        lab[1, 2] = bad
        for ignore in (None, 255, 0):
            with pytest.raises(ValueError, match=rf"L: bottom 'label' holds {re.escape(shown)} at index \(1, 2\)"):
                check_labels("L", lab, 4, ignore_label=ignore)
    lab = good.astype(np.float32)
    lab[0, 0] = 255
    y, valid = check_labels("L", lab, 4, ignore_label=255)
    assert y.tolist() == [[0, 3, 1], [2, 2, 0]] and valid.tolist() == [[False, True, True], [True] * 3]
    y, valid = check_labels("L", np.zeros((2, 0)), 4)
    assert y.shape == (2, 0) and valid is None


def test_loss_sum_is_a_float64_sum():
    # 2^24 + 1 is not a float32: a float32 accumulation of these loses the ones
    terms = np.array([2.0 ** 24] + [1.0] * 1000, np.float32)
    assert loss_sum(terms) == 2.0 ** 24 + 1000
    assert isinstance(loss_sum(terms), float)


def test_first_bad_index_and_the_non_finite_reporter():
    assert first_bad_index(np.array([[False, False], [False, True]])) == (1, 1)
    assert first_bad_index(np.array([False, True, True])) == (1,)
    with pytest.raises(ValueError, match=r"^Own: bottom 'b' holds a non-finite value -inf at index \(0, 1\)$"):
        raise_non_finite("Own", np.nan, [("bottom 'a'", np.zeros(3)), ("bottom 'b'", np.array([[0, -np.inf]]))])
    with pytest.raises(ValueError, match=r"^Own: the loss overflowed to inf although every input is finite"):
        raise_non_finite("Own", np.inf, [("bottom 'a'", np.zeros(3))])
    # finite in float64 but beyond float32 (the type of Caffe's top blob)
    with pytest.raises(ValueError, match=r"^Own: the loss 1e\+40 does not fit float32 \(at most 3\.403e\+38\)"):
        raise_non_finite("Own", 1e40, [("bottom 'a'", np.zeros(3))])


def test_out_view_writes_through_to_any_shape_with_the_count():
    out = np.zeros((2, 3, 1))
    view = out_view(out, (6,), np.float64)
    view[...] = np.arange(6)
    assert out.ravel().tolist() == list(range(6))
    assert out_view(None, (2, 2), np.float32).shape == (2, 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        out_view(np.zeros((4, 4))[:, ::2], (8,), np.float64)


def test_workspace_reuses_arrays_until_the_shape_changes():
    ws = Workspace()
    a = ws.array("x", (2, 3), np.dtype(np.float32))
    assert ws.array("x", (2, 3), np.dtype(np.float32)) is a
    assert ws.array("x", (3, 3), np.dtype(np.float32)) is not a
    assert ws.array("x", (3, 3), np.dtype(np.float64)).dtype == np.float64
    calls = []
    assert ws.memo("m", ("k", 1), lambda: calls.append(1) or "v") == "v"
    assert ws.memo("m", ("k", 1), lambda: calls.append(1) or "w") == "v" and calls == [1]
    assert ws.memo("m", ("k", 2), lambda: "w") == "w"
    zeros = ws.zeros((2,), np.dtype(np.float32))
    assert not zeros.flags.writeable and not zeros.any()


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
