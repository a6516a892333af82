"""`caffe-losses check` on the nets users bring: ignored blocks, forks' keys, unnamed layers,
a loss weight carried by a later layer, data sources, CenterLoss as caffe-face writes it."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import caffe

from caffe_losses.files.hmatrix import save_h
from caffe_losses.glue.base import LossWeightWarning
from caffe_losses.nets.lint import lint_file
from caffe_losses.nets.preflight import PreflightError, check_data_sources
from caffe_losses.nets.prototxt import read_net_param

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")

HEAD = """layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 4 dim: 8 } shape { dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 1 } } }
"""


def findings(tmp_path, body, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(HEAD + body)
    return lint_file(str(path))


def rules(found):
    return [(f.severity, f.rule) for _, f in found]


def test_blocks_caffe_ignores_on_python_layers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_h("H.binaryproto", np.eye(5))
    ours = ('layer { name: "loss" type: "Python" bottom: "fc" bottom: "label" top: "loss" '
            'python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" '
            'param_str: "{source: H.binaryproto}" } loss_param { normalization: NONE } loss_weight: 1 }\n')
    found = findings(tmp_path, ours)
    assert rules(found) == [("error", "python-ignored-param")]
    assert ("Caffe does not pass loss_param to Python layers" in found[0][1].message
            and "Put normalization in param_str, or run caffe-losses migrate" in found[0][1].message)
    found = findings(tmp_path, ours.replace("loss_param { normalization: NONE }",
                                            'infogain_loss_param { source: "H.binaryproto" }'))
    assert rules(found) == [("error", "python-ignored-param")] and "Put source in param_str" in str(found[0][1])
    foreign = ('layer { name: "loss" type: "Python" bottom: "fc" bottom: "label" top: "loss" '
               'python_param { module: "mylosses" layer: "MyLoss" } loss_param { ignore_label: 3 } loss_weight: 1 }\n')
    assert rules(findings(tmp_path, foreign)) == [("warning", "python-ignored-param")]


@pytest.mark.parametrize("after", [
    'layer { name: "half" type: "Power" bottom: "raw_loss" top: "loss" power_param { scale: 0.5 } loss_weight: 1 }',
    'layer { name: "s" type: "Scale" bottom: "raw_loss" top: "loss" param { lr_mult: 0 } '
    'scale_param { axis: 0 num_axes: 0 filler { value: 0.5 } } loss_weight: 1 }',
])
def test_loss_weight_on_a_later_layer(after, tmp_path, monkeypatch):
    # the loss trains through the Power / Scale: no ERROR from check, no runtime warning
    monkeypatch.chdir(tmp_path)
    loss = ('layer { name: "l1" type: "Python" bottom: "fc" bottom: "fc" top: "raw_loss" '
            'python_param { module: "caffe_losses" layer: "SmoothL1Loss" } }\n')
    assert rules(findings(tmp_path, loss + after + "\n")) == []
    assert rules(findings(tmp_path, loss)) == [("error", "python-loss-weight")]
    for body, warns in ((loss + after + "\n", False), (loss, True)):
        net = caffe.Net(str(tmp_path / _write(tmp_path, "w.prototxt", HEAD + body)), caffe.TRAIN)
        net.blobs["data"].data[...] = np.random.RandomState(0).randn(4, 8)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                net.forward()
                net.backward()
        hits = [w for w in caught if issubclass(w.category, LossWeightWarning)]
        assert len(hits) == (1 if warns else 0), [str(w.message) for w in hits]
        if warns:
            assert "[layer 'l1']" in str(hits[0].message)


def _write(folder, name, text):
    (folder / name).write_text(text)
    return name


def test_unnamed_layers_are_named_by_their_top(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = "".join(
        f'layer {{ type: "Python" bottom: "fc" bottom: "fc" top: "dsn{i}_loss" '
        f'python_param {{ module: "caffe_losses" layer: "WeightedSigmoidCrossEntropyLoss" }} }}\n'
        for i in range(1, 4))
    found = findings(tmp_path, body)
    assert [str(f).split(":")[0] for _, f in found] == [
        f"ERROR [python-loss-weight] unnamed layer (top 'dsn{i}_loss')" for i in range(1, 4)]
    assert "layer ''" not in "".join(str(f) for _, f in found)


def test_fork_keys_in_param_str_point_to_ours(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = ('layer { name: "center" type: "Python" bottom: "fc" bottom: "label" top: "c" '
            'python_param { module: "caffe_losses" layer: "CenterLoss" param_str: "{num_output: 5}" } '
            'param { lr_mult: 0 decay_mult: 0 } loss_weight: 0.01 }\n')
    found = findings(tmp_path, body)
    assert rules(found) == [("error", "param-str")]
    assert "'num_output' is caffe-face's name: here it is 'num_classes'" in found[0][1].message


CENTER = ('layer {{ name: "center" type: "Python" bottom: "fc" bottom: "label" top: "c" '
          'python_param {{ module: "caffe_losses" layer: "CenterLoss" param_str: "{{num_classes: 5}}" }} '
          '{param} loss_weight: 0.01 }}\n')


@pytest.mark.parametrize("param, weight_decay, error", [
    ("param { lr_mult: 1 decay_mult: 0 }", None, False),   # the solver's step there is zero
    ("param { lr_mult: 1 decay_mult: 2 }", None, True),    # weight decay shrinks the centers
    ("", None, True),                                       # defaults: lr_mult 1, decay_mult 1
    ("param { lr_mult: 1 decay_mult: 2 }", 0, False),       # the solver has no weight decay
    ("param { lr_mult: 1 decay_mult: 2 }", 0.0005, True),
    ("param { lr_mult: 0 decay_mult: 1 }", None, False),
])
def test_center_loss_direct_mode_and_what_the_solver_moves(param, weight_decay, error, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(HEAD + CENTER.format(param=param))
    path = "net.prototxt"
    if weight_decay is not None:
        (tmp_path / "solver.prototxt").write_text(f'net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\n'
                                                  f'weight_decay: {weight_decay}\n')
        path = "solver.prototxt"
    assert rules(lint_file(path)) == ([("error", "center-update")] if error else [])
    if not error and weight_decay is None:
        # and the solver leaves the centers where the layer put them: no CenterUpdateWarning
        (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.9\n'
                                                  'weight_decay: 0.0005\n')
        solver = caffe.SGDSolver("solver.prototxt")
        solver.net.blobs["data"].data[...] = np.random.RandomState(1).randn(4, 8)
        solver.net.blobs["label"].data[...] = [0, 1, 2, 1]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            solver.step(3)
        assert np.abs(solver.net.params["center"][0].data).max() > 0   # the layer moved them


def test_data_sources_are_reported_as_train_reports_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = ('layer { name: "h5" type: "HDF5Data" top: "x" top: "y" include { phase: TRAIN } '
            'hdf5_data_param { source: "data/train.txt" batch_size: 4 } }\n')
    found = findings(tmp_path, body)
    assert rules(found) == [("error", "data-source")]
    with pytest.raises(PreflightError) as err:
        check_data_sources(read_net_param("net.prototxt"), caffe.TRAIN)
    assert found[0][1].message == str(err.value)
    assert str(tmp_path) in found[0][1].message           # resolved against the working directory
    os.makedirs("data")
    (tmp_path / "data" / "train.txt").write_text("data/missing.h5\n")
    found = findings(tmp_path, body)
    assert rules(found) == [("error", "data-source")] and "data/missing.h5" in found[0][1].message


def test_h_file_messages_name_the_file_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_h("H7.binaryproto", np.eye(7))
    body = ('layer { name: "loss" type: "InfogainLoss" bottom: "fc" bottom: "label" top: "loss" '
            'infogain_loss_param { source: "H7.binaryproto" } }\n')
    found = findings(tmp_path, body)
    assert rules(found) == [("error", "h-file")]
    assert os.path.join(str(tmp_path), "H7.binaryproto") in found[0][1].message


def test_cli_on_a_fork_net(tmp_path):
    (tmp_path / "frcnn.prototxt").write_text(
        HEAD + 'layer { name: "loss_bbox" type: "SmoothL1Loss" bottom: "fc" bottom: "fc" top: "l" '
               'smooth_l1_loss_param { sigma: 3 } }\n')
    proc = subprocess.run([CLI, "check", "frcnn.prototxt"], cwd=tmp_path, capture_output=True, text=True)
    # the field and the layer type are named, the rest of the net checked (exit status 1: errors)
    assert proc.returncode == 1, proc.stderr
    assert "'smooth_l1_loss_param' is not in BVLC Caffe's caffe.proto (it comes from fast-rcnn" in proc.stdout
    assert "caffe-losses migrate frcnn.prototxt -o frcnn_migrated.prototxt" in proc.stdout
    assert "[layer-type] layer 'loss_bbox': type 'SmoothL1Loss' is not a layer type" in proc.stdout
