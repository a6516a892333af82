"""tools/make_infogain_h.py (caffe-losses make-h) and caffe_losses.files.hmatrix: files Caffe reads."""

import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from caffe_losses.files import hmatrix
from caffe_losses.cli import main as cli_main
from caffe_losses.losses.common import log_softmax
from caffe_losses.glue.testing import net_from_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_h(*argv):
    return cli_main(["make-h", *map(str, argv)])


def read(path):
    return hmatrix.load_blob(str(path))


# ---------------------------------------------------------------------------
# Files: the native layer reads what the tool writes
# ---------------------------------------------------------------------------

def test_native_infogain_reads_the_tools_binaryproto(tmp_path, capsys):
    path = tmp_path / "H.binaryproto"
    assert make_h("--counts", 30, 10, 5, 5, "-o", path) == 0
    assert "wrote" in capsys.readouterr().out
    assert read(path).shape == (1, 1, 4, 4)
    H = read(path).reshape(4, 4)
    text = textwrap.dedent(f"""
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 5 dim: 4 }} }} }}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 5 }} }} }}
        layer {{ name: "native" type: "InfogainLoss" bottom: "x" bottom: "y" top: "native"
                infogain_loss_param {{ source: "{path}" }} }}
        layer {{ name: "ours" type: "Python" bottom: "x" bottom: "y" top: "ours"
                python_param {{ module: "caffe_losses" layer: "SoftmaxWithInfogainLoss"
                               param_str: "{{source: '{path}'}}" }} loss_weight: 1 }}
    """)
    net = net_from_text(text)
    rng = np.random.RandomState(0)
    x = rng.randn(5, 4).astype(np.float32)
    y = np.array([0, 1, 2, 3, 3], np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = y
    net.forward()
    # diagonal H: loss = sum_i w[y_i] * (-log p_i,y_i) / N
    logp = log_softmax(x.astype(np.float64))
    yi = y.astype(int)
    expected = np.sum(np.diagonal(H)[yi] * -logp[np.arange(5), yi]) / 5
    assert float(net.blobs["native"].data) == pytest.approx(expected, rel=1e-5)
    assert float(net.blobs["ours"].data[0]) == pytest.approx(expected, rel=1e-5)


def test_identity_equals_native_softmax(tmp_path):
    path = tmp_path / "I.binaryproto"
    assert make_h("--identity", 6, "-o", path) == 0
    np.testing.assert_array_equal(read(path).reshape(6, 6), np.eye(6))
    net = net_from_text(textwrap.dedent(f"""
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 4 dim: 6 }} }} }}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 4 }} }} }}
        layer {{ name: "native" type: "InfogainLoss" bottom: "x" bottom: "y" top: "native"
                infogain_loss_param {{ source: "{path}" }} }}
        layer {{ name: "plain" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "plain" }}
    """))
    net.blobs["x"].data[...] = np.random.RandomState(1).randn(4, 6)
    net.blobs["y"].data[...] = [0, 5, 2, 2]
    net.forward()
    assert float(net.blobs["native"].data) == pytest.approx(float(net.blobs["plain"].data), rel=1e-6)


def test_save_and_load_roundtrip_and_legacy_shapes(tmp_path):
    H = np.random.RandomState(2).rand(3, 3)
    M = hmatrix.save_h(str(tmp_path / "H.binaryproto"), H)
    np.testing.assert_allclose(M, H)
    np.testing.assert_allclose(hmatrix.load_h(str(tmp_path / "H.binaryproto"), 3),
                               H.astype(np.float32), rtol=1e-7)
    # a legacy num/channels/height/width blob with double_data (older Caffe tools)
    from caffe.proto import caffe_pb2
    blob = caffe_pb2.BlobProto(num=1, channels=1, height=3, width=3)
    blob.double_data.extend(H.ravel())
    (tmp_path / "legacy.binaryproto").write_bytes(blob.SerializeToString())
    np.testing.assert_array_equal(hmatrix.load_h(str(tmp_path / "legacy.binaryproto")), H)
    # the seed-000 recipe (caffe.io.array_to_blobproto) is the same format
    import caffe.io
    blob = caffe.io.array_to_blobproto(H.astype("f4").reshape(1, 1, 3, 3))
    (tmp_path / "seed.binaryproto").write_bytes(blob.SerializeToString())
    np.testing.assert_array_equal(hmatrix.load_h(str(tmp_path / "seed.binaryproto")), H.astype("f4"))


# ---------------------------------------------------------------------------
# The ways to make H
# ---------------------------------------------------------------------------

def test_counts_inverse_by_hand(tmp_path):
    # counts (100, 10): w ~ (1/100, 1/10); scaled so sum n w / sum n = 1:
    # sum n w = 1 + 1 = 2 per unit scale, N = 110 -> w = (0.55, 5.5)   (hand derivation)
    path = tmp_path / "H.binaryproto"
    assert make_h("--counts", 100, 10, "-o", path) == 0
    np.testing.assert_allclose(read(path).reshape(2, 2), np.diag([0.55, 5.5]), rtol=1e-6)


@pytest.mark.parametrize("weighting,beta,expected", [
    # sqrt-inverse, counts (100, 25): w ~ (1/10, 1/5); sum n w = 10 + 5 = 15, N = 125 -> x 125/15
    ("sqrt-inverse", None, [1 / 10 * 125 / 15, 1 / 5 * 125 / 15]),
    # effective number, beta 0.9: (1 - 0.9) / (1 - 0.9^n); 0.9^100 ~ 2.66e-5, 0.9^25 ~ 0.0718
    ("effective-number", 0.9, None),
])
def test_other_weightings(tmp_path, weighting, beta, expected):
    path = tmp_path / "H.binaryproto"
    extra = ["--beta", beta] if beta is not None else []
    assert make_h("--counts", 100, 25, "--weighting", weighting, *extra, "-o", path) == 0
    w = np.diagonal(read(path).reshape(2, 2))
    if expected is None:
        raw = np.array([0.1 / (1 - 0.9 ** 100), 0.1 / (1 - 0.9 ** 25)])
        expected = raw * 125 / (100 * raw[0] + 25 * raw[1])
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert np.dot([100, 25], w) / 125 == pytest.approx(1, rel=1e-6)   # mean weight over samples


def test_effective_number_limits():
    counts = np.array([500, 50, 5])
    np.testing.assert_allclose(hmatrix.class_weights(counts, weighting="effective-number", beta=0.0),
                               np.ones(3))
    np.testing.assert_allclose(hmatrix.class_weights(counts, weighting="effective-number", beta=1 - 1e-9),
                               hmatrix.class_weights(counts, weighting="inverse"), rtol=1e-5)


@pytest.mark.parametrize("fmt", ["txt", "list", "npy", "h5"])
def test_labels_from_files(tmp_path, fmt):
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1 + [255] * 4, np.float32)
    path = tmp_path / f"labels.{ 'txt' if fmt in ('txt', 'list') else fmt}"
    if fmt == "txt":
        path.write_text("\n".join(f"{int(v)}" for v in labels) + "\n")
    elif fmt == "list":
        path.write_text("".join(f"img/{i}.jpg {int(v)}\n" for i, v in enumerate(labels)))
    elif fmt == "npy":
        np.save(path, labels)
    else:
        from caffe_losses.data import write_hdf5
        write_hdf5(str(tmp_path), "labels", data=np.zeros((14, 2)), label=labels[:, None])
    out = tmp_path / "H.binaryproto"
    assert make_h("--labels", path, "--ignore-label", 255, "-o", out) == 0
    # counts (6, 3, 1): w ~ (1/6, 1/3, 1) -> x 10/3 = (5/9, 10/9, 10/3)
    np.testing.assert_allclose(np.diagonal(read(out).reshape(3, 3)), [5 / 9, 10 / 9, 10 / 3], rtol=1e-6)


