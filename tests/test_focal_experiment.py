"""The focal demo recipe: its data, its metrics, its baseline nets, and a small run end to end."""

import numpy as np
import pytest

from caffe_losses.experiments import runner
from caffe_losses.losses import DEMOS
from caffe_losses.losses.focal import data, experiment
from caffe_losses.nets.prototxt import read_net_param
from caffe_losses.glue.params import load_yaml


def test_data_is_deterministic_dense_and_heavily_imbalanced():
    x1, y1 = data.make_dense(64, seed=3)
    x2, y2 = data.make_dense(64, seed=3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.shape == (64, 1, 48, 48) and y1.shape == (64, 1, 6, 6)
    x, y = data.make_dense(768, seed=data.SPLIT_SEEDS["train"])
    assert set(np.unique(y)) == {0.0, 1.0} and 0.02 < y.mean() < 0.045      # a few percent
    # a positive tile holds ink; a blank tile only noise
    tiles = x.reshape(768, 6, 8, 6, 8).transpose(0, 1, 3, 2, 4).reshape(768, 36, 64)
    assert tiles[y.reshape(768, 36) == 1].mean() > 0.2


def test_metrics_by_hand():
    # ranked: pos (2), neg (0.5), pos (-1), neg (-3): AP = (1/1 + 2/3) / 2; at log-odds > 0: R 1/2, P 1/2
    got = experiment.metrics(np.array([2.0, -1.0, 0.5, -3.0]), np.array([1.0, 1.0, 0.0, 0.0]))
    assert got == pytest.approx({"recall": 0.5, "precision": 0.5, "F1": 0.5, "AP": 5 / 6})
    # ties share one threshold: score >= 1: P 1/2, R 1/2; score >= 0: P 2/3, R 1
    assert experiment.average_precision(np.array([1.0, 1.0, 0.0]), np.array([1, 0, 1])) == \
        pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert experiment.average_precision(np.array([0.3, 0.1]), np.array([0, 0])) == 0.0


def test_the_demo_runs_small_and_compares_with_the_native_losses(tmp_path):
    assert DEMOS["focal"].module("experiment") is experiment
    jobs = experiment.plan(str(tmp_path / "demo"), small=True, seeds=(1701, 1702))
    assert len(jobs) == 8
    for template, (_, short, ours, native, _) in experiment.TASKS.items():
        ours_net = read_net_param(str(tmp_path / "demo" / template / "ours" / "train_val.prototxt"))
        base_net = read_net_param(str(tmp_path / "demo" / template / "baseline" / "train_val.prototxt"))
        (ours_loss,) = [l for l in ours_net.layer if l.name == "loss"]
        (base_loss,) = [l for l in base_net.layer if l.name == "loss"]
        assert ours_loss.python_param.layer == ours and base_loss.type == native
        assert base_loss.loss_param.normalization == 1                          # VALID
        # the same net otherwise
        assert [l.name for l in ours_net.layer] == [l.name for l in base_net.layer]
        assert load_yaml(ours_loss.python_param.param_str)["gamma"] == 2
    results = runner.run_jobs(jobs, workers=1)
    rows, figures = experiment.summarize(results, str(tmp_path / "demo"), small=True)
    assert [r["role"] for r in rows] == ["purpose", "check"] * 2
    for row in rows:
        assert row["seeds"] == [1701, 1702] and len(row["values"]) == 2
        assert all(0 <= v <= 1 for v in row["values"] + row["baseline_values"])
        assert row["baseline"].endswith("(native)")
    assert all(f.endswith(".png") for f in figures)
