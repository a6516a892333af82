"""The sigmoid experiment's metrics, and its data."""

import numpy as np
import pytest

from caffe_losses.losses.sigmoid.data import TAG_PREVALENCE, make_edges, make_multilabel
from caffe_losses.losses.sigmoid import experiment

def test_metrics_by_hand():
    scores = np.array([[2.0, -1.0, 0.5, -3.0]])
    targets = np.array([[1.0, 1.0, 0.0, 0.0]])
    # at sigmoid > 0.5 (score > 0): one true positive, one false negative, one false positive;
    # ranked by score: pos (2), neg (0.5), pos (-1), neg (-3): AP = (1/1 + 2/3) / 2
    got = experiment.metrics(scores, targets)
    assert got == pytest.approx({"recall": 0.5, "precision": 0.5, "F1": 0.5, "AP": 5 / 6})
    # per column: each column alone, then the mean (a column without positives counts 0)
    two = experiment.metrics(np.array([[2.0, 1.0], [-1.0, 3.0]]), np.array([[1.0, 0.0], [0.0, 0.0]]),
                             per_column=True)
    assert two == pytest.approx({"recall": 0.5, "precision": 0.5, "F1": 0.5, "AP": 0.5})


def test_data_is_deterministic_and_imbalanced():
    x1, y1 = make_edges(16, seed=3)
    x2, y2 = make_edges(16, seed=3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.shape == y1.shape == (16, 1, 32, 32)
    assert set(np.unique(y1)) == {0.0, 1.0} and 0.03 < y1.mean() < 0.2
    f1, t1 = make_multilabel(2000, seed=5)
    f2, t2 = make_multilabel(2000, seed=5)
    assert np.array_equal(f1, f2) and np.array_equal(t1, t2)
    assert t1.shape == (2000, 8)
    np.testing.assert_allclose(t1.mean(axis=0), TAG_PREVALENCE, atol=0.025)


def test_average_precision_by_hand_with_ties():
    # scores 1, 1, 0 with positives at the first and the last: the tie is one threshold.
    # score >= 1: 2 called, 1 true (P 1/2, R 1/2); score >= 0: 3 called, 2 true (P 2/3, R 1)
    precision, recall = experiment.precision_recall(np.array([1.0, 1.0, 0.0]), np.array([1, 0, 1]))
    np.testing.assert_allclose(precision, [1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [1 / 2, 1])
    assert experiment.average_precision(np.array([1.0, 1.0, 0.0]), np.array([1, 0, 1])) == \
        pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert experiment.average_precision(np.array([0.3, 0.1]), np.array([0, 0])) == 0.0