def test_matrix_from_csv_and_npy(tmp_path):
    M = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.0]])
    np.savetxt(tmp_path / "M.csv", M, delimiter=",")
    np.save(tmp_path / "M.npy", M)
    for src in ("M.csv", "M.npy"):
        out = tmp_path / f"{src}.binaryproto"
        assert make_h("--matrix", tmp_path / src, "-o", out) == 0
        np.testing.assert_allclose(read(out).reshape(3, 3), M, rtol=1e-7)


def test_distances_to_similarities_with_class_weights(tmp_path, capsys):
    # seed 001: cat/dog closer than cat/car. D[cat, dog] = 1, D[cat, car] = 4
    D = np.array([[0, 1, 4], [1, 0, 4], [4, 4, 0]], float)
    np.savetxt(tmp_path / "D.csv", D, delimiter=",")
    out = tmp_path / "H.npy"
    assert make_h("--distances", tmp_path / "D.csv", "--temperature", 2, "--counts", 20, 20, 10,
                  "-o", out) == 0
    H = np.load(out)
    S = np.exp(-D / 2)
    w = np.array([1 / 20, 1 / 20, 1 / 10]) * 50 / 3            # mean over samples 1: 50 / (1+1+1)
    np.testing.assert_allclose(H, w[:, None] * S, rtol=1e-6)
    assert H[0, 1] > H[0, 2]          # a cat called a dog costs less than a cat called a car
    assert "exp(-D / 2)" in capsys.readouterr().out


