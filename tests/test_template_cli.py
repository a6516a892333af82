"""`caffe-losses template`: copy + prepare a template, then it trains as printed."""

import os
import subprocess
import sys

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")


def test_list_and_copy_then_train(tmp_path):
    proc = subprocess.run([CLI, "template", "--list"], capture_output=True, text=True)
    assert proc.returncode == 0 and "infogain_digits_source" in proc.stdout
    out = tmp_path / "mine"
    proc = subprocess.run([CLI, "template", "infogain_digits_source", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"cd {out} && caffe-losses train solver.prototxt" in proc.stdout
    assert (out / "H.binaryproto").is_file() and (out / "data").is_dir()
    proc = subprocess.run([CLI, "train", "solver.prototxt", "--max-iter", "5", "--no-progress"], cwd=out,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # an existing folder is not overwritten without --force
    proc = subprocess.run([CLI, "template", "infogain_digits_source", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "exists" in proc.stderr


def test_unknown_template(tmp_path):
    proc = subprocess.run([CLI, "template", "nope", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no template 'nope'" in proc.stderr
