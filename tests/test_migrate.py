"""`caffe-losses migrate`: nets written for Caffe's native or the forks' loss layers, carried over.

Each migrated net is built in real Caffe and compared with the original:
the native InfogainLoss in the same process, the forks' layers (which BVLC
Caffe cannot load) against their formulas written here from the forks'
sources (rbgirshick/caffe-fast-rcnn ``smooth_L1_loss_layer.cu``,
ydwen/caffe-face ``center_loss_layer.cpp``, s9xie/hed's class-balanced
``sigmoid_cross_entropy_loss_layer.cpp``).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from caffe_losses.nets import textproto
from caffe_losses.files.hmatrix import save_h
from caffe_losses.nets.lint import lint_file
from caffe_losses.nets.migrate import MigrationError, migrate_text

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
RNG = np.random.RandomState(11)


def migrate(text, **kwargs):
    """Migrates, checks there are no problems and that migrating again changes nothing."""
    result = migrate_text(text, **kwargs)
    assert not result.problems, result.problems
    again = migrate_text(result.text, **kwargs)
    assert again.text == result.text and not again.changes, again.changes
    return result


def net(text, phase=caffe.TRAIN, weights=None, tmp=None):
    path = os.path.join(tmp or os.getcwd(), f"net_{abs(hash(text))}.prototxt")
    with open(path, "w") as f:
        f.write(text)
    return caffe.Net(path, phase) if weights is None else caffe.Net(path, weights, phase)


def inputs(force_backward=True, **shapes):
    tops = " ".join(f'top: "{name}"' for name in shapes)
    dims = " ".join("shape { " + " ".join(f"dim: {d}" for d in shape) + " }" for shape in shapes.values())
    return (f'force_backward: {str(force_backward).lower()}\n'
            f'layer {{ name: "input" type: "Input" {tops} input_param {{ {dims} }} }}\n')


# the native InfogainLoss aborts when force_backward asks it for a gradient
# into H: its scores come from a learnable scalar (1) instead, so that Caffe
# asks for the scores' gradient alone
SCORES = ('layer { name: "scale" type: "Scale" bottom: "raw" top: "scores" '
          'scale_param { axis: 0 num_axes: 0 filler { value: 1 } } }\n')


def h_file(C, high=2.0):
    """A random positive C x C H, written to H.binaryproto in the working directory."""
    H = RNG.uniform(0.1, high, (C, C))
    save_h("H.binaryproto", H)
    return H


def unchanged_layers_kept(before, after, migrated_names):
    """Every layer migrate did not rewrite is in the output byte for byte."""
    old = {f.get("name"): before[f.start:f.end] for f in textproto.parse(before).all("layer")}
    new = {f.get("name"): after[f.start:f.end] for f in textproto.parse(after).all("layer")}
    for name, text in old.items():
        if name not in migrated_names:
            assert new[name] == text, name


# ---------------------------------------------------------------------------
# Native InfogainLoss: same loss and gradient as the native layer, same process
# ---------------------------------------------------------------------------

INFOGAIN = [
    # (extra fields of the native layer, scores shape, label shape)
    ("", (6, 4), (6,)),
    ("loss_param { normalization: NONE }", (6, 4), (6,)),
    ("loss_param { normalization: FULL ignore_label: 1 }", (6, 4), (6,)),
    ("loss_param { normalization: BATCH_SIZE }\n  infogain_loss_param { axis: 1 }", (2, 4, 3, 3), (2, 1, 3, 3)),
    ("loss_param { normalization: VALID ignore_label: 3 }", (2, 4, 3, 3), (2, 3, 3)),
]


def h_from_fields(shape, label_shape, h_from):
    """The input shapes and the prototxt pieces for a native InfogainLoss's H from its
    ``source`` file (H.binaryproto) or from a third bottom "H": (shapes, source, h_bottom)."""
    shapes = {"raw": shape, "label": label_shape}
    if h_from == "bottom":
        shapes["H"] = (1, 1, shape[1], shape[1])
        return shapes, "", '\n  bottom: "H"'
    return shapes, '\n  infogain_loss_param { source: "H.binaryproto" }', ""


@pytest.mark.parametrize("fields, shape, label_shape", INFOGAIN)
@pytest.mark.parametrize("h_from", ["source", "bottom"])
def test_native_infogain_same_loss_and_gradient(fields, shape, label_shape, h_from, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    C = shape[1]
    H = h_file(C, 3.0)
    shapes, source, h_bottom = h_from_fields(shape, label_shape, h_from)
    if "infogain_loss_param" in fields and source:
        fields = fields.replace("infogain_loss_param { axis: 1 }",
                                'infogain_loss_param { axis: 1 source: "H.binaryproto" }')
        source = ""
    text = inputs(False, **shapes) + SCORES + (
        'layer { name: "ip" type: "InnerProduct" bottom: "scores" top: "unused" '
        'inner_product_param { num_output: 2 } }\n'
        f'layer {{\n  name: "loss"\n  type: "InfogainLoss"\n  bottom: "scores"\n  bottom: "label"{h_bottom}\n'
        f'  top: "loss"{source}\n  {fields}\n}}\n')
    result = migrate(text)
    assert "SoftmaxWithInfogainLoss" in result.text and 'type: "InfogainLoss"' not in result.text
    assert any("loss_weight: 1" in c.new for c in result.changes)
    unchanged_layers_kept(text, result.text, {"loss"})
    scores = RNG.randn(*shape).astype(np.float32) * 3
    label = RNG.randint(0, C, size=label_shape).astype(np.float32)
    out = []
    for t in (text, result.text):
        n = net(t)
        n.blobs["raw"].data[...] = scores
        n.blobs["label"].data[...] = label
        if h_from == "bottom":
            n.blobs["H"].data[...] = H.reshape(1, 1, C, C)
        n.forward()
        n.backward()
        out.append((float(n.blobs["loss"].data.flat[0]), n.blobs["scores"].diff.copy()))
    (native, g_native), (ours, g_ours) = out
    assert ours == pytest.approx(native, rel=1e-5)
    np.testing.assert_allclose(g_ours, g_native, rtol=1e-4, atol=1e-7)
    assert not [f for _, f in lint_file(_write(tmp_path / "migrated.prototxt", result.text))
                if f.severity == "error"]


def _write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("normalize, expected", [("false", "BATCH_SIZE"), ("true", "VALID")])
def test_old_normalize_is_read_as_caffe_reads_it(normalize, expected):
    # LossLayer: the old bool counts when normalization is unset (native
    # InfogainLoss refuses it since 1.0; older nets and other layers carry it)
    text = ('layer { name: "loss" type: "InfogainLoss" bottom: "s" bottom: "l" top: "loss" '
            f'infogain_loss_param {{ source: "H.binaryproto" }} loss_param {{ normalize: {normalize} }} }}\n')
    result = migrate(text)
    assert f'param_str: "{{source: H.binaryproto, normalization: {expected}}}"' in result.text


def test_native_infogain_second_top_and_given_loss_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h_file(5)
    text = inputs(scores=(4, 5), label=(4,)) + (
        'layer { name: "loss" type: "InfogainLoss" bottom: "scores" bottom: "label" top: "loss" top: "prob" '
        'infogain_loss_param { source: "H.binaryproto" } loss_weight: 2 loss_weight: 0 }\n')
    result = migrate(text)
    # one line in, one line out: inline python_param, the given weights kept
    assert result.text.count("\n") == text.count("\n")
    assert "loss_weight: 2 loss_weight: 0" in result.text
    scores = RNG.randn(4, 5).astype(np.float32)
    label = RNG.randint(0, 5, 4).astype(np.float32)
    got = []
    for t in (text, result.text):
        n = net(t)
        n.blobs["scores"].data[...] = scores
        n.blobs["label"].data[...] = label
        n.forward()
        n.backward()
        got.append((float(n.blobs["loss"].data.flat[0]), n.blobs["prob"].data.copy(), n.blobs["scores"].diff.copy()))
    assert got[1][0] == pytest.approx(got[0][0], rel=1e-5)
    np.testing.assert_allclose(got[1][1], got[0][1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[1][2], got[0][2], rtol=1e-4, atol=1e-7)


def test_infogain_after_softmax_becomes_the_classic_form(tmp_path, monkeypatch):
    # a net written for Caffe before 1.0: Softmax, then InfogainLoss on probabilities
    monkeypatch.chdir(tmp_path)
    H = h_file(3)
    text = inputs(scores=(5, 3), label=(5,)) + (
        'layer { name: "prob" type: "Softmax" bottom: "scores" top: "prob" }\n'
        'layer { name: "loss" type: "InfogainLoss" bottom: "prob" bottom: "label" top: "loss" '
        'infogain_loss_param { source: "H.binaryproto" } }\n')
    result = migrate(text)
    assert 'layer: "InfogainLoss"' in result.text and result.notes and "before 1.0" in result.notes[0]
    scores = RNG.randn(5, 3) * 2
    label = RNG.randint(0, 3, 5)
    n = net(result.text)
    n.blobs["scores"].data[...] = scores
    n.blobs["label"].data[...] = label
    n.forward()
    n.backward()

    def old_infogain(x):   # the pre-1.0 native layer after a Softmax (ANCHORS)
        p = np.exp(x - x.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return -(H[label] * np.log(np.maximum(p, 1e-20))).sum() / len(label)

    assert float(n.blobs["loss"].data.flat[0]) == pytest.approx(old_infogain(scores), rel=1e-5)
    eps, numeric = 1e-6, np.zeros_like(scores)
    for idx in np.ndindex(*scores.shape):
        d = np.zeros_like(scores)
        d[idx] = eps
        numeric[idx] = (old_infogain(scores + d) - old_infogain(scores - d)) / (2 * eps)
    np.testing.assert_allclose(n.blobs["scores"].diff, numeric, rtol=1e-3, atol=1e-6)


def test_python_layer_blocks_move_into_param_str(tmp_path, monkeypatch):
    # the case: InfogainLoss changed into ours by hand, its blocks left
    # there; Caffe ignored them (3.05 instead of the native 97.75)
    monkeypatch.chdir(tmp_path)
    C = 6
    save_h("H.binaryproto", RNG.uniform(0.5, 5.0, (C, C)))
    native = inputs(scores=(32, C), label=(32,)) + (
        'layer { name: "loss" type: "InfogainLoss" bottom: "scores" bottom: "label" top: "loss"\n'
        '  infogain_loss_param { source: "H.binaryproto" }\n  loss_param { normalization: NONE } }\n')
    by_hand = inputs(scores=(32, C), label=(32,)) + (
        'layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" top: "loss"\n'
        '  python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" param_str: "{source: H.binaryproto}" }\n'
        '  infogain_loss_param { source: "H.binaryproto" }\n  loss_param { normalization: NONE } }\n')
    findings = [(f.severity, f.rule) for _, f in lint_file(_write(tmp_path / "hand.prototxt", by_hand))]
    assert ("error", "python-ignored-param") in findings
    assert ("error", "python-loss-weight") in findings
    result = migrate(by_hand)
    assert "normalization: NONE" in result.text and "loss_param" not in result.text
    assert "loss_weight: 1" in result.text
    scores = RNG.randn(32, C).astype(np.float32) * 2
    label = RNG.randint(0, C, 32).astype(np.float32)
    values = []
    for t in (native, by_hand, result.text):
        n = net(t)
        n.blobs["scores"].data[...] = scores
        n.blobs["label"].data[...] = label
        n.forward()
        values.append(float(n.blobs["loss"].data.flat[0]))
    assert values[2] == pytest.approx(values[0], rel=1e-5)
    assert values[1] == pytest.approx(values[0] / 32, rel=1e-5)    # what Caffe ran before: VALID


def test_python_layer_conflict_and_unknown_block_are_problems():
    base = ('layer {{ name: "loss" type: "Python" bottom: "a" bottom: "b" top: "loss" '
            'python_param {{ module: "caffe_losses" layer: "SmoothL1Loss" param_str: "{ps}" }} {block} '
            'loss_weight: 1 }}\n')
    result = migrate_text(base.format(ps="{sigma: 2}", block="smooth_l1_loss_param { sigma: 3 }"))
    assert result.problems and "param_str sets 2" in result.problems[0]
    result = migrate_text(base.format(ps="", block="convolution_param { num_output: 3 }"))
    assert result.problems and "convolution_param" in result.problems[0]
    result = migrate_text(base.format(ps="", block="smooth_l1_loss_param { sigma: 3 }"))
    assert not result.problems and 'param_str: "{sigma: 3}"' in result.text


# ---------------------------------------------------------------------------
# fast-rcnn SmoothL1Loss
# ---------------------------------------------------------------------------

def fork_smooth_l1(a, b, w_in, w_out, sigma, top_diff):
    """rbgirshick/caffe-fast-rcnn smooth_L1_loss_layer.cu, as written there.

    Forward: diff = w_in * (a - b); f = 0.5 sigma^2 d^2 if |d| < 1/sigma^2 else
    |d| - 0.5/sigma^2; errors = w_out * f; loss = sum(errors) / num.
    Backward: f'(d) = sigma^2 d inside, sign(d) outside; bottom[i].diff =
    sign_i * top_diff / num * f'(d), then times w_in and w_out (sign_0 = 1, sign_1 = -1).
    """
    s2 = sigma * sigma
    num = a.shape[0]
    d = w_in * (a - b)
    inside = np.abs(d) < 1.0 / s2
    f = np.where(inside, 0.5 * s2 * d * d, np.abs(d) - 0.5 / s2)
    loss = (w_out * f).sum() / num
    fprime = np.where(inside, s2 * d, np.sign(d))
    grad = top_diff / num * fprime * w_in * w_out
    return loss, grad, -grad


@pytest.mark.parametrize("bottoms", [2, 3, 4])
def test_fast_rcnn_smooth_l1(bottoms, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shape = (4, 8, 3, 3)
    names = ["bbox_pred", "bbox_targets", "bbox_inside_weights", "bbox_outside_weights"][:bottoms]
    text = inputs(**{n: shape for n in names}) + (
        "layer {\n  name: \"loss_bbox\"\n  type: \"SmoothL1Loss\"\n"
        + "".join(f'  bottom: "{n}"\n' for n in names)
        + '  top: "loss_bbox"\n  loss_weight: 2\n  smooth_l1_loss_param {\n    sigma: 3.0\n  }\n}\n')
    with pytest.raises(text_format.ParseError):          # BVLC Caffe cannot read the fork's net
        text_format.Parse(text, caffe_pb2.NetParameter())
    result = migrate(text)
    assert 'param_str: "{sigma: 3.0}"' in result.text and "smooth_l1_loss_param" not in result.text
    data = {n: RNG.randn(*shape).astype(np.float32) for n in names}
    if bottoms > 2:
        data[names[2]] = (RNG.rand(*shape) < 0.5).astype(np.float32)
    if bottoms > 3:
        data[names[3]] = np.full(shape, 1.0 / 36, np.float32)
    n = net(result.text)
    for k, v in data.items():
        n.blobs[k].data[...] = v
    n.forward()
    n.backward()
    ones = np.ones(shape, np.float64)
    w_in = data[names[2]].astype(np.float64) if bottoms > 2 else ones
    w_out = data[names[3]].astype(np.float64) if bottoms > 3 else ones
    loss, ga, gb = fork_smooth_l1(data[names[0]].astype(np.float64), data[names[1]].astype(np.float64),
                                  w_in, w_out, 3.0, 2.0)
    assert float(n.blobs["loss_bbox"].data.flat[0]) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(n.blobs[names[0]].diff, ga, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(n.blobs[names[1]].diff, gb, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------
# caffe-face CenterLoss
# ---------------------------------------------------------------------------

CAFFE_FACE = """layer {
  name: "center_loss"
  type: "CenterLoss"
  bottom: "ip1"
  bottom: "label"
  top: "center_loss"
  param {
    lr_mult: 1
    decay_mult: 2
  }
  center_loss_param {
    num_output: 10
    center_filler {
      type: "xavier"
    }
  }
  loss_weight: 0.01
}
"""


def fork_center_loss(x, label, centers, top_diff):
    """ydwen/caffe-face center_loss_layer.cpp, as written there.

    Forward: distance_i = x_i - c_{y_i}; loss = dot(distance, distance) / M / 2.
    Backward: center_diff[n] += sum_{m: y_m = n} -distance_m / (count_n + 1)
    (variation_sum starts at 0 and subtracts each distance); bottom diff =
    distance * top_diff / M.
    """
    M = x.shape[0]
    distance = x - centers[label]
    loss = (distance * distance).sum() / M / 2
    center_diff = np.zeros_like(centers)
    for n in range(centers.shape[0]):
        mask = label == n
        center_diff[n] = -distance[mask].sum(0) / (mask.sum() + 1.0)
    return loss, distance * top_diff / M, center_diff


def test_caffe_face_center_loss(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = inputs(ip1=(16, 2), label=(16,)) + CAFFE_FACE
    result = migrate(text)
    assert 'param_str: "{num_classes: 10, center_filler: xavier, update: solver}"' in result.text
    assert "lr_mult: 1\n    decay_mult: 2" in result.text      # the solver applies the update, as there
    n = net(result.text)
    centers = n.params["center_loss"][0].data
    limit = np.sqrt(3.0 / 2)                                     # xavier: fan_in = K = 2
    assert centers.shape == (10, 2) and np.abs(centers).max() <= limit and np.abs(centers).max() > 0
    x = RNG.randn(16, 2).astype(np.float32)
    label = RNG.randint(0, 10, 16)
    c0 = RNG.randn(10, 2).astype(np.float32)
    centers[...] = c0
    n.blobs["ip1"].data[...] = x
    n.blobs["label"].data[...] = label
    n.forward()
    n.backward()
    loss, gx, gc = fork_center_loss(x.astype(np.float64), label, c0.astype(np.float64), 0.01)
    assert float(n.blobs["center_loss"].data.flat[0]) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(n.blobs["ip1"].diff, gx, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(n.params["center_loss"][0].diff, gc, rtol=1e-4, atol=1e-7)


def test_caffe_face_center_update_by_the_solver(tmp_path, monkeypatch):
    # caffe-face: the solver applies the center diff at base_lr * lr_mult, with
    # weight decay decay_mult * weight_decay; so does the migrated layer
    monkeypatch.chdir(tmp_path)
    result = migrate(inputs(ip1=(16, 2), label=(16,)) + CAFFE_FACE)
    (tmp_path / "net.prototxt").write_text(result.text)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.5\nlr_policy: "fixed"\nmomentum: 0\nweight_decay: 0.001\n'
        'max_iter: 10\nsnapshot_after_train: false\n')
    solver = caffe.SGDSolver("solver.prototxt")
    x = RNG.randn(16, 2).astype(np.float32)
    label = RNG.randint(0, 10, 16)
    c0 = solver.net.params["center_loss"][0].data.astype(np.float64).copy()
    solver.net.blobs["ip1"].data[...] = x
    solver.net.blobs["label"].data[...] = label
    solver.step(1)
    _, _, delta = fork_center_loss(x.astype(np.float64), label, c0, 0.01)
    expected = c0 - 0.5 * 1 * (delta + 0.001 * 2 * c0)
    np.testing.assert_allclose(solver.net.params["center_loss"][0].data, expected, rtol=1e-4, atol=1e-6)


def test_center_loss_untranslatable_fields_write_nothing(tmp_path):
    text = CAFFE_FACE.replace("num_output: 10", "num_output: 10\n    margin: 5")
    (tmp_path / "face.prototxt").write_text(text)
    proc = subprocess.run([CLI, "migrate", "face.prototxt", "-o", "new.prototxt"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "center_loss_param { margin }" in proc.stderr and "nothing written" in proc.stderr
    assert not (tmp_path / "new.prototxt").exists()


# ---------------------------------------------------------------------------
# HED (--hed): six unnamed class-balanced losses
# ---------------------------------------------------------------------------

HED_TOPS = ["dsn1_loss", "dsn2_loss", "dsn3_loss", "dsn4_loss", "dsn5_loss", "fuse_loss"]


def hed_net():
    scores = {f"score{i}": (2, 1, 5, 5) for i in range(6)}
    body = "".join(
        f'layer {{ type: "SigmoidCrossEntropyLoss" bottom: "score{i}" bottom: "label" top: "{top}" '
        f'loss_weight: 1 }}\n' for i, top in enumerate(HED_TOPS))
    return inputs(**scores, label=(2, 1, 5, 5)) + body


def hed_balanced(x, t, top_diff=1.0):
    """s9xie/hed's SigmoidCrossEntropyLoss: per image, positives weighted by
    |Y-|/|Y|, negatives by |Y+|/|Y|; the sum divided by N; the gradient is
    the weight times (sigmoid(x) - t), over N."""
    N = x.shape[0]
    loss, grad = 0.0, np.zeros_like(x)
    for i in range(N):
        xi, ti = x[i].ravel(), t[i].ravel()
        pos, neg = ti.sum(), (1 - ti).sum()
        w = np.where(ti == 1, neg / (pos + neg), pos / (pos + neg))
        logp = -np.logaddexp(0, -xi)
        log1mp = -np.logaddexp(0, xi)
        loss -= (w * (ti * logp + (1 - ti) * log1mp)).sum()
        grad[i] = (w * (1 / (1 + np.exp(-xi)) - ti)).reshape(x[i].shape) * top_diff / N
    return loss / N, grad


def test_hed_six_unnamed_losses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = hed_net()
    assert migrate_text(text).text == text          # without --hed: native, left alone
    result = migrate(text, hed=True)
    assert result.text.count('layer: "WeightedSigmoidCrossEntropyLoss"') == 6
    assert result.text.count('param_str: "{balance: auto}"') == 6
    assert [c.layer for c in result.changes][0] == "unnamed layer (top 'dsn1_loss')"
    n = net(result.text)
    label = (RNG.rand(2, 1, 5, 5) < 0.2).astype(np.float32)
    xs = [RNG.randn(2, 1, 5, 5).astype(np.float32) * 2 for _ in range(6)]
    n.blobs["label"].data[...] = label
    for i, x in enumerate(xs):
        n.blobs[f"score{i}"].data[...] = x
    n.forward()
    n.backward()
    for i, top in enumerate(HED_TOPS):
        loss, grad = hed_balanced(xs[i].astype(np.float64), label.astype(np.float64))
        assert float(n.blobs[top].data.flat[0]) == pytest.approx(loss, rel=1e-5)
        np.testing.assert_allclose(n.blobs[f"score{i}"].diff, grad, rtol=1e-4, atol=1e-7)
    # a NaN in one of six losses of one class: the error says which
    n.blobs["score2"].data[0, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"WeightedSigmoidCrossEntropyLoss: .*non-finite.*"
                                         r"\[unnamed layer, top 'dsn3_loss'\]"):
        n.forward()


def test_named_layer_in_errors_and_setup_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = inputs(pred=(4, 3), target=(4, 3)) + (
        'layer { name: "loss_bbox" type: "Python" bottom: "pred" bottom: "target" top: "loss" '
        'python_param { module: "caffe_losses" layer: "SmoothL1Loss" param_str: "{sigma: 0}" } loss_weight: 1 }\n')
    with pytest.raises(ValueError, match=r"SmoothL1Loss: 'sigma' must be > 0\. Received: sigma=0 "
                                         r"\[layer 'loss_bbox'\]"):
        net(text)


# ---------------------------------------------------------------------------
# Weights: caffe-face and fast-rcnn models (their layers carry the forks' fields)
# ---------------------------------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_fork_field(layer, number, payload):
    """``layer`` plus a length-delimited field BVLC's caffe.proto lacks (encoded by hand)."""
    raw = layer.SerializeToString() + _varint(number << 3 | 2) + _varint(len(payload)) + payload
    out = caffe_pb2.LayerParameter()
    out.ParseFromString(raw)
    return out


