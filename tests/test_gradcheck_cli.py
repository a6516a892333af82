"""`caffe-losses gradcheck` on a user's own Python layer (here: the test helpers)."""

import os
import subprocess
import sys

import pytest

from caffe_losses.tools.gradcheck import parse_bottom

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
])
def test_parse_bottom(text, expected):
    assert parse_bottom(text) == expected


@pytest.mark.parametrize("text", ["x", "x=4xa", "x=0x3", "x=4:float:0:1", "x=4:int:5:5"])
def test_parse_bottom_rejects(text):
    with pytest.raises(ValueError, match="--bottom"):
        parse_bottom(text)
