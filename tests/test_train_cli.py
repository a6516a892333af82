"""`caffe-losses train`: trains, writes the curve and snapshots, saves on Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
import time


CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")

NET = textwrap.dedent("""
    name: "tiny"
    layer { name: "x" type: "DummyData" top: "x" top: "y"
            dummy_data_param { shape { dim: 16 dim: 5 } shape { dim: 16 dim: 2 }
                               data_filler { type: "gaussian" std: 1 }
                               data_filler { type: "constant" value: 0.5 } } }
    layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
            inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
    layer { name: "loss" type: "Python" bottom: "fc" bottom: "y" top: "loss"
            python_param { module: "helper_layers" layer: "HalfSquaredError" }
            loss_weight: 1 }
""")


def write_solver(folder, max_iter):
    (folder / "net.prototxt").write_text(NET)
    (folder / "solver.prototxt").write_text(
        f'net: "net.prototxt"\nbase_lr: 0.05\nlr_policy: "fixed"\nmax_iter: {max_iter}\n'
        f'snapshot_prefix: "snap/tiny"\nrandom_seed: 1\nsolver_mode: CPU\n')
    (folder / "snap").mkdir(exist_ok=True)


def test_train_writes_curve_and_final_snapshot(tmp_path):
    write_solver(tmp_path, 30)
    proc = subprocess.run([CLI, "train", "solver.prototxt"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "30/30 loss" in proc.stderr and "it/s ETA" in proc.stderr
    assert "trained to iteration 30" in proc.stdout
    assert (tmp_path / "training_curve.png").stat().st_size > 5000
    assert (tmp_path / "snap" / "tiny_iter_30.caffemodel").exists()
    assert (tmp_path / "snap" / "tiny_iter_30.solverstate").exists()
    # resume from the snapshot and go on to 40
    proc = subprocess.run([CLI, "train", "solver.prototxt", "--snapshot", "snap/tiny_iter_30.solverstate",
                           "--max-iter", "40", "--no-progress"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained to iteration 40" in proc.stdout


def test_ctrl_c_saves_a_snapshot(tmp_path):
    write_solver(tmp_path, 10_000_000)
    proc = subprocess.Popen([CLI, "train", "solver.prototxt"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()          # the first progress line: training has started
        assert "loss" in line, line
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "saving a snapshot" in err
    snaps = list((tmp_path / "snap").glob("tiny_iter_*.caffemodel"))
    assert len(snaps) == 1


def test_train_reports_missing_files(tmp_path):
    proc = subprocess.run([CLI, "train", "nope.prototxt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1 and "solver file not found: nope.prototxt" in proc.stderr


def test_train_reports_missing_data_and_misfit_weights_instead_of_aborting(tmp_path):
    # Caffe itself LOG(FATAL)s (SIGABRT) on both; the command checks first.
    (tmp_path / "net.prototxt").write_text(
        'layer { name: "d" type: "HDF5Data" top: "x" top: "y" hdf5_data_param { source: "data/train.txt" '
        'batch_size: 4 } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 2 } }\n'
        'layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }\n')
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 2\n')
    proc = subprocess.run([CLI, "train", "solver.prototxt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "data layer 'd' (HDF5Data) reads 'data/train.txt', which does not exist" in proc.stderr

    from caffe_losses.data import write_hdf5
    import numpy as np
    write_hdf5(tmp_path / "data", "train", x=np.zeros((8, 3)), y=np.zeros((8, 2)))
    # weights from a net whose fc has 5 inputs instead of 3
    (tmp_path / "other.prototxt").write_text(
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 5 } } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 2 } }\n')
    import caffe
    caffe.Net(str(tmp_path / "other.prototxt"), caffe.TEST).save(str(tmp_path / "other.caffemodel"))
    proc = subprocess.run([CLI, "train", "solver.prototxt", "--weights", "other.caffemodel"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "--weights: layer 'fc' blob 0 has shape (2, 5) in other.caffemodel but (2, 3) in the model" in proc.stderr
