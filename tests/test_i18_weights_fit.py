"""Weights and solver states that do not fit the net are refused before Caffe sees them (issue 18, s.3).

Every command runs in its own process (Caffe aborts the process on a model
that does not fit: a refusal must come first, with the layer and both
shapes, and nothing written).
"""

import os
import subprocess
import sys
import textwrap

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from test_migrate import CAFFE_FACE, blob, inputs

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
RNG = np.random.RandomState(183)


def cli(tmp_path, *args):
    env = dict(os.environ, GLOG_minloglevel="2")
    proc = subprocess.run([CLI, *map(str, args)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# ---------------------------------------------------------------------------
# migrate --weights
# ---------------------------------------------------------------------------

# caffe-face's LeNet++ tail as users write it: 2-D features, 10 centers
FACE = inputs(data=(16, 5), label=(16,)) + (
    'layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 2 } }\n'
    + CAFFE_FACE)


def face_model(centers=(10, 2), ip1=(2, 5), name="ip1"):
    model = caffe_pb2.NetParameter()
    layer = model.layer.add(name=name, type="InnerProduct", bottom=["data"], top=["ip1"])
    layer.blobs.extend([blob(RNG.randn(*ip1)), blob(RNG.randn(ip1[0]))])
    model.layer.add(name="center_loss", type="CenterLoss").blobs.extend([blob(RNG.randn(*centers))])
    return model.SerializeToString()


def _h_binaryproto(path):
    from caffe_losses.files.hmatrix import save_h
    save_h(str(path), np.eye(10))
    return path.read_bytes()


OTHER_NET = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
             'layer { name: "conv_a" type: "InnerProduct" bottom: "x" top: "a" inner_product_param { num_output: 4 } }\n')


def _other_model(path):
    (path.parent / "other.prototxt").write_text(OTHER_NET)
    caffe.Net(str(path.parent / "other.prototxt"), caffe.TEST).save(str(path))
    return path.read_bytes()


def _other_model_h5(path):
    (path.parent / "other.prototxt").write_text(OTHER_NET)
    caffe.Net(str(path.parent / "other.prototxt"), caffe.TEST).save_hdf5(str(path))
    return None


@pytest.mark.parametrize("name, make, status, pattern", [
    ("m.caffemodel", lambda p: p.write_bytes(face_model(centers=(10, 3))), 1,
     r"layer 'center_loss' blob 0 has shape \(10, 3\) in m\.caffemodel but \(10, 2\) in the model"),
    ("m.caffemodel", lambda p: p.write_bytes(face_model(ip1=(2, 7))), 1,
     r"layer 'ip1' blob 0 has shape \(2, 7\) in m\.caffemodel but \(2, 5\) in the model"),
    ("m.caffemodel", _other_model, 1,
     r"none of its layers with weights \('conv_a'\) is a layer of this net.*another net's"),
    ("m.caffemodel", lambda p: p.write_bytes(face_model(name="renamed_ip1", centers=(10, 3))), 1,
     r"layer 'center_loss' blob 0 has shape \(10, 3\)"),
    ("H.binaryproto", _h_binaryproto, 2, r"--weights H\.binaryproto: is a single blob \(\.binaryproto: a mean "
                                         r"image or an H matrix\?\), not a net's weights"),
    ("empty.caffemodel", lambda p: p.write_bytes(b""), 2, r"--weights empty\.caffemodel: the file is empty"),
    ("m.caffemodel.h5", _other_model_h5, 1, r"none of its layers with weights \('conv_a'\).*another net's"),
])
def test_migrate_refuses_a_model_that_does_not_fit_and_writes_nothing(tmp_path, name, make, status, pattern):
    import re
    (tmp_path / "face.prototxt").write_text(FACE)
    make(tmp_path / name)
    before = sorted(os.listdir(tmp_path))
    proc = cli(tmp_path, "migrate", "face.prototxt", "-o", "new.prototxt", "--weights", name,
               "--weights-out", "new.caffemodel")
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert re.search(pattern, proc.stderr), proc.stderr
    assert "copied" not in proc.stdout and "loads" not in proc.stdout, proc.stdout
    assert sorted(os.listdir(tmp_path)) == before        # nothing written


def test_migrate_accepts_a_fitting_model_binary_and_hdf5(tmp_path):
    (tmp_path / "face.prototxt").write_text(FACE)
    (tmp_path / "m.caffemodel").write_bytes(face_model())
    proc = cli(tmp_path, "migrate", "face.prototxt", "-o", "new.prototxt", "--weights", "m.caffemodel")
    assert proc.returncode == 0, proc.stderr
    assert "weights: layer 'center_loss': copied, the centers (10x2)" in proc.stdout
    assert "weights: m.caffemodel loads into new.prototxt as it is" in proc.stdout
    n = caffe.Net(str(tmp_path / "new.prototxt"), str(tmp_path / "m.caffemodel"), caffe.TRAIN)
    n.save_hdf5(str(tmp_path / "m.caffemodel.h5"))
    proc = cli(tmp_path, "migrate", "face.prototxt", "-o", "new2.prototxt", "--weights", "m.caffemodel.h5")
    assert proc.returncode == 0, proc.stderr
    assert "weights: layer 'center_loss': copied" in proc.stdout


@pytest.mark.parametrize("change, reason", [
    # a data source that is not there (checked first, as train does)
    ((inputs(data=(16, 5), label=(16,)), 'layer { name: "d" type: "HDF5Data" top: "data" top: "label" '
      'hdf5_data_param { source: "missing.txt" batch_size: 16 } }\n'), "missing.txt"),
    # a net Caffe aborts on while building it: its own message, from the child process
    (('layer { name: "ip1" type: "InnerProduct" bottom: "data"', 'layer { name: "extra" type: "InnerProduct" '
      'bottom: "nope" top: "extra" inner_product_param { num_output: 1 } }\n'
      'layer { name: "ip1" type: "InnerProduct" bottom: "data"'), "Unknown bottom blob 'nope'"),
])
def test_migrate_says_when_the_net_cannot_be_built_to_compare(change, reason, tmp_path):
    (tmp_path / "face.prototxt").write_text(FACE.replace(*change))
    (tmp_path / "m.caffemodel").write_bytes(face_model())
    proc = cli(tmp_path, "migrate", "face.prototxt", "-o", "new.prototxt", "--weights", "m.caffemodel")
    assert proc.returncode == 0, proc.stderr
    assert "compared with the migrated layers only" in proc.stdout and reason in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------
# train --snapshot / --weights, binary and HDF5
# ---------------------------------------------------------------------------

NET = textwrap.dedent("""\
    layer { name: "x" type: "DummyData" top: "x" top: "y" dummy_data_param {
      shape { dim: 8 dim: 3 } shape { dim: 8 dim: 2 } data_filler { type: "gaussian" std: 1 } } }
    layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
      inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
    layer { name: "loss" type: "Python" bottom: "fc" bottom: "y" top: "loss"
      python_param { module: "caffe_losses" layer: "SmoothL1Loss" } loss_weight: 1 }
    """)


def _solver(path, net, prefix, fmt="BINARYPROTO"):
    path.write_text(f'net: "{net}"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 3\nsnapshot_prefix: "{prefix}"\n'
                    f'random_seed: 1\nsolver_mode: CPU\nsnapshot_format: {fmt}\n')


def snapshot(tmp_path, net_text, fmt):
    """Trains ``net_text`` one step in a child process and snapshots: (state, weights) file names."""
    (tmp_path / "orig.prototxt").write_text(net_text)
    _solver(tmp_path / "orig_solver.prototxt", "orig.prototxt", "orig", fmt)
    ext = ".h5" if fmt == "HDF5" else ""
    code = ("import caffe; caffe.set_mode_cpu(); s = caffe.get_solver('orig_solver.prototxt'); s.step(1); "
            "s.snapshot()")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True,
                   env=dict(os.environ, GLOG_minloglevel="2"))
    return f"orig_iter_1.solverstate{ext}", f"orig_iter_1.caffemodel{ext}"


