"""Bad input to the infogain layers: a clear Python error, never a crash or a NaN.

Each error names the layer class, the key or bottom, and what was expected.
"""

import pickle
import textwrap

import numpy as np
import pytest

from caffe_losses.files.hmatrix import save_h
from caffe_losses.glue.testing import layer_net, net_from_text

SWIL = "SoftmaxWithInfogainLoss"


@pytest.fixture(scope="module")
def h4(tmp_path_factory):
    path = tmp_path_factory.mktemp("h") / "H4.binaryproto"
    save_h(str(path), np.eye(4) + 0.1)
    return str(path)


def net(layer, param_str="", bottoms=None, **kw):
    bottoms = bottoms or {"x": (3, 4), "y": (3,)}
    return layer_net("caffe_losses", layer, bottoms, param_str=param_str, **kw)


def forward(n, **values):
    for name, value in values.items():
        n.blobs[name].data[...] = value
    n.forward()
    return n


# ---------------------------------------------------------------------------
# param_str
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [SWIL, "InfogainLoss"])
def test_unknown_key_suggests_the_right_one(h4, layer):
    with pytest.raises(ValueError, match=rf"{layer}: unknown key 'sourse' in param_str\. "
                                         r"Did you mean 'source'\?.*Valid keys: source, axis"):
        net(layer, "{sourse: '%s'}" % h4)


def test_eps_is_a_key_of_infogain_loss_only(h4):
    with pytest.raises(ValueError, match=rf"{SWIL}: unknown key 'eps'"):
        net(SWIL, "{source: '%s', eps: 1e-10}" % h4)
    with pytest.raises(ValueError, match=r"InfogainLoss: 'eps' must be > 0\. Received: eps=0"):
        net("InfogainLoss", "{source: '%s', eps: 0}" % h4)


@pytest.mark.parametrize("param_str,pattern", [
    ("{source: H, normalization: MEAN}", r"'normalization' must be one of FULL, VALID, BATCH_SIZE, NONE"),
    ("{source: H, axis: one}", r"'axis' must be an integer\. Received: axis='one'"),
    ("{source: H, ignore_label: 1.5}", r"'ignore_label' must be an integer"),
    ("{source: [1, 2]}", r"'source' must be a non-empty string"),
    ("{source: H", r"param_str is not valid YAML/JSON"),
    ("[1, 2]", r"param_str must be a mapping"),
])
def test_bad_values(param_str, pattern):
    with pytest.raises((ValueError, TypeError), match=rf"{SWIL}: {pattern}"):
        net(SWIL, param_str)


def test_axis_out_of_range(h4):
    with pytest.raises(ValueError, match=rf"{SWIL}: 'axis' must be in \[-2, 2\) for bottom "
                                         r"'scores' of shape \(3, 4\)\. Received: axis=2"):
        net(SWIL, "{source: '%s', axis: 2}" % h4)


# ---------------------------------------------------------------------------
# Where H comes from
# ---------------------------------------------------------------------------

def test_h_needed(h4):
    with pytest.raises(ValueError, match=rf"{SWIL}: needs H: set 'source' in param_str .* or give "
                                         r"H as a third bottom"):
        net(SWIL, "")


def test_h_from_source_and_bottom_is_an_error(h4):
    with pytest.raises(ValueError, match=rf"{SWIL}: H is given twice: by 'source' .* and by the "
                                         r"third bottom 'H'; keep one"):
        net(SWIL, "{source: '%s'}" % h4, bottoms={"x": (3, 4), "y": (3,), "H": (4, 4)})


def test_too_many_bottoms():
    with pytest.raises(ValueError, match=rf"{SWIL}: expected 2 to 3 bottom\(s\) \(scores, label, "
                                         r"\[H\]\), got 4"):
        net(SWIL, "", bottoms={"x": (3, 4), "y": (3,), "H": (4, 4), "z": (1,)})


