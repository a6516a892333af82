"""`caffe-losses check`: every rule has a net that trips it, and a clean twin."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from caffe_losses.nets.lint import lint_file

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")

HEAD = """
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 8 } shape { dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 5 } }
"""


def pyloss(layer, bottoms, param_str="", extra="loss_weight: 1", name="loss", module="caffe_losses"):
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    ps = param_str.replace('"', '\\"')
    return (f'layer {{ name: "{name}" type: "Python" {b} top: "{name}" python_param {{ module: "{module}" '
            f'layer: "{layer}" param_str: "{ps}" }} {extra} }}')


SOFTMAX = 'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }'


def write_h(path, n):
    from caffe_losses.files.hmatrix import save_h
    save_h(str(path), np.eye(n))


def lint(tmp_path, body):
    path = tmp_path / "net.prototxt"
    path.write_text(HEAD + textwrap.dedent(body))
    return [(f.severity, f.rule) for _, f in lint_file(str(path))], [str(f) for _, f in lint_file(str(path))]


CASES = [
    # (rule, bad body, good body)
    ("python-loss-weight",
     pyloss("SoftmaxWithInfogainLoss", ["fc", "label"], "{source: H5.binaryproto}", extra=""),
     pyloss("SoftmaxWithInfogainLoss", ["fc", "label"], "{source: H5.binaryproto}")),
    ("param-str",
     pyloss("SmoothL1Loss", ["fc", "fc"], "{sigma: 0}"),
     pyloss("SmoothL1Loss", ["fc", "fc"], "{sigma: 2}")),
    ("param-str",
     pyloss("SmoothL1Los", ["fc", "fc"]),
     pyloss("SmoothL1Loss", ["fc", "fc"])),
    ("h-file",
     pyloss("SoftmaxWithInfogainLoss", ["fc", "label"], "{source: H7.binaryproto}"),
     pyloss("SoftmaxWithInfogainLoss", ["fc", "label"], "{source: H5.binaryproto}")),
    ("h-file",
     pyloss("SoftmaxWithInfogainLoss", ["fc", "label"], "{source: missing.binaryproto}"),
     pyloss("SoftmaxWithInfogainLoss", ["fc", "label"], "{source: H5.binaryproto}")),
    ("h-file",
     'layer { name: "loss" type: "InfogainLoss" bottom: "fc" bottom: "label" top: "loss" '
     'infogain_loss_param { source: "H7.binaryproto" } }',
     'layer { name: "loss" type: "InfogainLoss" bottom: "fc" bottom: "label" top: "loss" '
     'infogain_loss_param { source: "H5.binaryproto" } }'),
    ("double-softmax",
     SOFTMAX + pyloss("SoftmaxWithInfogainLoss", ["prob", "label"], "{source: H5.binaryproto}"),
     SOFTMAX + pyloss("InfogainLoss", ["prob", "label"], "{source: H5.binaryproto}")),
    ("double-softmax",
     SOFTMAX + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "prob" bottom: "label" top: "loss" }',
     'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }'),
    ("raw-scores",
     pyloss("InfogainLoss", ["fc", "label"], "{source: H5.binaryproto}"),
     SOFTMAX + pyloss("InfogainLoss", ["prob", "label"], "{source: H5.binaryproto}")),
    ("expectation-kernel-lr",
     SOFTMAX + 'layer { name: "age" type: "InnerProduct" bottom: "prob" top: "age" '
               'inner_product_param { num_output: 1 bias_term: false } }',
     SOFTMAX + 'layer { name: "age" type: "InnerProduct" bottom: "prob" top: "age" param { lr_mult: 0 } '
               'inner_product_param { num_output: 1 bias_term: false } }'),
    ("center-update",
     pyloss("CenterLoss", ["fc", "label"], "{num_classes: 3}", extra="loss_weight: 0.01"),
     pyloss("CenterLoss", ["fc", "label"], "{num_classes: 3}",
            extra="param { lr_mult: 0 decay_mult: 0 } loss_weight: 0.01")),
]


@pytest.mark.parametrize("rule, bad, good", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_trips_and_twin_is_clean(rule, bad, good, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_h(tmp_path / "H5.binaryproto", 5)
    write_h(tmp_path / "H7.binaryproto", 7)
    found, messages = lint(tmp_path, bad)
    assert ("error", rule) in found, messages
    found, messages = lint(tmp_path, good)
    assert not [f for f in found if f[0] == "error"], messages


def test_foreign_python_loss_without_weight_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found, _ = lint(tmp_path, pyloss("SigmoidCrossEntropyWeightLossLayer", ["fc", "fc"], module="seedmod", extra=""))
    assert found == [("warning", "python-loss-weight")]


def test_phases_are_separate(tmp_path, monkeypatch):
    # the TEST-only Softmax does not feed the TRAIN loss
    monkeypatch.chdir(tmp_path)
    body = ('layer { name: "prob" type: "Softmax" bottom: "fc" top: "fc2" include { phase: TEST } }\n'
            'layer { name: "id" type: "Split" bottom: "fc" top: "fc2" include { phase: TRAIN } }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" '
            'include { phase: TRAIN } }')
    found, messages = lint(tmp_path, body)
    assert found == [], messages


def test_cli_exit_status_and_solver_following(tmp_path):
    (tmp_path / "net.prototxt").write_text(HEAD + pyloss("SmoothL1Loss", ["fc", "fc"], extra=""))
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\n')
    proc = subprocess.run([CLI, "check", "solver.prototxt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "ERROR [python-loss-weight] layer 'loss'" in proc.stdout
    (tmp_path / "net.prototxt").write_text(HEAD + pyloss("SmoothL1Loss", ["fc", "fc"]))
    proc = subprocess.run([CLI, "check", "net.prototxt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and "0 error(s), 0 warning(s)" in proc.stdout
    proc = subprocess.run([CLI, "check", "nope.prototxt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "file not found" in proc.stderr
    (tmp_path / "bad.prototxt").write_text("layer { name: ")
    proc = subprocess.run([CLI, "check", "bad.prototxt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "not a valid net prototxt" in proc.stderr


def test_solver_nets_as_caffe_builds_them(tmp_path, monkeypatch):
    # one walk of a solver's nets for check (each net once) and train (with
    # phases, the generic net once per test_iter beyond the explicit test nets)
    import caffe
    from caffe_losses.nets.prototxt import read_prototxt, solver_nets
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(HEAD + pyloss("SmoothL1Loss", ["fc", "fc"], extra=""))
    (tmp_path / "test.prototxt").write_text(HEAD)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\ntest_net: "test.prototxt"\ntest_net_param { name: "inline" }\n'
        'test_iter: 1 test_iter: 1 test_iter: 1\ntest_interval: 10\nbase_lr: 0.1 weight_decay: 0.5\n'
        'lr_policy: "fixed"\n')
    solver, nets = read_prototxt("solver.prototxt")
    assert solver.weight_decay == 0.5
    assert [where for where, _ in nets] == ["net.prototxt", "solver.prototxt (test_net_param)", "test.prototxt"]
    assert [(where, phase) for where, _, phase in solver_nets(solver, "solver.prototxt")] == [
        ("net.prototxt", caffe.TRAIN), ("solver.prototxt (test_net_param)", caffe.TEST),
        ("test.prototxt", caffe.TEST), ("net.prototxt", caffe.TEST)]
    assert [(p, f.rule) for p, f in lint_file("solver.prototxt")] == [("net.prototxt", "python-loss-weight")]
    assert read_prototxt("net.prototxt")[0] is None
    (tmp_path / "loop.prototxt").write_text('net: "loop.prototxt"\nbase_lr: 0.1\n')
    with pytest.raises(ValueError, match="the solver's net is itself"):
        read_prototxt("loop.prototxt")
    (tmp_path / "empty_solver.prototxt").write_text("base_lr: 0.1\n")
    with pytest.raises(ValueError, match="a solver prototxt with no 'net' or 'train_net'"):
        read_prototxt("empty_solver.prototxt")


def test_include_exclude_rules_follow_caffe(tmp_path):
    # StateMeetsRule for {phase, level 0, no stages}: a stage-only exclude rule is
    # not met (the layer stays), an empty exclude rule is met (the layer goes),
    # an include rule needing a stage is not met (the layer is left out).
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    from caffe_losses.nets.preflight import in_phase
    net = text_format.Parse(
        'layer { name: "a" exclude { stage: "deploy" } }\n'
        'layer { name: "b" exclude { } }\n'
        'layer { name: "c" include { stage: "deploy" } }\n'
        'layer { name: "d" include { phase: TEST } }\n'
        'layer { name: "e" include { min_level: 1 } }\n'
        'layer { name: "f" include { not_stage: "deploy" } }\n', caffe_pb2.NetParameter())
    kept = {phase: [l.name for l in net.layer if in_phase(l, phase)] for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST)}
    assert kept[caffe_pb2.TRAIN] == ["a", "f"]
    assert kept[caffe_pb2.TEST] == ["a", "d", "f"]
