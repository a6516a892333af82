"""The net-surgery tool, and the seed's recipe (2) run verbatim after it."""

import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
from caffe.proto import caffe_pb2
from caffe_losses import cli
from caffe_losses.losses.regression.data import write_age
from caffe_losses.nets.templates import TEMPLATE_ROOT
from caffe_losses.nets.surgery import SurgeryError, surgery
from caffe_losses.cli.net_surgery import parse_values

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Recipe (2) of the answer in seed 003, copied character for character (the
# layers after "首先，定义网络" and the fc100/prob layers of the question).
SEED_RECIPE_2 = """
layer {
bottom: "pool5"
top: "fc100"
name: "fc100"
type: "InnerProduct"
inner_product_param {
num_output: 100
}
}
layer {
bottom: "fc100"
top: "prob"
name: "prob"
type: "Softmax"
}
layer {
bottom: "prob"
top: "pred_age"
name: "pred_age"
type: "Convolution"
param { lr_mult: 0 } # fixed layer.
convolution_param {
num_output: 1
bias_term: false
}
}
layer {
bottom: "pred_age"
bottom: "true_age"
top: "loss"
type: "EuclideanLoss" # same comment about type of loss as before
name: "loss"
}
"""


def read_layers(path_or_text, is_text=False):
    net = caffe_pb2.NetParameter()
    text = path_or_text if is_text else open(path_or_text).read()
    text_format.Merge(text, net)
    return {layer.name: layer for layer in net.layer}


@pytest.fixture(scope="module")
def surgery_template(tmp_path_factory):
    """A copy of age_softmax_surgery with data written and the tool run as a script."""
    folder = tmp_path_factory.mktemp("surgery") / "age_softmax_surgery"
    shutil.copytree(os.path.join(TEMPLATE_ROOT, "age_softmax_surgery"), folder)
    write_age(folder, small=True)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "net_surgery.py"), "--model", "train_val.prototxt",
         "--layer", "pred_age", "--values", "0:100", "--output", "init_weights.caffemodel"],
        cwd=folder, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, GLOG_minloglevel="2"))
    assert proc.returncode == 0, proc.stderr
    return folder, proc


def test_template_holds_the_seed_layers_verbatim():
    ours = read_layers(os.path.join(TEMPLATE_ROOT, "age_softmax_surgery", "train_val.prototxt"))
    seed = read_layers(SEED_RECIPE_2, is_text=True)
    assert set(seed) == {"fc100", "prob", "pred_age", "loss"}
    for name, layer in seed.items():
        assert ours[name] == layer, f"layer {name} differs from the seed's"
    # and the command of the answer's surgery is written in the template's comment
    text = open(os.path.join(TEMPLATE_ROOT, "age_softmax_surgery", "train_val.prototxt")).read()
    assert "caffe-losses net-surgery --model train_val.prototxt --layer pred_age" in text
    assert "--values 0:100 --output init_weights.caffemodel" in text


def test_script_prints_what_it_changed(surgery_template):
    folder, proc = surgery_template
    assert "pred_age (Convolution): kernel (1, 100) set to 0, 1, 2, ..., 98, 99" in proc.stdout
    assert "was all zeros" in proc.stdout
    assert "wrote init_weights.caffemodel" in proc.stdout and "verified by reloading" in proc.stdout
    assert "warning" not in proc.stderr   # lr_mult is 0 in the seed's layer