def train(tmp_path, net_text, *args):
    (tmp_path / "net.prototxt").write_text(net_text)
    _solver(tmp_path / "solver.prototxt", "net.prototxt", "snap")
    return cli(tmp_path, "train", "solver.prototxt", "--no-progress", "--no-curve", *args)


RENAMED = NET.replace('name: "fc"', 'name: "fc_renamed"')
WIDER = NET.replace("dim: 8 dim: 3", "dim: 8 dim: 4")


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_snapshot_of_a_net_whose_layers_were_renamed_is_refused(fmt, tmp_path):
    state, _ = snapshot(tmp_path, NET, fmt)
    proc = train(tmp_path, RENAMED, "--snapshot", state)
    assert proc.returncode != 0
    assert f"--snapshot {state}: the net's learnable layer(s) 'fc_renamed' get nothing from it" in proc.stderr
    assert "renamed since the snapshot?" in proc.stderr
    assert not any(n.startswith("snap_") for n in os.listdir(tmp_path))


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_snapshot_that_fits_resumes(fmt, tmp_path):
    state, _ = snapshot(tmp_path, NET, fmt)
    proc = train(tmp_path, NET, "--snapshot", state)
    assert proc.returncode == 0, proc.stderr
    assert "trained to iteration 3" in proc.stdout


