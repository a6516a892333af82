"""plot-features: a trained template net's 2-D features drawn to a PNG."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import caffe
from caffe_losses import cli
from caffe_losses.losses.center.data import SMALL_TEST
from caffe_losses.nets.templates import TEMPLATE_ROOT, prepare_template
from caffe_losses.files import features
from caffe_losses.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The center-loss template, prepared (small) and trained 10 iterations."""
    folder = tmp_path_factory.mktemp("plot") / "center_loss_lenetpp"
    shutil.copytree(os.path.join(TEMPLATE_ROOT, "center_loss_lenetpp"), folder)
    prepare_template(str(folder), small=True)
    old = os.getcwd()
    os.chdir(folder)
    try:
        train("solver.prototxt", max_iter=10, progress=False)
    finally:
        os.chdir(old)
    model = folder / "lenetpp_center_iter_10.caffemodel"
    assert model.is_file()
    return folder, model


def read_png(path):
    import matplotlib.image
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(str(path))


def test_cli_draws_two_models_side_by_side(trained, tmp_path, monkeypatch, capsys):
    folder, model = trained
    monkeypatch.chdir(tmp_path)    # not the template folder: data paths resolve next to the prototxt
    out = tmp_path / "fig" / "features.png"
    status = cli.main(["plot-features", "--model", str(folder / "train_val.prototxt"), str(model),
                       "--model", str(folder / "train_val.prototxt"), str(model),
                       "--title", "with center loss", "--title", "again", "--out", str(out)])
    assert status == 0
    one = read_png(out)
    printed = capsys.readouterr().out
    assert f"with center loss: {SMALL_TEST} samples, intra/inter ratio" in printed
    # one panel is narrower than two
    single = tmp_path / "one.png"
    cli.main(["plot-features", "--model", str(folder / "train_val.prototxt"), str(model),
              "--out", str(single), "--samples", "30"])
    assert read_png(single).shape[1] < one.shape[1]
    assert "30 samples" in capsys.readouterr().out


def test_script_runs_from_the_template_folder(trained, tmp_path):
    folder, model = trained
    out = tmp_path / "script.png"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "plot_features.py"),
                           "--model", "train_val.prototxt", str(model), "--out", str(out)],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_png(out).ndim == 3


def test_collect_features_covers_the_test_set_once(trained):
    folder, model = trained
    net = features.load_net(str(folder / "train_val.prototxt"), str(model))
    feats, labels, accuracy = features.evaluate(net, "feature", "label", "ip2", samples=SMALL_TEST)
    assert feats.shape == (SMALL_TEST, 2) and labels.shape == (SMALL_TEST,)
    import h5py
    with h5py.File(folder / "data" / "test.h5", "r") as f:
        np.testing.assert_array_equal(labels, f["label"][:].astype(np.int64))
    assert 0.0 <= accuracy <= 1.0
    # the accuracy is that of the scores blob of the same forward passes
    net2 = features.load_net(str(folder / "train_val.prototxt"), str(model))
    net2.forward()
    expected = np.mean(net2.blobs["ip2"].data.argmax(axis=1) == net2.blobs["label"].data)
    assert accuracy == pytest.approx(expected)    # SMALL_TEST == one TEST batch


def test_errors_name_the_problem(trained, tmp_path, capsys):
    folder, model = trained
    net = features.load_net(str(folder / "train_val.prototxt"), str(model))
    with pytest.raises(ValueError, match=r"blob 'ip2' has 10 values per sample; expected a 2-D feature"):
        features.collect_features(net, feature="ip2")
    with pytest.raises(ValueError, match=r"the net has no blob 'ip1'"):
        features.collect_features(net, feature="ip1")
    with pytest.raises(FileNotFoundError, match=r"weights file not found"):
        features.load_net(str(folder / "train_val.prototxt"), str(tmp_path / "none.caffemodel"))
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(folder / "train_val.prototxt", bare)
    with pytest.raises(FileNotFoundError, match=r"TEST data source 'data/test.txt' exists neither.*prepare"):
        features.load_net(str(bare / "train_val.prototxt"), str(model))
    status = cli.main(["plot-features", "--model", str(bare / "train_val.prototxt"), str(model),
                       "--out", str(tmp_path / "x.png")])
    assert status == 2 and not (tmp_path / "x.png").exists()
    assert "exists neither" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="one --title per --model"):
        cli.main(["plot-features", "--model", str(folder / "train_val.prototxt"), str(model),
                  "--title", "a", "--title", "b", "--out", str(tmp_path / "x.png")])


def test_intra_inter_ratio_on_hand_made_points():
    # class 0 around (0, 0), class 1 around (10, 0), each point at distance 1 from its mean:
    # intra = 1, inter = 10 -> 0.1; scaling all features leaves it unchanged
    x = np.array([[0, 1], [0, -1], [10, 1], [10, -1], [11, 0], [9, 0]], float)
    y = np.array([0, 0, 1, 1, 1, 1])
    assert features.intra_inter_ratio(x, y) == pytest.approx(0.1)
    assert features.intra_inter_ratio(37 * x, y) == pytest.approx(0.1)
    # three classes: inter is the mean of the three pairwise distances (10, 10, sqrt(200))
    x3 = np.vstack([x, [[0, 11], [0, 9]]])
    y3 = np.append(y, [2, 2])
    assert features.intra_inter_ratio(x3, y3) == pytest.approx(1 / ((20 + np.sqrt(200)) / 3))
    with pytest.raises(ValueError, match="at least two classes"):
        features.intra_inter_ratio(x[:2], y[:2])
