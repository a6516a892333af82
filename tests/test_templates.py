"""Every template in prototxt_templates/ is prepared, loaded, run and trained."""

import os
import shutil

import numpy as np
import pytest

import caffe
from caffe_losses.nets.lint import lint_file
from caffe_losses.nets.templates import TEMPLATE_ROOT, list_templates, load_template, prepare_template

TEMPLATES = list_templates()


def test_there_are_templates():
    assert TEMPLATES, "prototxt_templates/ is empty"


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_runs(name, tmp_path, monkeypatch):
    folder = tmp_path / name
    shutil.copytree(os.path.join(TEMPLATE_ROOT, name), folder)
    meta = load_template(str(folder))
    prepare_template(str(folder), small=True)
    monkeypatch.chdir(folder)
    # the linter passes every template (paths resolve from the template folder)
    errors = [str(f) for _, f in lint_file("solver.prototxt") if f.severity == "error"]
    assert not errors, errors
    weights = meta.get("weights")
    for phase in (caffe.TRAIN, caffe.TEST):
        if weights:
            net = caffe.Net("train_val.prototxt", weights, phase)
        else:
            net = caffe.Net("train_val.prototxt", phase)
        out = net.forward()
        for key, value in out.items():
            assert np.all(np.isfinite(value)), f"{name}: output {key} not finite"
        if phase == caffe.TRAIN:
            net.backward()
    solver = caffe.get_solver("solver.prototxt")
    if weights:
        solver.net.copy_from(weights)
    iterations = int(meta.get("iterations", 10))
    solver.step(iterations)
    assert solver.iter == iterations
    for key in solver.net.outputs:
        assert np.all(np.isfinite(solver.net.blobs[key].data)), f"{name}: {key} not finite after training"


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_trains_with_the_caffe_tool(name, tmp_path):
    """README: `cd <template> && caffe train -solver solver.prototxt`, with a clean environment."""
    import subprocess
    import sys
    from google.protobuf import text_format
    from caffe_losses.training import read_solver
    folder = tmp_path / name
    shutil.copytree(os.path.join(TEMPLATE_ROOT, name), folder)
    meta = prepare_template(str(folder), small=True)
    solver = read_solver(str(folder / "solver.prototxt"))
    solver.max_iter = 2
    solver.snapshot_after_train = False
    solver.test_initialization = False
    (folder / "solver_cli.prototxt").write_text(text_format.MessageToString(solver))
    cmd = [os.path.join(os.path.dirname(sys.executable), "caffe"), "train", "-solver", "solver_cli.prototxt"]
    if meta.get("weights"):
        cmd += ["-weights", meta["weights"]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["GLOG_minloglevel"] = "0"
    env["GLOG_logtostderr"] = "1"
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Optimization Done" in proc.stderr
