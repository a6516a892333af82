"""The small demo, run once per test session (``demo_run`` in tests/conftest.py), and what the
tests read from it: tests/test_demo.py checks what every family's part must have, and each
family's tests/test_<family>_demo.py its own rows, figures and nets."""

import json
import os
import subprocess
import sys

from caffe_losses.nets.prototxt import read_net_param

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")


def demo(*args, cwd=None):
    """``caffe-losses demo --small --no-progress ARGS`` (a CompletedProcess)."""
    return subprocess.run([CLI, "demo", "--small", "--no-progress", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


def run_small(out):
    """The whole small demo into ``out``: (out, stdout, results.json's content)."""
    proc = demo("--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "results.json") as f:
        return out, proc.stdout, json.load(f)


def rows(doc, family):
    """The result rows of one family (its ``caffe-losses demo --only`` name)."""
    return [r for r in doc["rows"] if r["family"] == family]


def metrics(doc, family):
    """[(role, metric name without its parenthesis)] of one family's rows, in order."""
    return [(r["role"], r["metric"].split(" (")[0]) for r in rows(doc, family)]


def figures(doc, family):
    return {f for f in doc["figures"] if f.split("/")[0] == family}


def layers(path):
    """{name: LayerParameter} of a net file the demo wrote."""
    return {layer.name: layer for layer in read_net_param(str(path)).layer}
