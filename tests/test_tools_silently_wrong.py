"""Issue 19, "silently wrong": net-surgery's float32 underflow, make-pos-weight's printed line."""

import os
import subprocess
import sys
import textwrap

import numpy as np
from google.protobuf import text_format

from caffe.proto import caffe_pb2
from caffe_losses.losses.sigmoid.layer import WeightedSigmoidCrossEntropyLoss
from caffe_losses.glue.params import parse_params

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")

NET = textwrap.dedent("""\
    name: "tiny"
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }
    layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
            param { lr_mult: 0 } inner_product_param { num_output: 1 bias_term: false } }
    """)


def cli(*argv, cwd):
    return subprocess.run([CLI, *map(str, argv)], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_net_surgery_refuses_values_float32_turns_into_zero(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "keep.caffemodel").write_bytes(b"the user's weights")
    for values, shown in (("1e-50,2e-50,3e-50", "1e-50 (value 0)"), ("1,1e-46,2", "1e-46 (value 1)")):
        for out in ("new.caffemodel", "keep.caffemodel"):
            proc = cli("net-surgery", "--model", "net.prototxt", "--layer", "fc", "--values", values,
                       "--output", out, cwd=tmp_path)
            assert proc.returncode == 2, proc.stderr
            assert f"--values: {shown} would be 0 in float32" in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["keep.caffemodel", "net.prototxt"]
    assert (tmp_path / "keep.caffemodel").read_bytes() == b"the user's weights"
    # the smallest float32 (a subnormal) and an explicit 0 are kept as given
    proc = cli("net-surgery", "--model", "net.prototxt", "--layer", "fc", "--values", "0,1.5e-45,1",
               "--output", "new.caffemodel", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    model = caffe_pb2.NetParameter()
    model.ParseFromString((tmp_path / "new.caffemodel").read_bytes())
    kernel = [layer for layer in model.layer if layer.name == "fc"][0].blobs[0].data
    assert list(kernel) == [0.0, float(np.float32(1.5e-45)), 1.0] and kernel[1] > 0


def parse_printed_line(line):
    """The printed line read as Caffe reads a layer's python_param: the param_str value."""
    layer = caffe_pb2.LayerParameter()
    text_format.Parse(f"python_param {{ {line} }}", layer)
    return layer.python_param.param_str


def test_make_pos_weight_prints_a_line_that_parses_as_prototxt(tmp_path):
    np.save(tmp_path / "labels.npy", np.array([[1, 0], [0, 1], [0, 1], [0, 0]], dtype=np.float64))
    for extra, key, value in (('normalization: "NONE"', "normalization", "NONE"),
                              ("normalization: 'VALID'", "normalization", "VALID"),
                              ('{ignore_label: 255}', "ignore_label", 255)):
        proc = cli("make-pos-weight", "labels.npy", "--extra", extra, "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        param_str = parse_printed_line(proc.stdout.strip())
        params = parse_params("WeightedSigmoidCrossEntropyLoss", WeightedSigmoidCrossEntropyLoss.PARAMS,
                              param_str)
        assert params[key] == value and list(params["pos_weight"]) == [3.0, 1.0], (extra, param_str)
    proc = cli("make-pos-weight", "labels.npy", "--extra", 'normalization: "NONE"', "--quiet", cwd=tmp_path)
    assert proc.stdout == 'param_str: "{pos_weight: [3, 1], normalization: \\"NONE\\"}"\n'


def test_make_pos_weight_refuses_a_weight_beyond_float32_and_caps_it_when_asked(tmp_path):
    # a soft positive of 1e-40: 4 negatives / 1e-40 = 4e40, which the layer refuses
    np.save(tmp_path / "soft.npy", np.array([[1e-40, 1], [0, 0], [0, 1], [0, 0]]))
    proc = cli("make-pos-weight", "soft.npy", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert ("channel 0's pos_weight would be 4 negatives / 1e-40 positives = 4e+40, beyond float32"
            in proc.stderr and "--max-weight" in proc.stderr), proc.stderr
    proc = cli("make-pos-weight", "soft.npy", "--max-weight", "1000", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    param_str = parse_printed_line(proc.stdout.strip())
    params = parse_params("WeightedSigmoidCrossEntropyLoss", WeightedSigmoidCrossEntropyLoss.PARAMS, param_str)
    assert list(params["pos_weight"]) == [1000.0, 1.0]
