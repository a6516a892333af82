"""The infogain data and the templates' prepare functions."""

import numpy as np
import pytest

from caffe_losses.files import hmatrix
from caffe_losses.cli import main as cli_main
from caffe_losses.losses.infogain import data


def test_imbalanced_digits_split():
    d = data.imbalanced_digits()
    counts = d["counts"]
    assert counts.sum() == len(d["y_train"]) == len(d["x_train"])
    for c in range(10):
        if c in data.MINORITY:
            assert counts[c] == data.MINORITY_KEEP
        else:
            assert counts[c] > 100
    np.testing.assert_array_equal(np.bincount(d["y_test"].astype(int)), [50] * 10)
    # deterministic
    np.testing.assert_array_equal(data.imbalanced_digits()["y_train"], d["y_train"])


def test_prepare_source_h_is_what_the_tool_makes_from_the_labels(tmp_path):
    out = data.prepare_source(str(tmp_path))
    H = hmatrix.load_h(str(tmp_path / "H.binaryproto"), 10)
    w = np.diagonal(H)
    assert np.count_nonzero(H - np.diag(w)) == 0
    # inverse frequency, mean weight over the training samples 1
    assert np.dot(out["counts"], w) / out["counts"].sum() == pytest.approx(1, rel=1e-6)
    np.testing.assert_allclose(w * out["counts"], w[0] * out["counts"][0], rtol=1e-6)
    assert cli_main(["make-h", "--labels", str(tmp_path / "data" / "train.h5"),
                     "-o", str(tmp_path / "tool.binaryproto")]) == 0
    np.testing.assert_allclose(hmatrix.load_h(str(tmp_path / "tool.binaryproto")), H, rtol=1e-6)


def test_prepare_constant_h_rows_are_weighted_similarities(tmp_path):
    out = data.prepare_constant(str(tmp_path))
    H = np.load(tmp_path / "H.npy")
    D = np.loadtxt(tmp_path / "D.csv", delimiter=",")
    assert H.shape == (10, 10) and np.all(np.diagonal(D) == 0)
    w = hmatrix.class_weights(out["counts"])
    np.testing.assert_allclose(H, w[:, None] * np.exp(-D / 0.25), rtol=1e-5)
    # the most similar other class of each digit gets the largest off-diagonal entry
    off = H - np.diag(np.diagonal(H))
    np.testing.assert_array_equal(off.argmax(1), np.where(np.eye(10, dtype=bool), np.inf, D).argmin(1))


def test_segmentation_data_has_a_rare_class_and_ignored_borders(tmp_path):
    x, y = data.segmentation_data(20, seed=3)
    assert x.shape == y.shape == (20, 1, 16, 16)
    assert np.all(y[:, :, 0, :] == data.IGNORE_LABEL) and np.all(y[:, :, :, -1] == data.IGNORE_LABEL)
    counts = hmatrix.class_counts(y, 3, ignore_label=data.IGNORE_LABEL)
    assert counts[2] < 0.1 * counts.sum() and counts[2] > 0
    out = data.prepare_segmentation(str(tmp_path), small=True)
    w = np.diagonal(hmatrix.load_h(str(tmp_path / "H.binaryproto"), 3))
    assert w[2] > w[1] > w[0]                 # the rarest class weighs most
