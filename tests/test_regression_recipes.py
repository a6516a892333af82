"""The embedded age data and the age templates' wiring."""

import os
import shutil

import h5py
import numpy as np
import pytest

import caffe
from caffe_losses.losses.regression import data as age_data
from caffe_losses.nets.templates import TEMPLATE_ROOT, list_templates, load_template

AGE_TEMPLATES = ("age_sigmoid_smoothl1", "age_softmax_surgery", "age_expectation", "age_mean_variance")


def test_age_data_is_deterministic_and_in_range(tmp_path):
    x1, y1 = age_data.load_age("train", n=300)
    x2, y2 = age_data.load_age("train", n=300)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    xt, yt = age_data.load_age("test", n=300)
    assert not np.array_equal(x1, xt)                      # the splits differ
    assert x1.shape == (300, 1, 16, 16) and y1.shape == (300, 1)
    assert x1.dtype == np.float32 and np.all(np.isfinite(x1))
    assert np.all(y1 == np.rint(y1)) and y1.min() >= 0 and y1.max() <= 99
    assert np.ptp(y1) > 60                                  # ages spread over the range
    info = age_data.write_age(tmp_path, small=True)
    with h5py.File(str(tmp_path / "data" / "train.h5"), "r") as f:
        assert f["data"].shape == (age_data.SMALL_TRAIN, 1, 16, 16)
        assert f["true_age"].shape == (age_data.SMALL_TRAIN, 1)
    with open(info["train"]) as f:     # relative to the folder Caffe runs from: the folder can move
        assert f.read().strip() == os.path.join("data", "train.h5")


def test_the_image_carries_the_age():
    # Images of the same age, drawn with different nuisances, are closer to
    # each other than images 40 years apart (averaged over many draws).
    rng = np.random.RandomState(3)
    young = age_data.render_faces(np.full(200, 25.0), rng).reshape(200, -1)
    old = age_data.render_faces(np.full(200, 65.0), rng).reshape(200, -1)
    within = np.linalg.norm(young[:100].mean(0) - young[100:].mean(0))
    between = np.linalg.norm(young.mean(0) - old.mean(0))
    assert between > 5 * within


def test_trivial_mae():
    # by hand: median of [10, 20, 90] is 20; |[0, 20, 40] - 20| -> mean 40/3;
    # the mean is 40; |[0, 20, 40] - 40| -> mean 20.
    got = age_data.trivial_mae(np.array([10, 20, 90]), np.array([0, 20, 40]))
    assert got["median"] == pytest.approx(40 / 3) and got["mean"] == pytest.approx(20)


def test_age_templates_exist_and_name_their_prepare():
    names = list_templates()
    for name in AGE_TEMPLATES:
        assert name in names
        meta = load_template(os.path.join(TEMPLATE_ROOT, name))
        assert meta["prepare"].startswith("caffe_losses.losses.regression.data:")
    assert load_template(os.path.join(TEMPLATE_ROOT, "age_softmax_surgery"))["weights"] == \
        "init_weights.caffemodel"


def test_expectation_template_equals_the_surgery_template_model(tmp_path, monkeypatch):
    # Same fc100 weights in both nets: the Expectation layer's pred_age equals
    # the surgically fixed Convolution's, with no surgery.
    folders = {}
    for name in ("age_softmax_surgery", "age_expectation"):
        folders[name] = tmp_path / name
        shutil.copytree(os.path.join(TEMPLATE_ROOT, name), folders[name])
    age_data.prepare_surgery(str(folders["age_softmax_surgery"]), small=True)
    age_data.prepare_expectation(str(folders["age_expectation"]), small=True)
    monkeypatch.chdir(folders["age_softmax_surgery"])
    seed_net = caffe.Net("train_val.prototxt", "init_weights.caffemodel", caffe.TEST)
    monkeypatch.chdir(folders["age_expectation"])
    ours = caffe.Net("train_val.prototxt", caffe.TEST)
    # (copied blob by blob: a .caffemodel of the surgery net cannot be loaded here,
    # its 'pred_age' is a Convolution with a kernel, ours a parameterless layer)
    rng = np.random.RandomState(4)
    for name in ("conv1", "conv2", "fc100"):      # give the bins something to say
        for i in range(len(seed_net.params[name])):
            value = rng.randn(*seed_net.params[name][i].data.shape) * 0.3
            seed_net.params[name][i].data[...] = value
            ours.params[name][i].data[...] = value
    seed_net.forward()
    ours.forward()
    a, b = seed_net.blobs["pred_age"].data.ravel(), ours.blobs["pred_age"].data.ravel()
    assert np.ptp(a) > 1                          # not all the same age
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)
    assert float(ours.blobs["mae"].data) == pytest.approx(float(seed_net.blobs["mae"].data), rel=1e-4)