def test_show(tmp_path, capsys):
    path = tmp_path / "H.binaryproto"
    hmatrix.save_h(str(path), np.diag([0.5, 2.0]))
    assert make_h("--show", path) == 0
    out = capsys.readouterr().out
    assert "blob of shape (1, 1, 2, 2)" in out and "diagonal (class weights)" in out and "valid" in out
    # a zero row is valid (a class weighted 0, issue 18): shown with a note
    np.save(tmp_path / "zero.npy", np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert make_h("--show", tmp_path / "zero.npy") == 0
    assert "note: H has all-zero rows for class(es) [1]" in capsys.readouterr().out
    np.save(tmp_path / "bad.npy", np.array([[1.0, 0.0], [0.0, -1.0]]))
    assert make_h("--show", tmp_path / "bad.npy") == 1
    assert "NOT a valid H" in capsys.readouterr().out


@pytest.mark.parametrize("argv,pattern", [
    (["--counts", 10, 0, 5], r"class\(es\) \[1\] have no samples"),
    (["--matrix", "missing.npy"], r"matrix file 'missing\.npy' .*not found"),
    (["--identity", 3, "--weighting", "inverse"], r"--weighting needs class frequencies"),
    ([], r"nothing to make"),
    (["--identity", 3, "--counts", 1, 2], r"the base matrix is 3 x 3 but there are 2 class counts"),
    (["--counts", 10, 5, "--weighting", "effective-number", "--beta", 1], r"'beta' must be in \[0, 1\)"),
])
def test_errors(tmp_path, capsys, monkeypatch, argv, pattern):
    monkeypatch.chdir(tmp_path)
    assert make_h(*argv, "-o", "H.binaryproto") == 2
    err = capsys.readouterr().err
    assert err.startswith("make-h: error:")
    assert re.search(pattern, err), err
    assert not (tmp_path / "H.binaryproto").exists()


def test_refuses_bad_matrices(tmp_path, capsys):
    np.savetxt(tmp_path / "neg.csv", [[1, -1], [0, 1]], delimiter=",")
    np.savetxt(tmp_path / "zero_row.csv", [[1, 0], [0, 0]], delimiter=",")
    np.savetxt(tmp_path / "D.csv", [[1, 2], [2, 0]], delimiter=",")
    assert make_h("--matrix", tmp_path / "neg.csv", "-o", tmp_path / "a.binaryproto") == 2
    assert "negative value -1.0 at H[0, 1]" in capsys.readouterr().err
    # a zero row is the user's (a class weighted 0): written, with a note (issue 18)
    assert make_h("--matrix", tmp_path / "zero_row.csv", "-o", tmp_path / "b.binaryproto") == 0
    assert "note: H has all-zero rows for class(es) [1]" in capsys.readouterr().out
    assert make_h("--distances", tmp_path / "D.csv", "-o", tmp_path / "c.binaryproto") == 2
    assert "zero diagonal" in capsys.readouterr().err
    with open(tmp_path / "p.npy", "wb") as f:
        pickle.dump(np.eye(2), f)
    assert make_h("--matrix", tmp_path / "p.npy", "-o", tmp_path / "d.binaryproto") == 2
    assert "is a pickle" in capsys.readouterr().err


def test_the_script_runs(tmp_path):
    out = tmp_path / "H.binaryproto"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_infogain_h.py"),
                           "--identity", "3", "-o", str(out)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, GLOG_minloglevel="2"))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    np.testing.assert_array_equal(read(out).reshape(3, 3), np.eye(3))
