"""`caffe-losses demo --small`: the main job end to end (tiny sizes)."""

import csv
import os
import subprocess
import sys

from caffe_losses.experiments import MODULES

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")


def test_demo_small_prints_the_table_and_writes_the_pictures(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([CLI, "demo", "--small", "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| loss" in proc.stdout and "| verdict" in proc.stdout
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    losses = {r["loss"] for r in rows}
    for name in ("SoftmaxWithInfogainLoss", "WeightedSigmoidCrossEntropyLoss", "SmoothL1Loss", "CenterLoss"):
        assert any(name in loss for loss in losses), losses
    assert all(r["verdict"] in ("better", "matches", "WORSE") for r in rows)
    for family in MODULES:
        png = out / family / "training_curves.png"
        assert png.stat().st_size > 5000, png
        assert f"figure: {png}" in proc.stdout
    assert (out / "center" / "features.png").is_file()