def blob(array):
    b = caffe_pb2.BlobProto()
    b.shape.dim.extend(array.shape)
    b.data.extend(array.astype(np.float32).ravel().tolist())
    return b


def test_caffe_face_model_loads_into_the_migrated_net(tmp_path):
    (tmp_path / "face.prototxt").write_text(
        inputs(data=(16, 5), label=(16,))
        + 'layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 2 } }\n'
        + CAFFE_FACE)
    w, b, centers = RNG.randn(2, 5), RNG.randn(2), RNG.randn(10, 2)
    model = caffe_pb2.NetParameter()
    ip1 = model.layer.add(name="ip1", type="InnerProduct", bottom=["data"], top=["ip1"])
    ip1.blobs.extend([blob(w), blob(b)])
    face = caffe_pb2.LayerParameter(name="center_loss", type="CenterLoss", bottom=["ip1", "label"],
                                    top=["center_loss"])
    face.blobs.extend([blob(centers)])
    # caffe-face's caffe.proto: center_loss_param = 147 { num_output = 1; center_filler = 2 { type = 1 } }
    filler = b"\x0a\x06xavier"
    face = with_fork_field(face, 147, b"\x08\x0a" + b"\x12" + _varint(len(filler)) + filler)
    model.layer.append(face)
    (tmp_path / "face.caffemodel").write_bytes(model.SerializeToString())
    proc = subprocess.run([CLI, "migrate", "face.prototxt", "-o", "new.prototxt", "--weights", "face.caffemodel",
                           "--weights-out", "new.caffemodel"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "weights: layer 'ip1': copied, 2 blob(s) (2x5, 2), layer unchanged" in proc.stdout
    assert "weights: layer 'center_loss': copied, the centers (10x2)" in proc.stdout
    assert "wrote new.caffemodel" in proc.stdout
    for weights in ("face.caffemodel", "new.caffemodel"):      # both load in BVLC Caffe
        n = caffe.Net(str(tmp_path / "new.prototxt"), str(tmp_path / weights), caffe.TRAIN)
        np.testing.assert_allclose(n.params["center_loss"][0].data, centers, rtol=1e-6)
        np.testing.assert_allclose(n.params["ip1"][0].data, w, rtol=1e-6)
    clean = caffe_pb2.NetParameter()
    clean.ParseFromString((tmp_path / "new.caffemodel").read_bytes())
    stored = [layer for layer in clean.layer if layer.name == "center_loss"][0]
    assert stored.type == "Python" and stored.python_param.layer == "CenterLoss"


def test_fast_rcnn_model_loads_into_the_migrated_net(tmp_path):
    (tmp_path / "frcnn.prototxt").write_text(
        inputs(fc7=(4, 6), bbox_targets=(4, 8), bbox_inside_weights=(4, 8), bbox_outside_weights=(4, 8))
        + 'layer { name: "bbox_pred" type: "InnerProduct" bottom: "fc7" top: "bbox_pred" '
          'inner_product_param { num_output: 8 } }\n'
        + 'layer { name: "loss_bbox" type: "SmoothL1Loss" bottom: "bbox_pred" bottom: "bbox_targets" '
          'bottom: "bbox_inside_weights" bottom: "bbox_outside_weights" top: "loss_bbox" loss_weight: 1 '
          'smooth_l1_loss_param { sigma: 1.0 } }\n')
    w, b = RNG.randn(8, 6), RNG.randn(8)
    model = caffe_pb2.NetParameter()
    pred = model.layer.add(name="bbox_pred", type="InnerProduct")
    pred.blobs.extend([blob(w), blob(b)])
    # fast-rcnn's caffe.proto: roi_pooling_param = 8266711, smooth_l1_loss_param = 8266712 { sigma = 1 }
    model.layer.append(with_fork_field(caffe_pb2.LayerParameter(name="roi_pool5", type="ROIPooling"),
                                       8266711, b"\x08\x07\x10\x07"))
    model.layer.append(with_fork_field(caffe_pb2.LayerParameter(name="loss_bbox", type="SmoothL1Loss"),
                                       8266712, b"\x0d\x00\x00\x80\x3f"))
    (tmp_path / "frcnn.caffemodel").write_bytes(model.SerializeToString())
    proc = subprocess.run([CLI, "migrate", "frcnn.prototxt", "-o", "new.prototxt", "--weights", "frcnn.caffemodel"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "weights: layer 'bbox_pred': copied, 2 blob(s) (8x6, 8), layer unchanged" in proc.stdout
    assert "--weights-out NEW.caffemodel writes a clean copy" in proc.stdout
    n = caffe.Net(str(tmp_path / "new.prototxt"), str(tmp_path / "frcnn.caffemodel"), caffe.TEST)
    np.testing.assert_allclose(n.params["bbox_pred"][0].data, w, rtol=1e-6)


def test_weights_that_do_not_fit_write_nothing(tmp_path):
    (tmp_path / "face.prototxt").write_text(inputs(ip1=(4, 2), label=(4,)) + CAFFE_FACE)
    model = caffe_pb2.NetParameter()
    model.layer.add(name="center_loss", type="CenterLoss").blobs.extend([blob(RNG.randn(7, 2))])
    (tmp_path / "m.caffemodel").write_bytes(model.SerializeToString())
    proc = subprocess.run([CLI, "migrate", "face.prototxt", "-o", "new.prototxt", "--weights", "m.caffemodel"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1 and "7x2" in proc.stderr and "num_classes" in proc.stderr
    assert not (tmp_path / "new.prototxt").exists()


# ---------------------------------------------------------------------------
# The command: its promises about files, and check's pointer to it
# ---------------------------------------------------------------------------

def test_cli_never_writes_over_its_input(tmp_path):
    (tmp_path / "face.prototxt").write_text(inputs(ip1=(4, 2), label=(4,)) + CAFFE_FACE)
    before = (tmp_path / "face.prototxt").read_bytes()
    for out in ("face.prototxt", "./face.prototxt", str(tmp_path / "face.prototxt")):
        proc = subprocess.run([CLI, "migrate", "face.prototxt", "-o", out, "--force"], cwd=tmp_path,
                              capture_output=True, text=True)
        assert proc.returncode == 2 and "refusing to write the net over an input" in proc.stderr
    assert (tmp_path / "face.prototxt").read_bytes() == before
    proc = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "tools", "migrate_net.py"),
                           "face.prototxt", "-o", "new.prototxt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "layer 'center_loss': type CenterLoss -> Python caffe_losses.CenterLoss" in proc.stdout
    proc = subprocess.run([CLI, "migrate", "face.prototxt", "-o", "new.prototxt"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "exists (use --force" in proc.stderr
    proc = subprocess.run([CLI, "migrate", "new.prototxt", "-o", "again.prototxt"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "nothing to migrate" in proc.stdout
    assert (tmp_path / "again.prototxt").read_bytes() == (tmp_path / "new.prototxt").read_bytes()


def test_cli_outputs_are_guarded_as_every_tool_s(tmp_path):
    # safety.check_output / output_file: a folder is refused before anything
    # is written (even with --force), a missing folder is created
    (tmp_path / "face.prototxt").write_text(inputs(ip1=(4, 2), label=(4,)) + CAFFE_FACE)
    (tmp_path / "out").mkdir()
    for extra in ([], ["--force"]):
        proc = subprocess.run([CLI, "migrate", "face.prototxt", "-o", "out"] + extra, cwd=tmp_path,
                              capture_output=True, text=True)
        assert proc.returncode == 2 and "-o out is a folder" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path / "out")
    proc = subprocess.run([CLI, "migrate", "face.prototxt", "-o", "new/face.prototxt"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmp_path / "new") == ["face.prototxt"]


def test_check_names_the_fork_field_and_points_to_migrate(tmp_path):
    (tmp_path / "face.prototxt").write_text(inputs(ip1=(4, 2), label=(4,)) + CAFFE_FACE)
    proc = subprocess.run([CLI, "check", "face.prototxt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1      # errors found (the net is read without the field)
    assert ("ERROR [fork-field] layer 'center_loss': 'center_loss_param' is not in BVLC Caffe's caffe.proto "
            "(it comes from caffe-face's CenterLoss)") in proc.stdout
    assert "caffe-losses migrate face.prototxt -o face_migrated.prototxt" in proc.stdout


def test_untranslated_fork_layers_need_keep_unknown():
    text = ('layer { name: "roi_pool5" type: "ROIPooling" bottom: "conv5" bottom: "rois" top: "pool5" '
            'roi_pooling_param { pooled_w: 7 pooled_h: 7 } }\n'
            'layer { name: "loss_bbox" type: "SmoothL1Loss" bottom: "a" bottom: "b" top: "l" }\n')
    result = migrate_text(text)
    assert result.problems and "roi_pooling_param" in result.problems[0]
    assert "type 'ROIPooling' is not a layer type of this Caffe" in result.problems[1]
    result = migrate_text(text, keep_unknown=True)
    assert not result.problems and result.notes and 'layer: "SmoothL1Loss"' in result.text
    assert "roi_pooling_param { pooled_w: 7 pooled_h: 7 }" in result.text
    with pytest.raises(MigrationError, match="not a prototxt"):
        migrate_text("layer { name: ")