def write_files(folder):
    """One bad H file per way it can be bad."""
    files = {}
    files["missing"] = str(folder / "nope.binaryproto")
    (folder / "empty.binaryproto").write_bytes(b"")
    files["empty"] = str(folder / "empty.binaryproto")
    (folder / "garbage.binaryproto").write_bytes(b"\xff\xff\xff\xff\x07 not a blob at all")
    files["garbage"] = str(folder / "garbage.binaryproto")
    (folder / "text.binaryproto").write_text("1 0 0 1\n")
    files["text"] = str(folder / "text.binaryproto")
    np.save(folder / "objects.npy", np.array([{"H": 1}], dtype=object), allow_pickle=True)
    files["objects"] = str(folder / "objects.npy")
    with open(folder / "pickled.npy", "wb") as f:
        pickle.dump(np.eye(4), f)
    files["pickled"] = str(folder / "pickled.npy")
    save_h(str(folder / "three.binaryproto"), np.eye(3))
    files["three"] = str(folder / "three.binaryproto")
    np.save(folder / "flat.npy", np.eye(4).ravel())
    files["flat"] = str(folder / "flat.npy")
    np.save(folder / "negative.npy", np.eye(4) - 0.5)
    files["negative"] = str(folder / "negative.npy")
    H = np.eye(4)
    H[2, 1] = np.nan
    np.save(folder / "nan.npy", H)
    files["nan"] = str(folder / "nan.npy")
    return files


@pytest.mark.parametrize("kind,exc,pattern", [
    ("missing", FileNotFoundError, r"'source' file '.*nope\.binaryproto' not found"),
    ("empty", ValueError, r"'source' file '.*empty\.binaryproto' is empty"),
    ("garbage", ValueError, r"'source' file '.*garbage\.binaryproto' is not a (valid )?BlobProto"),
    ("text", ValueError, r"'source' file '.*text\.binaryproto' is not a (valid )?BlobProto"),
    ("objects", ValueError, r"'source' file '.*objects\.npy' holds a pickled object array"),
    ("pickled", ValueError, r"'source' file '.*pickled\.npy' is a pickle.*allow_pickle=False"),
    ("three", ValueError, r"'source' file '.*three\.binaryproto' holds a 3 x 3 H, but bottom "
                          r"'(scores|prob)' \(3, 4\) has 4 classes on axis 1: H must be 4 x 4"),
    ("flat", ValueError, r"'source' file '.*flat\.npy' must be an L x L matrix.*Received shape \(16,\)"),
    ("negative", ValueError, r"'source' file '.*negative\.npy' holds a negative value -0\.5 at H\[0, 1\]"),
    ("nan", ValueError, r"'source' file '.*nan\.npy' holds a non-finite value nan at H\[2, 1\]"),
])
@pytest.mark.parametrize("layer", [SWIL, "InfogainLoss", "Constant"])
def test_bad_h_files(tmp_path, layer, kind, exc, pattern):
    path = write_files(tmp_path)[kind]
    if layer == "Constant":
        if kind in ("three", "flat", "negative"):
            # Constant emits any finite blob: the consuming loss layer checks it as H
            with pytest.raises(ValueError, match=rf"{SWIL}: bottom 'H' (must be a 4 x 4|holds a neg)"):
                forward(constant_then_loss(path), x=np.zeros((3, 4)), y=np.zeros(3))
            return
        if kind == "nan":
            pattern = r"'source' file '.*nan\.npy' holds non-finite values"
    with pytest.raises(exc, match=rf"{layer}: {pattern}"):
        if layer == "Constant":
            constant_then_loss(path)
        else:
            net(layer, "{source: '%s'}" % path)


def constant_then_loss(path):
    return net_from_text(textwrap.dedent(f"""
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 3 dim: 4 }} }} }}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 3 }} }} }}
        layer {{ name: "H" type: "Python" top: "H"
                python_param {{ module: "caffe_losses" layer: "Constant" param_str: "{{source: '{path}'}}" }} }}
        layer {{ name: "loss" type: "Python" bottom: "x" bottom: "y" bottom: "H" top: "loss"
                python_param {{ module: "caffe_losses" layer: "{SWIL}" }} loss_weight: 1 }}
    """))


def test_relative_source_names_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'source' file 'H\.binaryproto' \(relative to the "
                                                r"working directory .*\) not found"):
        net(SWIL, "{source: H.binaryproto}")


