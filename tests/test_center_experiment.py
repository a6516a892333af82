"""The center-loss experiment (what `caffe-losses demo` shows), at small size."""

import os

import numpy as np

from caffe_losses.experiments import center

KEYS = {"loss", "recipe", "metric", "value", "baseline", "baseline_value", "higher_is_better", "claim",
        "figure"}


def test_small_run_returns_rows_and_writes_the_figure(tmp_path):
    rows = center.run(str(tmp_path), small=True)
    assert [r["metric"] for r in rows] == ["test accuracy", "intra/inter distance ratio (test features)"]
    for row in rows:
        assert set(row) == KEYS
        assert row["loss"] == "CenterLoss" and row["baseline"] == "SoftmaxWithLoss"
        assert isinstance(row["value"], float) and isinstance(row["baseline_value"], float)
        assert np.isfinite(row["value"]) and np.isfinite(row["baseline_value"])
        assert row["figure"] == str(tmp_path / "features.png")
    acc, ratio = rows
    assert acc["higher_is_better"] is True and ratio["higher_is_better"] is False
    assert 0 <= acc["value"] <= 1 and 0 <= acc["baseline_value"] <= 1
    assert ratio["value"] > 0 and ratio["baseline_value"] > 0
    assert "0.1 x center loss" in acc["recipe"]           # lambda read from the template

    with open(rows[0]["figure"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(rows[0]["figure"]) > 10000

    # the two copies differ exactly by the CenterLoss layer, and both were trained and snapshotted
    with_center = (tmp_path / "with_center_loss" / "train_val.prototxt").read_text()
    without = (tmp_path / "softmax_only" / "train_val.prototxt").read_text()
    assert 'layer: "CenterLoss"' in with_center and 'layer: "CenterLoss"' not in without
    assert (tmp_path / "with_center_loss" / f"lenetpp_center_iter_{center.SMALL_ITERATIONS}.caffemodel").is_file()
    assert (tmp_path / "softmax_only" / f"lenetpp_center_iter_{center.SMALL_ITERATIONS}.caffemodel").is_file()


def test_runs_are_deterministic(tmp_path):
    a = center.run(str(tmp_path / "a"), small=True)
    b = center.run(str(tmp_path / "b"), small=True)
    for ra, rb in zip(a, b):
        assert ra["value"] == rb["value"] and ra["baseline_value"] == rb["baseline_value"]
