"""The Dice template's data and demo recipe: the metric by hand, the data's small classes, the baseline net."""

import os

import numpy as np
import pytest
from caffe.proto import caffe_pb2

from caffe_losses.losses.dice import data, experiment
from caffe_losses.nets.prototxt import read_net_param
from caffe_losses.nets.templates import template_root


def test_class_dice_by_hand():
    label = np.array([0, 0, 1, 1, 2, 255, 3])
    pred = np.array([0, 1, 1, 1, 3, 2, 0])
    dice = experiment.class_dice(pred, label)
    # class 0: pred {0, 6}, label {0, 1}: 2*1/4; class 1: pred {1,2,3}, label {2,3}: 2*2/5;
    # class 2: pred {}, label {4} (the ignored pixel 5 left out): 0; class 3: pred {4}, label {6}: 0
    np.testing.assert_allclose(dice, [0.5, 0.8, 0.0, 0.0])
    assert experiment.class_dice(np.zeros(3, int), np.zeros(3, int))[1] == 1.0   # absent from both


def test_data_is_deterministic_with_two_small_classes():
    x, y = data.segmentation_data(64, seed=3)
    x2, y2 = data.segmentation_data(64, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == y.shape == (64, 1, 16, 16) and x.dtype == y.dtype == np.float32
    assert (y[:, :, 0] == data.IGNORE_LABEL).all() and (y[:, :, :, -1] == data.IGNORE_LABEL).all()
    kept = y[y != data.IGNORE_LABEL].astype(int)
    share = np.bincount(kept, minlength=data.NUM_CLASSES) / kept.size
    assert share[0] > 0.5 and 0.1 < share[1] < 0.3
    for c in data.SMALL_CLASSES:
        assert 0.01 < share[c] < 0.08
        assert all((y[i] == c).any() for i in range(len(y)))     # every image has both small classes


def test_baseline_net_is_native_softmax_with_the_same_ignore_label(tmp_path):
    path = tmp_path / "train_val.prototxt"
    with open(os.path.join(template_root(), experiment.TEMPLATE, "train_val.prototxt")) as f:
        path.write_text(f.read())
    experiment.baseline_net(str(path))
    net = read_net_param(str(path))
    (loss,) = [l for l in net.layer if l.name == "loss"]
    assert loss.type == "SoftmaxWithLoss" and not loss.HasField("python_param")
    assert loss.loss_param.ignore_label == data.IGNORE_LABEL
    assert loss.loss_param.normalization == caffe_pb2.LossParameter.VALID


@pytest.mark.parametrize("small", [True])
def test_prepare_counts(tmp_path, small):
    out = data.prepare_segmentation(str(tmp_path), small=small)
    assert out["n_train"] == 32 and out["n_test"] == 16
    assert out["counts"].sum() == 32 * 14 * 14
