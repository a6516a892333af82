"""``caffe-losses make-pos-weight``: label files in, a ready param_str out."""

import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from caffe_losses import cli
from caffe_losses.cli.make_pos_weight import count_targets, format_param_str, pos_weight_from_counts
from caffe_losses.losses.sigmoid.data import SIZES, SPLIT_SEEDS, make_edges, make_multilabel
from caffe_losses.nets.templates import TEMPLATE_ROOT
from caffe_losses.glue.testing import layer_net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# PyTorch's BCEWithLogitsLoss docs: 100 positives, 300 negatives -> pos_weight 3.
LABELS = np.zeros((400, 3), np.float32)
LABELS[:100, 0] = 1          # 100 / 300 -> 3
LABELS[:200, 1] = 1          # 200 / 200 -> 1
LABELS[:80, 2] = 1           # 80 / 320 -> 4


def tool(argv, capsys):
    rc = cli.main(["make-pos-weight"] + argv)
    out, err = capsys.readouterr()
    return rc, out.strip(), err


def param_str_of(line):
    m = re.fullmatch(r'param_str: "(.*)"', line)
    assert m, line
    return m.group(1)


def test_npy_text_and_hdf5_give_the_same_weights(tmp_path, capsys):
    np.save(tmp_path / "labels.npy", LABELS)
    np.savetxt(tmp_path / "labels.txt", LABELS, fmt="%g")
    np.savetxt(tmp_path / "labels.csv", LABELS, fmt="%g", delimiter=",")
    with h5py.File(tmp_path / "train.h5", "w") as f:
        f.create_dataset("label", data=LABELS)
        f.create_dataset("data", data=np.zeros((400, 2), np.float32))
    outputs = set()
    for spec in ("labels.npy", "labels.txt", "labels.csv", "train.h5:label"):
        rc, out, err = tool([str(tmp_path / spec)], capsys)
        assert rc == 0, err
        outputs.add(out)
        assert "channel 0: 100 positive, 300 negative -> pos_weight 3" in err
    assert outputs == {'param_str: "{pos_weight: [3, 1, 4]}"'}


def test_printed_param_str_loads_in_the_layer(tmp_path, capsys):
    np.save(tmp_path / "labels.npy", LABELS)
    rc, out, _ = tool([str(tmp_path / "labels.npy"), "--extra", "ignore_label: 255", "--quiet"], capsys)
    assert rc == 0
    text = param_str_of(out)
    assert yaml.safe_load(text) == {"pos_weight": [3, 1, 4], "ignore_label": 255}
    net = layer_net("caffe_losses", "WeightedSigmoidCrossEntropyLoss",
                    {"scores": (5, 3), "target": (5, 3)}, param_str=text)
    net.blobs["target"].data[...] = LABELS[:5]
    net.forward()
    assert np.isfinite(net.blobs["loss"].data[0])


def test_one_channel_prints_a_number_and_ignore_label_is_left_out(tmp_path, capsys):
    seg = np.zeros((2, 1, 4, 5), np.float32)
    seg[:, 0, 0, :] = 1              # 10 positives
    seg[:, 0, 1, :] = 255            # 10 ignored
    np.save(tmp_path / "seg.npy", seg)                       # 20 negatives
    rc, out, _ = tool([str(tmp_path / "seg.npy"), "--ignore-label", "255"], capsys)
    assert rc == 0 and out == 'param_str: "{pos_weight: 2}"'
    rc, _, err = tool([str(tmp_path / "seg.npy")], capsys)
    assert rc == 2 and "seg.npy holds 255 at index (0, 0, 1, 0); expected targets in [0, 1]" in err
    assert "make-pos-weight: make-pos-weight" not in err and "bottom" not in err


def test_errors_are_clear(tmp_path, capsys):
    rc, _, err = tool([str(tmp_path / "missing.npy")], capsys)
    assert rc == 2 and "label file not found" in err
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("label", data=LABELS)
    rc, _, err = tool([str(tmp_path / "d.h5")], capsys)
    assert rc == 2 and "name the dataset as" in err and "it holds label" in err
    rc, _, err = tool([str(tmp_path / "d.h5:labels")], capsys)
    assert rc == 2 and "no dataset 'labels'; it holds label" in err
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    rc, _, err = tool([str(tmp_path / "obj.npy")], capsys)
    assert rc == 2 and "obj.npy holds a pickled object array" in err
    no_pos = LABELS.copy()
    no_pos[:, 2] = 0
    np.save(tmp_path / "nopos.npy", no_pos)
    rc, _, err = tool([str(tmp_path / "nopos.npy")], capsys)
    assert rc == 2 and "channel(s) 2 have no positive" in err
    rc, out, _ = tool([str(tmp_path / "nopos.npy"), "--max-weight", "50", "--quiet"], capsys)
    assert rc == 0 and out == 'param_str: "{pos_weight: [3, 1, 50]}"'


