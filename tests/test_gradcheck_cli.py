"""`caffe-losses gradcheck` on a user's own Python layer (here: the test helpers)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from caffe_losses.cli.gradcheck import parse_bottom

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
HERE = os.path.dirname(os.path.abspath(__file__))


def gradcheck(*args):
    return subprocess.run([CLI, "gradcheck", *args], cwd=HERE, capture_output=True, text=True, timeout=120)


def test_passes_a_correct_layer():
    proc = gradcheck("--module", "helper_layers", "--layer", "HalfSquaredError",
                     "--bottom", "a=4x3", "--bottom", "b=4x3", "--param-str", "{scale: 2}")
    assert proc.returncode == 0, proc.stderr
    assert "ok helper_layers.HalfSquaredError d/da: 12 element(s)" in proc.stdout
    assert "d/db" in proc.stdout


def test_fails_a_wrong_backward():
    proc = gradcheck("--module", "helper_layers", "--layer", "WrongBackward",
                     "--bottom", "a=4x3", "--bottom", "b=4x3", "--wrt", "a")
    assert proc.returncode == 1
    assert "FAIL helper_layers.WrongBackward: gradient of 'a' disagrees" in proc.stdout


def test_reports_a_layer_that_cannot_be_built():
    proc = gradcheck("--module", "helper_layers", "--layer", "HalfSquaredError", "--bottom", "a=4x3")
    assert proc.returncode == 2
    assert "HalfSquaredError: expected 2 bottom(s) (a, b), got 1" in proc.stderr


@pytest.mark.parametrize("text, expected", [
    ("x=4x3", ("x", (4, 3), None)),
    ("label=4:int:0:10", ("label", (4,), (0, 10))),
    ("label=4:int:-16777216:16777216", ("label", (4,), (-16777216, 16777216))),
    ("zero=4x3:const:0", ("zero", (4, 3), None)),
    ("big=2:const:3.4028235e38", ("big", (2,), None)),     # float32's largest, as safety judges it
])
def test_parse_bottom(text, expected):
    assert parse_bottom(text) == expected


@pytest.mark.parametrize("text", ["x", "x=4xa", "x=0x3", "x=4:float:0:1", "x=4:int:5:5",
                                  "x=4:int:0:16777217", "x=4:const:1e39", "x=4:const:-3.5e38"])
def test_parse_bottom_rejects(text):
    with pytest.raises(ValueError, match="--bottom"):
        parse_bottom(text)


def rpn_inside_weights(path, seed=0):
    """fast-rcnn's RPN bbox inside weights: 1 on the 4 deltas of 128 foreground anchors of 9 x 14 x 19."""
    rng = np.random.RandomState(seed)
    w = np.zeros((9, 4, 14 * 19), np.float32)
    fg = rng.choice(9 * 14 * 19, 128, replace=False)
    anchor, where = np.unravel_index(fg, (9, 14 * 19))
    w[anchor, :, where] = 1
    np.save(path, w.reshape(1, 36, 14, 19))


def test_kink_of_smooth_l1_on_the_rpn_head(tmp_path):
    # fast-rcnn's RPN bbox head: 1 x 36 x 14 x 19, sigma 3, so the kink is at
    # |d| = 1/sigma^2 = 0.111; with a zero target and 0/1 inside weights, d = pred.
    rpn_inside_weights(tmp_path / "inside.npy")
    base = ["--module", "caffe_losses", "--layer", "SmoothL1Loss", "--param-str", "{sigma: 3}",
            "--bottom", "pred=1x36x14x19", "--bottom", "target=1x36x14x19:const:0",
            "--bottom", f"inside={tmp_path / 'inside.npy'}", "--bottom", "outside=1x36x14x19:const:1",
            "--max-checks", "10000"]
    proc = gradcheck(*base)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL caffe_losses.SmoothL1Loss: gradient of 'pred' disagrees" in proc.stdout
    assert "see --kink" in proc.stdout
    # every element that fails lies within one step of the kink
    bad = [int(m) for m in re.findall(r"^  \((\d+),\): analytic", proc.stdout, re.M)]
    pred = np.random.RandomState(1701).randn(1, 36, 14, 19).astype(np.float32).ravel()
    assert bad and all(abs(abs(pred[i]) - 1 / 9) <= 1e-2 for i in bad), [pred[i] for i in bad]
    proc = gradcheck(*base, "--kink", str(1 / 9))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"ok caffe_losses\.SmoothL1Loss d/dpred: (\d+) element\(s\), (\d+) left out near the kink", proc.stdout)
    assert m and int(m.group(1)) + int(m.group(2)) == 36 * 14 * 19 and 0 < int(m.group(2)) < 300, proc.stdout
    assert "d/dtarget" not in proc.stdout      # a constant bottom is not checked unless --wrt asks


def test_kink_follows_caffe_gradient_checker():
    # Caffe: an element is left out when kink - kink_range <= |x| <= kink + kink_range
    import caffe_losses.glue.testing as testing
    net = testing.layer_net("helper_layers", "HalfSquaredError", {"a": (1, 4), "b": (1, 4)})
    x = np.array([[-1.0, -0.5, 0.5, 2.0]], np.float32)
    a, _ = testing.check_net_gradient(net, {"a": x, "b": np.zeros((1, 4), np.float32)}, ["a"],
                                      kink=0.5, kink_range=0.01)["a"]
    assert a.size == 2                       # +-0.5 left out, on both sides of 0


def test_default_checks_the_bottoms_the_layer_declares_differentiable():
    proc = gradcheck("--module", "helper_layers", "--layer", "OnlyFirstBottom", "--bottom", "a=4x3",
                     "--bottom", "b=4x3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "d/da" in proc.stdout and "d/db" not in proc.stdout
    proc = gradcheck("--module", "helper_layers", "--layer", "OnlyFirstBottom", "--bottom", "a=4x3",
                     "--bottom", "b=4x3", "--wrt", "a", "--wrt", "b")
    assert proc.returncode == 1
    assert "note: the layer wrote no gradient into b (all zeros)" in proc.stdout


@pytest.mark.parametrize("argv, message", [
    (["--stepsize", "0"], r"argument --stepsize: invalid positive number value: '0'"),
    (["--threshold", "nan"], r"argument --threshold: invalid positive number value: 'nan'"),
    (["--max-checks", "0"], r"argument --max-checks: invalid integer >= 1 value: '0'"),
    (["--kink", "-1"], r"argument --kink: invalid number >= 0 value: '-1'"),
    (["--bottom", "a=4x3"], r"blob name 'a' is given twice"),
    (["--top", "b"], r"blob name 'b' is given twice"),
])
def test_bad_options_are_clear(argv, message):
    proc = gradcheck("--module", "helper_layers", "--layer", "HalfSquaredError", "--bottom", "a=4x3",
                     "--bottom", "b=4x3", *argv)
    assert proc.returncode == 2 and re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_current_folder_is_searched_after_the_installed_packages(tmp_path):
    # the user's layer module comes from the current folder, but a ./numpy.py there does not run
    for name in ("numpy", "yaml", "caffe"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the current folder shadowed a package')\n")
    with open(os.path.join(HERE, "helper_layers.py")) as f:
        (tmp_path / "mylayers.py").write_text(f.read())
    proc = subprocess.run([CLI, "gradcheck", "--module", "mylayers", "--layer", "HalfSquaredError",
                           "--bottom", "a=4x3", "--bottom", "b=4x3"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok mylayers.HalfSquaredError d/da" in proc.stdout