def test_constant_needs_source_and_no_bottoms(h4):
    with pytest.raises(ValueError, match=r"Constant: param_str must set 'source'"):
        layer_net("caffe_losses", "Constant", {}, tops=("H",), loss_weight=None)
    with pytest.raises(ValueError, match=r"Constant: expected 0 bottom\(s\) \(none\), got 1"):
        layer_net("caffe_losses", "Constant", {"x": (2,)}, tops=("H",), param_str="{source: '%s'}" % h4,
                  loss_weight=None)


# ---------------------------------------------------------------------------
# Bottoms: shapes, labels, H, probabilities, scores
# ---------------------------------------------------------------------------

def test_label_count_mismatch(h4):
    with pytest.raises(ValueError, match=rf"{SWIL}: bottom 'label' must hold one label per position "
                                         r"of 'scores' \(2, 4, 3, 3\) \(axis 1\): expected 18 values, "
                                         r"got 12 \(2, 6\)"):
        net(SWIL, "{source: '%s'}" % h4, bottoms={"x": (2, 4, 3, 3), "y": (2, 6)})


@pytest.mark.parametrize("labels,pattern", [
    ([0, 4, 1], r"holds 4\.0 at index \(1,\); expected integers in \[0, 4\)"),
    ([0, -1, 1], r"holds -1\.0 at index \(1,\)"),
    ([0, 1, 2.5], r"holds 2\.5 at index \(2,\)"),
    ([0, 1, np.nan], r"holds nan at index \(2,\)"),
    ([0, 255, 7], r"holds 7\.0 at index \(2,\); expected integers in \[0, 4\) or the ignore_label 255"),
])
@pytest.mark.parametrize("layer", [SWIL, "InfogainLoss"])
def test_bad_labels(h4, layer, labels, pattern):
    n = net(layer, "{source: '%s', ignore_label: 255}" % h4)
    with pytest.raises(ValueError, match=rf"{layer}: bottom 'label' {pattern}"):
        forward(n, x=np.full((3, 4), 0.25), y=np.array(labels, np.float32))


def test_h_bottom_shape_and_values():
    with pytest.raises(ValueError, match=rf"{SWIL}: bottom 'H' must be a 4 x 4 matrix \(or 1 x 1 x 4 "
                                         r"x 4\) for the 4 classes of 'scores' \(3, 4\)\. Received shape "
                                         r"\(1, 16\)"):
        net(SWIL, "", bottoms={"x": (3, 4), "y": (3,), "H": (1, 16)})
    n = net(SWIL, "", bottoms={"x": (3, 4), "y": (3,), "H": (4, 4)})
    forward(n, x=np.zeros((3, 4)), y=np.zeros(3), H=np.eye(4))
    H = np.eye(4)
    H[3, 0] = -2
    with pytest.raises(ValueError, match=rf"{SWIL}: bottom 'H' holds a negative value -2\.0 at H\[3, 0\]"):
        forward(n, H=H)       # a changed H is checked again
    H[3, 0] = np.inf
    with pytest.raises(ValueError, match=rf"{SWIL}: bottom 'H' holds a non-finite value inf"):
        forward(n, H=H)


def test_raw_scores_into_infogain_loss_point_to_the_fused_layer(h4):
    n = net("InfogainLoss", "{source: '%s'}" % h4)
    x = np.array([[2.3, -1.0, 0.5, 0.1]] * 3, np.float32)
    with pytest.raises(ValueError, match=r"InfogainLoss: bottom 'prob' holds 2\.29.* at index \(0, 0\); "
                                         r"expected probabilities in \[0, 1\].*use SoftmaxWithInfogainLoss"):
        forward(n, x=x, y=np.zeros(3))


def test_non_finite_scores_raise_instead_of_a_nan_loss(h4):
    n = net(SWIL, "{source: '%s'}" % h4)
    x = np.zeros((3, 4), np.float32)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=rf"{SWIL}: bottom 'scores' holds a non-finite value nan at "
                                         r"index \(2, 1\)"):
        forward(n, x=x, y=np.zeros(3))
    x[2, 1] = -np.inf
    with pytest.raises(ValueError, match=r"holds a non-finite value -inf at index \(2, 1\)"):
        forward(n, x=x, y=np.zeros(3))