def test_seed_recipe_runs_verbatim_after_surgery(surgery_template, monkeypatch):
    folder, _ = surgery_template
    monkeypatch.chdir(folder)
    net = caffe.Net("train_val.prototxt", "init_weights.caffemodel", caffe.TEST)
    np.testing.assert_array_equal(net.params["pred_age"][0].data.ravel(), np.arange(100))
    net.forward()
    prob = net.blobs["prob"].data.astype(np.float64)
    expected = prob @ np.arange(100.0)
    pred = net.blobs["pred_age"].data.reshape(-1)
    np.testing.assert_allclose(pred, expected, rtol=1e-5, atol=1e-4)
    assert np.all((pred >= 0) & (pred <= 99))
    assert float(net.blobs["loss"].data) == pytest.approx(
        np.sum((pred - net.blobs["true_age"].data.ravel()) ** 2) / (2 * len(pred)), rel=1e-5)
    # The expectation over the bins is also what the Expectation layer computes.
    from caffe_losses.losses.regression.core import expectation_forward
    e, _ = expectation_forward(net.blobs["fc100"].data.astype(np.float64))
    np.testing.assert_allclose(pred, e.ravel(), rtol=1e-4, atol=1e-3)


def test_seed_recipe_trains_and_the_kernel_stays_fixed(surgery_template, monkeypatch):
    folder, _ = surgery_template
    monkeypatch.chdir(folder)
    solver = caffe.get_solver("solver.prototxt")
    solver.net.copy_from("init_weights.caffemodel")
    fc_before = solver.net.params["fc100"][0].data.copy()
    solver.step(5)
    np.testing.assert_array_equal(solver.net.params["pred_age"][0].data.ravel(), np.arange(100))
    assert not np.array_equal(solver.net.params["fc100"][0].data, fc_before)   # the rest trains


def test_without_surgery_the_seed_net_predicts_zero(surgery_template, monkeypatch):
    folder, _ = surgery_template
    monkeypatch.chdir(folder)
    net = caffe.Net("train_val.prototxt", caffe.TEST)
    net.forward()
    assert np.all(net.blobs["pred_age"].data == 0)


def test_tool_matches_the_seed_python_snippet(surgery_template, monkeypatch):
    folder, _ = surgery_template
    monkeypatch.chdir(folder)
    # the answer's snippet, as written there
    net = caffe.Net('train_val.prototxt', caffe.TRAIN)
    li = list(net._layer_names).index('pred_age')
    net.layers[li].blobs[0].data[...] = np.arange(100, dtype=np.float32)
    net.save('snippet.caffemodel')
    a = read_caffemodel_layer("snippet.caffemodel", "pred_age")
    b = read_caffemodel_layer("init_weights.caffemodel", "pred_age")
    assert a.blobs[0].shape == b.blobs[0].shape
    np.testing.assert_array_equal(np.array(a.blobs[0].data), np.array(b.blobs[0].data))


def read_caffemodel_layer(path, name):
    net = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        net.ParseFromString(f.read())
    return next(layer for layer in net.layer if layer.name == name)


# ---------------------------------------------------------------------------
# The tool on small nets
# ---------------------------------------------------------------------------

SMALL_NET = """
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 5 } } }
layer { name: "hidden" type: "InnerProduct" bottom: "x" top: "hidden"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "prob" type: "Softmax" bottom: "hidden" top: "prob" }
layer { name: "pred" type: "InnerProduct" bottom: "prob" top: "pred"
        PARAM inner_product_param { num_output: 1 BIAS } }
"""


def small_net(tmp_path, param="param { lr_mult: 0 }", bias="bias_term: false", name="net.prototxt"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(SMALL_NET).replace("PARAM", param).replace("BIAS", bias))
    return str(path)


