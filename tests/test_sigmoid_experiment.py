"""The sigmoid experiment (small size: structure only) and its data."""

import os

import numpy as np

from caffe_losses.data.sigmoid import TAG_PREVALENCE, make_edges, make_multilabel
from caffe_losses.experiments import sigmoid as experiment

KEYS = {"loss", "recipe", "metric", "value", "baseline", "baseline_value", "higher_is_better", "claim"}


def test_small_run_rows(tmp_path):
    rows = experiment.run(str(tmp_path), small=True)
    assert len(rows) == 3 * len(experiment.TASKS)
    for row in rows:
        assert KEYS <= set(row), row
        assert row["loss"] == "WeightedSigmoidCrossEntropyLoss"
        assert row["baseline"] == "SigmoidCrossEntropyLoss"
        assert 0.0 <= row["value"] <= 1.0 and 0.0 <= row["baseline_value"] <= 1.0
        assert isinstance(row["higher_is_better"], bool) and row["claim"]
    metrics = [r["metric"].split()[0] for r in rows]
    assert metrics == ["recall", "precision", "F1"] * len(experiment.TASKS)
    figures = [r["figure"] for r in rows if r.get("figure")]
    assert figures and all(os.path.isfile(f) for f in figures)
    # the baseline really is Caffe's native layer, with the template's normalization
    with open(tmp_path / "sigmoid_edges" / "native" / "train_val.prototxt") as f:
        text = f.read()
    assert 'type: "SigmoidCrossEntropyLoss"' in text and "normalization: VALID" in text
    assert "python_param" not in text


def test_metrics_by_hand():
    scores = np.array([[2.0, -1.0, 0.5, -3.0]])
    targets = np.array([[1.0, 1.0, 0.0, 0.0]])
    # one true positive, one false negative, one false positive
    assert experiment.metrics(scores, targets) == {"recall": 0.5, "precision": 0.5, "f1": 0.5}


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