def test_script_entry_point(tmp_path):
    np.save(tmp_path / "labels.npy", LABELS)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_pos_weight.py"),
                           str(tmp_path / "labels.npy"), "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'param_str: "{pos_weight: [3, 1, 4]}"'


@pytest.mark.parametrize("template, make, decimals", [
    ("sigmoid_multilabel", make_multilabel, 2),
    ("sigmoid_edges", make_edges, 2),
])
def test_template_weights_are_what_the_tool_prints(template, make, decimals, tmp_path, capsys):
    # The weights written in the templates come from the tool on their full
    # training data (the comment there says so): recompute them.
    x, y = make(SIZES["edges" if template == "sigmoid_edges" else "multilabel"][False][0],
                seed=SPLIT_SEEDS["train"])
    np.save(tmp_path / "train_labels.npy", y)
    rc, out, _ = tool([str(tmp_path / "train_labels.npy"), "--decimals", str(decimals), "--quiet"],
                      capsys)
    assert rc == 0
    printed = yaml.safe_load(param_str_of(out))["pos_weight"]
    with open(os.path.join(TEMPLATE_ROOT, template, "train_val.prototxt")) as f:
        m = re.search(r'param_str: "(\{pos_weight: [^"]*)"', f.read())
    assert m, f"{template}: no pos_weight param_str"
    assert yaml.safe_load(m.group(1))["pos_weight"] == printed


@pytest.mark.parametrize("weight, decimals, printed", [
    (10, 0, "10"), (300, 0, "300"), (100, 2, "100"), (3, 4, "3"), (0.25, 1, "0.2"), (1.5, 2, "1.5"),
    (44.0123, 2, "44.01"), (10.5, 4, "10.5"),
])
def test_integers_keep_their_zeros(weight, decimals, printed):
    # --decimals 0 printed 1 for 10 and 3 for 300: zeros of the integer part were stripped
    assert format_param_str([weight], decimals=decimals) == f'param_str: "{{pos_weight: {printed}}}"'


@pytest.mark.parametrize("argv, message", [
    (["--decimals", "-3"], r"--decimals must be in \[0, 17\]\. Received: -3"),
    (["--max-weight", "-1"], r"--max-weight must be a finite number > 0.*Received: -1"),
    (["--max-weight", "nan"], r"--max-weight must be a finite number > 0.*Received: nan"),
    (["--max-weight", "inf"], r"--max-weight must be a finite number > 0.*Received: inf"),
    (["--max-weight", "0.3", "--decimals", "0"], r"channel 0's weight 0\.3 prints as 0 with --decimals 0"),
    (["--extra", "sigma: 2"], r"--extra 'sigma: 2' makes a param_str the layer refuses: "
                              r"WeightedSigmoidCrossEntropyLoss: unknown key 'sigma'"),
])
def test_bad_options_are_refused_before_printing(argv, message, tmp_path, capsys):
    np.save(tmp_path / "labels.npy", LABELS)
    rc, out, err = tool([str(tmp_path / "labels.npy")] + argv, capsys)
    assert rc == 2 and out == "", (out, err)
    assert re.search(r"^make-pos-weight: error: " + message, err, re.M), err


def test_weight_of_ten_at_zero_decimals(tmp_path, capsys):
    t = np.zeros((11, 1), np.float32)
    t[0] = 1                                  # 1 positive, 10 negatives
    np.save(tmp_path / "t.npy", t)
    rc, out, _ = tool([str(tmp_path / "t.npy"), "--decimals", "0", "--quiet"], capsys)
    assert rc == 0 and out == 'param_str: "{pos_weight: 10}"'


def test_pos_weight_from_counts_pytorch_example():
    # PyTorch's BCEWithLogitsLoss docs: 100 positives and 300 negatives -> 3.
    labels = np.zeros((400, 2))
    labels[:100, 0] = 1
    labels[:200, 1] = 1
    pos, neg = count_targets(labels)
    assert pos.tolist() == [100, 200] and neg.tolist() == [300, 200]
    assert pos_weight_from_counts(pos, neg).tolist() == [3.0, 1.0]


def test_count_targets_per_channel_with_ignore_and_soft_targets():
    labels = np.array([[[1, 0], [255, 0.5]], [[0, 0], [1, 255]]], dtype=np.float64)  # N=2, C=2, 2
    pos, neg = count_targets(labels, ignore_label=255)
    assert pos.tolist() == [1.0, 1.5] and neg.tolist() == [3.0, 0.5]
    with pytest.raises(ValueError, match=r"channel\(s\) 1 have no positive"):
        pos_weight_from_counts([2.0, 0.0], [3.0, 5.0])
    assert pos_weight_from_counts([2.0, 0.0], [3.0, 5.0], max_weight=10).tolist() == [1.5, 10.0]
    assert pos_weight_from_counts([1.0], [50.0], max_weight=10).tolist() == [10.0]
