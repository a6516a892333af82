"""An H with an all-zero row (a class weighted 0) is valid, as in Caffe's InfogainLoss (issue 18).

Each comparison runs the native net and its migration (or a hand-written
net with the Constant layer) in the same process, on the same inputs.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from caffe_losses.files.hmatrix import save_h
from caffe_losses.nets.lint import lint_file
from test_migrate import SCORES, h_from_fields, inputs, migrate, net

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
RNG = np.random.RandomState(18)


def zero_row_h(C, kind):
    if kind == "diagonal":             # class weights with w_2 = 0: class 2 out of the loss
        return np.diag([1.0, 2.0, 0.0, 0.5][:C])
    H = RNG.uniform(0.1, 2.0, (C, C))   # a full H with class 0's row all zero
    H[0] = 0
    return H


def _run(text, data):
    n = net(text)
    for k, v in data.items():
        n.blobs[k].data[...] = v.reshape(n.blobs[k].data.shape)
    n.forward()
    n.backward()
    return float(n.blobs["loss"].data.flat[0]), n.blobs["scores"].diff.copy()


CASES = [
    # (native loss fields, scores shape, label shape)
    ("", (8, 4), (8,)),
    ("loss_param { normalization: FULL ignore_label: 1 }", (8, 4), (8,)),
    ("loss_param { normalization: VALID ignore_label: 3 }", (2, 4, 3, 3), (2, 1, 3, 3)),
    ("loss_param { normalization: BATCH_SIZE }", (2, 4, 3, 3), (2, 3, 3)),
]


@pytest.mark.parametrize("kind", ["diagonal", "full"])
@pytest.mark.parametrize("fields, shape, label_shape", CASES)
@pytest.mark.parametrize("h_from", ["source", "bottom"])
def test_native_infogain_with_a_zero_row_migrates_with_its_loss_and_gradient(
        kind, fields, shape, label_shape, h_from, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    C = shape[1]
    H = zero_row_h(C, kind)
    save_h("H.binaryproto", H)
    shapes, source, h_bottom = h_from_fields(shape, label_shape, h_from)
    text = inputs(False, **shapes) + SCORES + (
        'layer { name: "ip" type: "InnerProduct" bottom: "scores" top: "unused" '
        'inner_product_param { num_output: 2 } }\n'
        f'layer {{\n  name: "loss"\n  type: "InfogainLoss"\n  bottom: "scores"\n  bottom: "label"{h_bottom}\n'
        f'  top: "loss"{source}\n  {fields}\n}}\n')
    result = migrate(text)
    assert "SoftmaxWithInfogainLoss" in result.text
    label = RNG.randint(0, C, size=label_shape).astype(np.float32)
    label.flat[:3] = [2, 0, 2]                     # the zero-weighted classes do occur
    data = {"raw": (RNG.randn(*shape) * 3).astype(np.float32), "label": label}
    if h_from == "bottom":
        data["H"] = H.astype(np.float32)
    native, g_native = _run(text, data)
    ours, g_ours = _run(result.text, data)
    assert native > 0 and np.isfinite(native)
    assert ours == pytest.approx(native, rel=1e-5)
    np.testing.assert_allclose(g_ours, g_native, rtol=1e-4, atol=1e-7)
    # the positions of a zero-weighted class get no gradient, in both
    zero_class = 2 if kind == "diagonal" else 0
    y = label.reshape(shape[0], -1)
    g = g_ours.reshape(shape[0], C, -1)
    assert (y == zero_class).any()
    assert np.all(g.transpose(0, 2, 1)[y == zero_class] == 0)
    # check names it as a note, not an error
    path = tmp_path / "migrated.prototxt"
    path.write_text(result.text)
    findings = lint_file(str(path))
    assert not [f for _, f in findings if f.severity == "error"]
    if h_from == "source":
        notes = [str(f) for _, f in findings if f.severity == "note"]
        assert len(notes) == 1 and f"all-zero rows for class(es) [{zero_class}]" in notes[0], notes


def test_constant_h_with_a_zero_row_and_the_classic_form(tmp_path, monkeypatch):
    """A Softmax before the native layer (the pre-1.0 pattern) migrates to the classic form;
    H read by a Constant as the third bottom of SoftmaxWithInfogainLoss: both against native."""
    monkeypatch.chdir(tmp_path)
    C, shape = 4, (6, 4)
    H = zero_row_h(C, "full")
    np.save("H.npy", H)
    save_h("H.binaryproto", H)
    data = {"raw": RNG.randn(*shape).astype(np.float32) * 2,
            "label": np.array([0, 1, 0, 3, 2, 0], np.float32)}
    native_text = inputs(False, raw=shape, label=(6,)) + SCORES + (
        'layer { name: "loss" type: "InfogainLoss" bottom: "scores" bottom: "label" top: "loss" '
        'infogain_loss_param { source: "H.binaryproto" } }\n')
    constant_text = inputs(False, raw=shape, label=(6,)) + SCORES + (
        'layer { name: "H" type: "Python" top: "H" python_param { module: "caffe_losses" '
        'layer: "Constant" param_str: "{source: H.npy}" } }\n'
        'layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" bottom: "H" top: "loss" '
        'python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" } loss_weight: 1 }\n')
    native, g_native = _run(native_text, data)
    ours, g_ours = _run(constant_text, data)
    assert ours == pytest.approx(native, rel=1e-5)
    np.testing.assert_allclose(g_ours, g_native, rtol=1e-4, atol=1e-7)

    # pre-1.0: Softmax, then InfogainLoss on probabilities (the native layer applies a
    # second softmax; ours, migrated, takes the probabilities as they are)
    classic = inputs(False, raw=shape, label=(6,)) + SCORES + (
        'layer { name: "prob" type: "Softmax" bottom: "scores" top: "prob" }\n'
        'layer { name: "loss" type: "InfogainLoss" bottom: "prob" bottom: "label" top: "loss" '
        'infogain_loss_param { source: "H.binaryproto" } }\n')
    result = migrate(classic)
    assert 'layer: "InfogainLoss"' in result.text
    ours_classic, g_classic = _run(result.text, data)
    # the classic form composed with the Softmax gives the fused loss and gradient
    assert ours_classic == pytest.approx(native, rel=1e-5)
    np.testing.assert_allclose(g_classic, g_native, rtol=1e-4, atol=1e-6)


def test_make_h_writes_a_users_zero_row_and_refuses_its_own(tmp_path):
    np.savetxt(tmp_path / "w0.csv", [[1, 0, 0], [0, 0, 0], [0, 0, 2]], delimiter=",")
    proc = subprocess.run([CLI, "make-h", "--matrix", "w0.csv", "-o", "H.binaryproto"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "wrote H.binaryproto" in proc.stdout
    assert "note: H has all-zero rows for class(es) [1]" in proc.stdout
    assert (tmp_path / "H.binaryproto").exists()
    shown = subprocess.run([CLI, "make-h", "--show", "H.binaryproto"], cwd=tmp_path, capture_output=True,
                           text=True)
    assert shown.returncode == 0 and "note: H has all-zero rows for class(es) [1]" in shown.stdout
    # a zero that float32 makes of 1e-50 is the tool's doing: refused, nothing written
    np.save(tmp_path / "tiny.npy", np.array([[1, 0], [0, 1e-50]]))
    for out in ("T.binaryproto", "T.npy"):
        proc = subprocess.run([CLI, "make-h", "--matrix", "tiny.npy", "-o", out], cwd=tmp_path,
                              capture_output=True, text=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "class(es) [1] whose values are all 0 in float32" in proc.stderr, proc.stderr
        assert not (tmp_path / out).exists()


def test_a_layer_reading_a_row_that_underflows_warns_and_runs_as_caffe(tmp_path, monkeypatch):
    """A .npy row of 1e-50 is 0 in float32, as Caffe would read it: warned of, not refused."""
    monkeypatch.chdir(tmp_path)
    H = np.eye(4)
    H[2, 2] = 1e-50
    np.save("Hu.npy", H)
    text = inputs(False, raw=(4, 4), label=(4,)) + SCORES + (
        'layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" top: "loss" '
        'python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" '
        'param_str: "{source: Hu.npy}" } loss_weight: 1 }\n')
    with pytest.warns(UserWarning, match=r"class\(es\) \[2\] whose values are all 0 in float32"):
        n = net(text)
    n.blobs["raw"].data[...] = RNG.randn(4, 4)
    n.blobs["label"].data[...] = [2, 2, 2, 2]
    n.forward()
    n.backward()
    assert float(n.blobs["loss"].data.flat[0]) == 0.0
    assert not n.blobs["scores"].diff.any()
