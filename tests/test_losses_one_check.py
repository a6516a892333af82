"""One check, one reader: the layers and the tools call the cores' checks and the one label reader.

Each test feeds the same bad input to a core and to its layer in a real net
(or to both tools' readers) and asserts the same message, so that the two
cannot drift apart again.
"""

import h5py
import numpy as np
import pytest

from caffe_losses import cli
from caffe_losses.files import hmatrix
from caffe_losses.losses import common
from caffe_losses.losses.center import core as center_core
from caffe_losses.losses.infogain import core as ig
from caffe_losses.losses.regression import core as reg
from caffe_losses.losses.sigmoid import core as sg
from caffe_losses.glue.testing import layer_net


def message(call, *args, **kw):
    with pytest.raises(ValueError) as info:
        call(*args, **kw)
    return str(info.value)


def same(core, layer):
    """The layer's message is the core's, plus where the layer sits in the net (when Caffe says)."""
    assert layer in (core, core + " [layer 'under_test']")


# ---------------------------------------------------------------------------
# Shape checks: the layer's reshape says what the core says
# ---------------------------------------------------------------------------

def test_infogain_label_count_same_message_in_core_and_layer(tmp_path):
    h = str(tmp_path / "H.npy")
    np.save(h, np.eye(4))
    core = message(ig.softmax_infogain_forward, np.zeros((2, 4, 3, 3)), np.zeros((2, 6)), np.eye(4))
    layer = message(layer_net, "caffe_losses", "SoftmaxWithInfogainLoss",
                    {"x": (2, 4, 3, 3), "y": (2, 6)}, param_str="{source: '%s'}" % h)
    same(core, layer)
    assert "bottom 'label' must hold one label per position of 'scores' (2, 4, 3, 3)" in core


def test_infogain_axis_same_message_in_core_and_layer(tmp_path):
    h = str(tmp_path / "H.npy")
    np.save(h, np.eye(4))
    core = message(ig.softmax_infogain_forward, np.zeros((3, 4)), np.zeros(3), np.eye(4), axis=2)
    layer = message(layer_net, "caffe_losses", "SoftmaxWithInfogainLoss", {"x": (3, 4), "y": (3,)},
                    param_str="{source: '%s', axis: 2}" % h)
    same(core, layer)
    assert core == ("SoftmaxWithInfogainLoss: 'axis' must be in [-2, 2) for bottom 'scores' "
                             "of shape (3, 4). Received: axis=2")


def test_infogain_check_shapes_h():
    with pytest.raises(ValueError, match=r"^Own: bottom 'H' must be a 4 x 4 matrix"):
        ig.check_shapes("Own", (3, 4), (3,), h_bottom=(3, 3))
    with pytest.raises(ValueError, match=r"^Own: 'source' file 'H' holds a 5 x 5 H, but bottom "
                                         r"'scores' \(3, 4\) has 4 classes on axis 1: H must be 4 x 4"):
        ig.check_shapes("Own", (3, 4), (3,), h_source=("'source' file 'H'", 5))
    assert ig.check_shapes("Own", (2, 4, 3, 3), (2, 1, 3, 3), h_bottom=(1, 1, 4, 4)) == (2, 4, 9)


def test_sigmoid_weight_count_same_message_in_core_and_layer():
    core = message(sg.weighted_sigmoid_cross_entropy_forward, np.zeros((4, 3)), np.zeros((4, 3)),
                   pos_weight=[1.0, 2.0], owner="WeightedSigmoidCrossEntropyLoss")
    layer = message(layer_net, "caffe_losses", "WeightedSigmoidCrossEntropyLoss",
                    {"x": (4, 3), "t": (4, 3)}, param_str="{pos_weight: [1, 2]}")
    same(core, layer)
    assert "'pos_weight' has 2 weight(s) but bottom 'scores' (4, 3) has 3 channel(s)" in core


@pytest.mark.parametrize("layer, core_call, shapes", [
    ("CenterLoss", lambda: center_core.center_loss_forward(np.zeros((6, 2)), np.zeros(5), np.zeros((3, 2)),
                                                           owner="CenterLoss"),
     {"x": (6, 2), "y": (5,)}),
    ("MeanVarianceLoss", lambda: reg.mean_variance_forward(np.zeros((6, 4)), np.zeros(5),
                                                           owner="MeanVarianceLoss"),
     {"x": (6, 4), "y": (5,)}),
])
def test_label_count_same_message_in_core_and_layer(layer, core_call, shapes):
    param_str = "{num_classes: 3}" if layer == "CenterLoss" else ""
    core = message(core_call)
    got = message(layer_net, "caffe_losses", layer, shapes, param_str=param_str)
    same(core, got)
    assert "bottom 'label' must hold one label per sample of '" in core and "expected 6 values, got 5" in core


# ---------------------------------------------------------------------------
# One target check, one label reader
# ---------------------------------------------------------------------------

def test_make_pos_weight_uses_the_layers_target_check(tmp_path, capsys):
    bad = np.array([[0, 1], [0.5, 2]], np.float32)
    np.save(tmp_path / "t.npy", bad)
    rc = cli.main(["make-pos-weight", str(tmp_path / "t.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "t.npy holds 2 at index (1, 1); expected targets in [0, 1]" in err
    # the same value and index as the layer's own check finds
    layer = message(common.check_targets, "L", bad)
    assert "holds 2.0 at index (1, 1)" in layer


def test_read_labels_table_keeps_rows_and_flat_reads_list_files(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("# targets\n1, 0, 1\n0 0 1\n")
    assert hmatrix.read_labels(text, table=True).tolist() == [[1, 0, 1], [0, 0, 1]]
    assert hmatrix.read_labels(text).tolist() == [1, 0, 1, 0, 0, 1]
    ragged = tmp_path / "r.txt"
    ragged.write_text("1 0\n1\n")
    with pytest.raises(ValueError, match=r"line 2: 1 value\(s\), but the first sample has 2"):
        hmatrix.read_labels(ragged, table=True)
    listing = tmp_path / "list.txt"
    listing.write_text("a.jpg 3\nb.jpg 1\n")
    assert hmatrix.read_labels(listing).tolist() == [3, 1]
    with pytest.raises(ValueError, match=r"line 1: expected numbers, one sample per line"):
        hmatrix.read_labels(listing, table=True)


def test_read_labels_hdf5_names_datasets_for_both_tools(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["label"] = np.zeros((3, 2))
        f["other"] = np.ones(3)
    assert hmatrix.read_labels(path, table=True).shape == (3, 2)
    assert hmatrix.read_labels(path).shape == (6,)
    with pytest.raises(ValueError, match=r"no dataset 'x'; it holds label, other"):
        hmatrix.read_labels(path, dataset="x")
    with pytest.raises(ValueError, match=r"name the dataset as .*d\.h5:DATASET; it holds label, other"):
        hmatrix.read_labels(path, dataset=None, table=True)