def run_cli(argv, capsys):
    status = cli.main(["net-surgery"] + argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("text, expected", [
    ("0:100", np.arange(100)),
    ("0:10:2", [0, 2, 4, 6, 8]),
    ("5:0:-1", [5, 4, 3, 2, 1]),
    ("0.5:2:0.5", [0.5, 1.0, 1.5]),
    ("1,2.5,-3", [1, 2.5, -3]),
])
def test_parse_values(text, expected):
    np.testing.assert_allclose(parse_values(text), expected)


@pytest.mark.parametrize("text, message", [
    ("abc", r"--values must be START:STOP\[:STEP\]"),
    ("1:", r"--values must be START:STOP\[:STEP\]"),
    ("5:5", r"--values gives no numbers"),
    ("0:10:0", r"STEP must not be 0"),
    ("1,nan", r"--values must be finite"),
])
def test_parse_values_errors(text, message):
    with pytest.raises(SurgeryError, match=message):
        parse_values(text)


def test_inner_product_layer_and_cli(tmp_path, capsys):
    model = small_net(tmp_path)
    out = str(tmp_path / "w.caffemodel")
    status, stdout, stderr = run_cli(["--model", model, "--layer", "pred", "--values", "10:60:10",
                                      "--output", out], capsys)
    assert status == 0, stderr
    assert "pred (InnerProduct): kernel (1, 5) set to 10, 20, 30, 40, 50" in stdout
    net = caffe.Net(model, out, caffe.TEST)
    np.testing.assert_array_equal(net.params["pred"][0].data, [[10, 20, 30, 40, 50]])
    net.blobs["x"].data[...] = np.random.RandomState(0).randn(2, 5)
    net.forward()
    np.testing.assert_allclose(net.blobs["pred"].data.ravel(),
                               net.blobs["prob"].data @ np.array([10, 20, 30, 40, 50.0]), rtol=1e-5)


def test_kernel_size_must_equal_number_of_values(tmp_path, capsys):
    model = small_net(tmp_path)
    status, _, stderr = run_cli(["--model", model, "--layer", "pred", "--values", "0:100",
                                 "--output", str(tmp_path / "w.caffemodel")], capsys)
    assert status == 2
    assert "layer 'pred' (InnerProduct) has a kernel of shape (1, 5), 5 weights, but --values " \
           "gives 100 numbers" in stderr
    assert not (tmp_path / "w.caffemodel").exists()


def test_warns_when_lr_mult_is_not_zero_and_on_bias(tmp_path, capsys):
    model = small_net(tmp_path, param="", bias="bias_term: true")
    status, stdout, stderr = run_cli(["--model", model, "--layer", "pred", "--values", "0:5",
                                      "--output", str(tmp_path / "w.caffemodel")], capsys)
    assert status == 0
    assert "warning: layer 'pred' has lr_mult 1 on its kernel: the kernel would drift" in stderr
    assert "param { lr_mult: 0 }" in stderr
    assert "has a bias term" in stderr and "lr_mult 1 on its bias" in stderr
    model = small_net(tmp_path, param="param { lr_mult: 0.1 }", name="net2.prototxt")
    surgery_result = surgery(model, "pred", parse_values("0:5"), str(tmp_path / "w2.caffemodel"),
                             out=open(os.devnull, "w"), err=open(os.devnull, "w"))
    assert any("lr_mult 0.1" in w for w in surgery_result["warnings"])


@pytest.mark.parametrize("layer, message", [
    ("nope", r"no layer named 'nope' in the model\. Convolution/InnerProduct layers: "
             r"hidden \(InnerProduct\), pred \(InnerProduct\)"),
    ("prob", r"layer 'prob' is a Softmax layer; expected one of Convolution, InnerProduct"),
])
def test_bad_layer(tmp_path, capsys, layer, message):
    model = small_net(tmp_path)
    status, _, stderr = run_cli(["--model", model, "--layer", layer, "--values", "0:5",
                                 "--output", str(tmp_path / "w.caffemodel")], capsys)
    assert status == 2
    assert re.search(message, stderr), stderr


def test_missing_files_are_errors_not_aborts(tmp_path, capsys):
    status, _, stderr = run_cli(["--model", str(tmp_path / "none.prototxt"), "--layer", "pred",
                                 "--values", "0:5", "--output", "w.caffemodel"], capsys)
    assert status == 2 and "--model: net file not found" in stderr
    # a data layer whose source is missing would make Caffe abort the process
    model = tmp_path / "data.prototxt"
    model.write_text(textwrap.dedent("""
        layer { name: "data" type: "HDF5Data" top: "data" top: "true_age"
                hdf5_data_param { source: "data/train.txt" batch_size: 4 } }
        layer { name: "pred" type: "InnerProduct" bottom: "data" top: "pred"
                param { lr_mult: 0 } inner_product_param { num_output: 1 bias_term: false } }
    """))
    status, _, stderr = run_cli(["--model", str(model), "--layer", "pred", "--values", "0:5",
                                 "--output", str(tmp_path / "w.caffemodel")], capsys)
    assert status == 2
    assert "data layer 'data' (HDF5Data) reads 'data/train.txt', which does not exist" in stderr
    status, _, stderr = run_cli(["--model", small_net(tmp_path), "--layer", "pred", "--values", "0:5",
                                 "--output", str(tmp_path / "w.caffemodel"),
                                 "--weights", str(tmp_path / "none.caffemodel")], capsys)
    assert status == 2 and "--weights: file not found" in stderr
    bad = tmp_path / "garbage.prototxt"
    bad.write_text("layer { name: \n")
    status, _, stderr = run_cli(["--model", str(bad), "--layer", "pred", "--values", "0:5",
                                 "--output", "w.caffemodel"], capsys)
    assert status == 2 and "not a valid net prototxt" in stderr


def test_weights_are_copied_first_and_checked(tmp_path, capsys):
    model = small_net(tmp_path)
    net = caffe.Net(model, caffe.TEST)
    net.params["hidden"][0].data[...] = 7.0
    net.params["pred"][0].data[...] = -1.0
    net.save(str(tmp_path / "pretrained.caffemodel"))
    out = str(tmp_path / "w.caffemodel")
    status, stdout, stderr = run_cli(["--model", model, "--layer", "pred", "--values", "0:5",
                                      "--output", out, "--weights",
                                      str(tmp_path / "pretrained.caffemodel")], capsys)
    assert status == 0, stderr
    assert "was -1, -1, -1, -1, -1" in stdout and "copied from" in stdout
    net = caffe.Net(model, out, caffe.TEST)
    assert np.all(net.params["hidden"][0].data == 7.0)
    np.testing.assert_array_equal(net.params["pred"][0].data.ravel(), np.arange(5))
    # a pretrained file whose shapes do not fit: a clear error, not Caffe's abort
    other = tmp_path / "other.prototxt"
    other.write_text(textwrap.dedent(SMALL_NET).replace("PARAM", "").replace("BIAS", "")
                     .replace("num_output: 5", "num_output: 3"))
    bad = caffe.Net(str(other), caffe.TEST)
    bad.save(str(tmp_path / "other.caffemodel"))
    status, _, stderr = run_cli(["--model", model, "--layer", "pred", "--values", "0:5",
                                 "--output", out, "--weights", str(tmp_path / "other.caffemodel")],
                                capsys)
    assert status == 2
    assert "--weights: layer 'hidden' blob 0 has shape (3, 5)" in stderr and "(5, 5) in the model" in stderr


def test_weights_with_a_parameterless_layer_of_the_same_name_are_an_error(tmp_path, capsys):
    # e.g. a caffemodel of the seed net (pred_age = Convolution) loaded into the
    # Expectation net (pred_age = Python layer without blobs): Caffe would abort.
    model = small_net(tmp_path)
    donor = tmp_path / "donor.prototxt"
    donor.write_text(textwrap.dedent(SMALL_NET).replace("PARAM", "").replace("BIAS", "")
                     .replace('name: "prob" type: "Softmax"', 'name: "prob_" type: "Softmax"')
                     .replace('name: "hidden"', 'name: "prob"'))
    caffe.Net(str(donor), caffe.TEST).save(str(tmp_path / "donor.caffemodel"))
    status, _, stderr = run_cli(["--model", model, "--layer", "pred", "--values", "0:5",
                                 "--output", str(tmp_path / "w.caffemodel"),
                                 "--weights", str(tmp_path / "donor.caffemodel")], capsys)
    assert status == 2
    assert "--weights: layer 'prob' has 2 blob(s)" in stderr and "but 0 in the model" in stderr