def test_hdf5_state_and_weights_of_another_net_are_refused_not_aborted(tmp_path):
    state, weights = snapshot(tmp_path, WIDER, "HDF5")
    proc = train(tmp_path, NET, "--weights", weights)
    assert proc.returncode != 0
    assert f"--weights: layer 'fc' blob 0 has shape (2, 4) in {weights} but (2, 3) in the model" in proc.stderr
    proc = train(tmp_path, NET, "--snapshot", state)
    assert proc.returncode != 0
    assert f"layer 'fc' blob 0 has shape (2, 4) in {weights} but (2, 3) in the model" in proc.stderr
    # names that match nothing: another net's .caffemodel.h5
    state, weights = snapshot(tmp_path, RENAMED, "HDF5")
    proc = train(tmp_path, NET, "--weights", weights)
    assert proc.returncode != 0
    assert "none of its layers with weights ('fc_renamed')" in proc.stderr


def test_hdf5_files_of_the_wrong_kind_are_refused(tmp_path):
    state, weights = snapshot(tmp_path, NET, "HDF5")
    proc = train(tmp_path, NET, "--weights", state)
    assert proc.returncode != 0 and "is a solver state (.solverstate.h5), not weights" in proc.stderr
    proc = train(tmp_path, NET, "--snapshot", weights)
    assert proc.returncode != 0 and "is a .caffemodel.h5 (weights), not a solver state" in proc.stderr
    import h5py
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["label"] = np.zeros(3)
    proc = train(tmp_path, NET, "--weights", "plain.h5")
    assert proc.returncode != 0 and "an HDF5 file without Caffe's 'data' group" in proc.stderr
    proc = train(tmp_path, NET, "--snapshot", "plain.h5")
    assert proc.returncode != 0 and "not a .solverstate.h5" in proc.stderr
    # an HDF5 state whose history has another shape (another net), weights file fitting
    with h5py.File(tmp_path / state, "a") as f:
        del f["history/0"]
        f["history/0"] = np.zeros((5, 5), np.float32)
    proc = train(tmp_path, NET, "--snapshot", state)
    assert proc.returncode != 0 and "history blob 0 has shape (5, 5)" in proc.stderr


def test_hdf5_weights_that_fit_are_copied(tmp_path):
    _, weights = snapshot(tmp_path, NET, "HDF5")
    proc = train(tmp_path, NET, "--weights", weights)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------
# net-surgery --weights
# ---------------------------------------------------------------------------

SURGERY_NET = textwrap.dedent("""\
    layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 5 } } }
    layer { name: "hidden" type: "InnerProduct" bottom: "data" top: "h" inner_product_param { num_output: 5 } }
    layer { name: "pred" type: "InnerProduct" bottom: "h" top: "pred"
            param { lr_mult: 0 } inner_product_param { num_output: 1 bias_term: false } }
    """)


def test_net_surgery_with_another_nets_model_is_refused(tmp_path):
    (tmp_path / "m.prototxt").write_text(SURGERY_NET)
    _other_model(tmp_path / "other.caffemodel")
    proc = cli(tmp_path, "net-surgery", "--model", "m.prototxt", "--layer", "pred", "--values", "0:5",
               "--output", "w.caffemodel", "--weights", "other.caffemodel")
    assert proc.returncode == 2
    assert "none of its layers with weights ('conv_a')" in proc.stderr and "copied" not in proc.stdout
    assert not (tmp_path / "w.caffemodel").exists()


def test_net_surgery_says_which_layers_were_copied(tmp_path):
    (tmp_path / "m.prototxt").write_text(SURGERY_NET)
    donor = SURGERY_NET.replace('name: "hidden"', 'name: "hidden2"')
    (tmp_path / "donor.prototxt").write_text(donor)
    caffe.Net(str(tmp_path / "donor.prototxt"), caffe.TEST).save(str(tmp_path / "donor.caffemodel"))
    proc = cli(tmp_path, "net-surgery", "--model", "m.prototxt", "--layer", "pred", "--values", "0:5",
               "--output", "w.caffemodel", "--weights", "donor.caffemodel")
    assert proc.returncode == 0, proc.stderr
    assert ("other layers: none copied from donor.caffemodel (it holds only 'pred'); not in "
            "donor.caffemodel, left as the prototxt initialises them: 'hidden'") in proc.stdout
    (tmp_path / "m.prototxt").write_text(SURGERY_NET)
    caffe.Net(str(tmp_path / "m.prototxt"), caffe.TEST).save_hdf5(str(tmp_path / "same.caffemodel.h5"))
    proc = cli(tmp_path, "net-surgery", "--model", "m.prototxt", "--layer", "pred", "--values", "0:5",
               "--output", "w2.caffemodel", "--weights", "same.caffemodel.h5")
    assert proc.returncode == 0, proc.stderr
    assert "other layers: 1 copied from same.caffemodel.h5 ('hidden')" in proc.stdout
