"""Issue 19: snapshots are atomic, a full disk is one line, a second stop says what exists,
the resume command is printed, --max-iter never runs a schedule Caffe would not, the
snapshot of a failed run is explained, and the accuracy panel has an axis to trust.

Every training runs as `caffe-losses train` in its own process. A full disk is
modelled with RLIMIT_FSIZE (writes beyond the limit fail with EFBIG, SIGXFSZ
being ignored as CPython ignores it), which fails Caffe's writer as ENOSPC does.
"""

import hashlib
import os
import re
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from caffe_losses import training
from caffe_losses.training import curves, loop, snapshots
from test_training import write_failing_net
from test_train_cli import NET as TINY_NET, write_solver as write_tiny   # net.prototxt, solver (snap/tiny)

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
SNAPSHOT_LINE = re.compile(r"^snapshot at iteration (\d+): (\S+), (\S+)$", re.M)


def train(folder, *flags, fsize=None, timeout=300):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([CLI, "train", "solver.prototxt", "--no-curve", "--no-progress", *flags], cwd=folder,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit if fsize is not None else None)


def digests(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))}


def add_to_solver(folder, text):
    with open(folder / "solver.prototxt", "a") as f:
        f.write(text)


@pytest.mark.parametrize("resume", [False, True])
def test_full_disk_during_a_snapshot_is_one_line_and_the_previous_snapshot_stays(tmp_path, resume):
    write_tiny(tmp_path, 4)
    # weights of 4 KiB: the limit below lets the run write its small files (a copy of the solver)
    (tmp_path / "net.prototxt").write_text(TINY_NET.replace("dim: 16 dim: 5", "dim: 16 dim: 500"))
    proc = train(tmp_path)
    assert proc.returncode == 0, proc.stderr
    snap = tmp_path / "snap"
    before = digests(snap)
    assert sorted(before) == ["tiny_iter_4.caffemodel", "tiny_iter_4.solverstate"]
    model_size = (snap / "tiny_iter_4.caffemodel").stat().st_size
    # the disk "fills up": no file may grow beyond half the weights file (Caffe would abort)
    flags = ["--snapshot", "snap/tiny_iter_4.solverstate", "--max-iter", "8"] if resume else []
    proc = train(tmp_path, *flags, fsize=model_size // 2)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])      # not SIGABRT (-6)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    it = 8 if resume else 4
    assert lines[0].startswith(f"caffe-losses train: cannot write the snapshot of iteration {it} "
                               f"(snap/tiny_iter_{it}.caffemodel, snap/tiny_iter_{it}.solverstate): "), lines[0]
    assert "Nothing was written under those names" in lines[0] and "free in" in lines[0]
    assert "no snapshot of this run was saved" in lines[0]
    assert "Traceback" not in proc.stderr and "trained to" not in proc.stdout
    assert digests(snap) == before          # the previous snapshot intact, nothing half-written, no temp
    # the snapshot left resumes as Caffe resumes it
    proc = train(tmp_path, "--snapshot", "snap/tiny_iter_4.solverstate", "--max-iter", "6")
    assert proc.returncode == 0 and "trained to iteration 6" in proc.stdout, proc.stderr


def test_snapshot_written_under_a_temporary_name_then_renamed(tmp_path, monkeypatch):
    """The files appear complete under their final names: Caffe writes a hidden name in the same
    folder, and the solver state names the final weights file (as Caffe's own would)."""
    write_tiny(tmp_path, 3)
    add_to_solver(tmp_path, "snapshot: 2\nsnapshot_format: HDF5\n")
    proc = train(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "snap")) == [
        "tiny_iter_2.caffemodel.h5", "tiny_iter_2.solverstate.h5", "tiny_iter_3.caffemodel.h5",
        "tiny_iter_3.solverstate.h5"]
    import h5py
    with h5py.File(tmp_path / "snap/tiny_iter_2.solverstate.h5", "r") as f:
        assert f["learned_net"][()] == b"snap/tiny_iter_2.caffemodel.h5"
    proc = train(tmp_path, "--snapshot", "snap/tiny_iter_2.solverstate.h5", "--max-iter", "4")
    assert proc.returncode == 0 and "trained to iteration 4" in proc.stdout, proc.stderr
    assert snapshots._partial_prefix("snap/tiny") == f"snap/.tiny.{os.getpid()}.partial"


def big_net(folder, params=6_000_000):
    """The tiny net with a large layer: its snapshot takes a while to write."""
    hidden = params // 5
    net = TINY_NET.replace(
        'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"',
        f'layer {{ name: "big" type: "InnerProduct" bottom: "x" top: "h" '
        f'inner_product_param {{ num_output: {hidden} bias_term: false weight_filler {{ type: "gaussian" std: 0.001 }} }} }}\n'
        f'layer {{ name: "fc" type: "InnerProduct" bottom: "h" top: "fc"')
    assert net != TINY_NET
    (folder / "net.prototxt").write_text(net)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_stop_during_the_snapshot_leaves_no_file_under_a_final_name(tmp_path, signum):
    write_tiny(tmp_path, 10_000_000)
    big_net(tmp_path)
    proc = subprocess.Popen([CLI, "train", "solver.prototxt", "--no-curve", "--progress-every", "0"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = proc.stderr.readline()
        assert "loss" in seen, seen + proc.stderr.read()[-2000:]
        proc.send_signal(signum)
        while "saving a snapshot before exiting" not in seen:
            line = proc.stderr.readline()
            assert line, seen
            seen += line
        time.sleep(0.1)
        proc.send_signal(signum)            # while the snapshot (2 x 24 MB) is being written
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = seen + err
    assert proc.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err
    it = re.search(r"at iteration (\d+): saving a snapshot", err).group(1)
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C (SIGINT)"
    assert (f"{name} again while writing the snapshot of iteration {it}: stopped; that snapshot was not "
            f"saved (no file under snap/tiny_iter_{it}.caffemodel or snap/tiny_iter_{it}.solverstate); "
            f"no snapshot of this run was saved") in err, err[-3000:]
    assert os.listdir(tmp_path / "snap") == []     # nothing under a final name, no temporary file left


def test_stop_prints_the_command_that_resumes(tmp_path):
    write_tiny(tmp_path, 10_000_000)
    proc = subprocess.Popen([CLI, "train", "solver.prototxt", "--no-curve"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "loss" in line, line
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    (it, model, state), = SNAPSHOT_LINE.findall(err)
    assert out.strip().splitlines()[-1] == f"resume with: caffe-losses train solver.prototxt --snapshot {state}"
    proc = train(tmp_path, "--snapshot", state, "--max-iter", str(int(it) + 2))
    assert proc.returncode == 0 and f"trained to iteration {int(it) + 2}" in proc.stdout, proc.stderr


@pytest.mark.parametrize("policy, extra", [("poly", "power: 0.9"), ("poly", "power: 1")])
def test_max_iter_beyond_the_solver_with_poly_is_refused(tmp_path, policy, extra):
    write_tiny(tmp_path, 5)
    text = (tmp_path / "solver.prototxt").read_text().replace('lr_policy: "fixed"', f'lr_policy: "{policy}"\n{extra}')
    (tmp_path / "solver.prototxt").write_text(text)
    proc = train(tmp_path, "--max-iter", "8")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (
        'caffe-losses train: --max-iter 8 is beyond the solver\'s max_iter 5 (in solver.prototxt), and '
        'lr_policy "poly" computes the learning rate base_lr * (1 - iter/max_iter)^power from that max_iter: '
        "past it the rate is negative or NaN, a schedule Caffe never runs. Set max_iter: 8 in the solver "
        "instead (the schedule then decays to 0 at 8)")
    assert os.listdir(tmp_path / "snap") == []
    proc = train(tmp_path, "--max-iter", "3")               # before max_iter: Caffe's schedule
    assert proc.returncode == 0 and "trained to iteration 3" in proc.stdout, proc.stderr


def test_max_iter_beyond_the_solver_keeps_caffe_s_schedule_for_other_policies(tmp_path):
    write_tiny(tmp_path, 5)
    text = (tmp_path / "solver.prototxt").read_text().replace(
        'lr_policy: "fixed"', 'lr_policy: "step"\ngamma: 0.5\nstepsize: 2')
    (tmp_path / "solver.prototxt").write_text(text)
    proc = train(tmp_path, "--max-iter", "8")
    assert proc.returncode == 0 and "trained to iteration 8" in proc.stdout, proc.stderr


def test_the_snapshot_of_a_failed_run_is_explained(tmp_path):
    """Decision: the last completed iteration is still saved (resumable once the error is fixed),
    and a note says what those files are."""
    write_tiny(tmp_path, 50)
    write_failing_net(tmp_path, 1)       # fails at the second forward: iteration 1
    proc = train(tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert SNAPSHOT_LINE.findall(proc.stderr) == [("1", "snap/tiny_iter_1.caffemodel", "snap/tiny_iter_1.solverstate")]
    assert ("note: snap/tiny_iter_1.caffemodel and snap/tiny_iter_1.solverstate are the failed run as it was "
            "after iteration 1, before the error: resume from them once it is fixed "
            "(--snapshot snap/tiny_iter_1.solverstate), or delete them") in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("caffe-losses train: iteration 1: net.prototxt: "
                                                           "layer 'copy': RuntimeError: failing on purpose")


def test_accuracy_panel_runs_from_0_to_1(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    seen = {}
    original = Figure.savefig

    def savefig(fig, *args, **kwargs):
        seen["limits"] = [ax.get_ylim() for ax in fig.axes]
        seen["labels"] = [ax.get_ylabel() for ax in fig.axes]
        seen["legend"] = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)

    def history(values):
        tests = [{"iter": i * 10, "net": 0, "outputs": {"accuracy": v, "loss": 0.2},
                  "loss_weights": {"accuracy": 0.0, "loss": 1.0}, "loss": None} for i, v in enumerate(values)]
        return {"iters": list(range(1, 31)), "loss": list(np.linspace(1, 0.2, 30)), "tests": tests}

    path = training.plot_curve(history([0.95, 0.952, 0.948, 0.951]), str(tmp_path / "curve.png"))
    assert os.path.getsize(path) > 5000
    assert seen["limits"][1] == curves.SCORE_AXIS_01 == (-0.02, 1.02)
    assert seen["labels"][1] == "test net outputs (0 to 1)"
    assert seen["legend"] == ["test accuracy (0.948 to 0.952)"]
    # outputs beyond [0, 1] (a mean error...): their own range, printed in the legend
    training.plot_curve(history([3.5, 2.0, 1.5, 1.25]), str(tmp_path / "curve2.png"))
    low, high = seen["limits"][1]
    assert low <= 1.25 and high >= 3.5 and high - low < 3
    assert seen["labels"][1] == "test net outputs" and seen["legend"] == ["test accuracy (1.25 to 3.5)"]


def test_in_process_snapshots_are_atomic_too(tmp_path, monkeypatch):
    """Where Caffe cannot fork (GPU mode), it writes in this process, still under a temporary
    name renamed into place, after a check of the free space."""
    write_tiny(tmp_path, 3)
    add_to_solver(tmp_path, "snapshot: 2\n")
    (tmp_path / "helper_layers.py").write_text(
        open(os.path.join(os.path.dirname(__file__), "helper_layers.py")).read())
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    forks = []
    monkeypatch.setattr(loop, "_in_child", lambda work: forks.append(work))
    real_run = loop._Run

    def no_fork(*args, **kwargs):
        kwargs["fork"] = False
        return real_run(*args, **kwargs)

    monkeypatch.setattr(loop, "_Run", no_fork)
    history = training.train("solver.prototxt", progress=False, report=False)
    assert forks == [] and [s[0] for s in history["snapshots"]] == [2, 3]
    assert sorted(os.listdir(tmp_path / "snap")) == ["tiny_iter_2.caffemodel", "tiny_iter_2.solverstate",
                                                     "tiny_iter_3.caffemodel", "tiny_iter_3.solverstate"]
    from caffe.proto import caffe_pb2
    state = caffe_pb2.SolverState()
    state.ParseFromString((tmp_path / "snap/tiny_iter_3.solverstate").read_bytes())
    assert state.iter == 3 and state.learned_net == "snap/tiny_iter_3.caffemodel"
    # no room on the disk: refused before Caffe writes (it would abort), the earlier files kept
    monkeypatch.setattr(snapshots.shutil, "disk_usage", lambda path: type("U", (), {"free": 10})())
    before = digests(tmp_path / "snap")
    with pytest.raises(training.TrainingError, match=r"cannot write the snapshot of iteration 4 .*the disk has "
                                                     r"10 bytes free.*Nothing was written under those names"):
        training.train("solver.prototxt", snapshot="snap/tiny_iter_3.solverstate", max_iter=4, progress=False,
                       report=False)
    assert digests(tmp_path / "snap") == before


def test_a_second_stop_names_the_snapshot_that_is_complete(tmp_path):
    write_tiny(tmp_path, 10_000_000)
    big_net(tmp_path)
    proc = subprocess.Popen([CLI, "train", "solver.prototxt", "--no-curve", "--progress-every", "0"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def read_until(text, seen=""):
        while text not in seen:
            line = proc.stderr.readline()
            assert line, seen
            seen += line
        return seen

    try:
        seen = proc.stderr.readline()
        proc.send_signal(signal.SIGHUP)                  # a snapshot, and training goes on
        seen = read_until("snapshot at iteration", seen)
        hup = int(SNAPSHOT_LINE.search(seen).group(1))
        seen = read_until(f"] {hup + 1}/", seen)          # one more iteration trained: the stop writes anew
        proc.send_signal(signal.SIGTERM)
        seen = read_until("SIGTERM at iteration", seen)
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = seen + err
    assert proc.returncode == 143 and "Traceback" not in err, err[-3000:]
    (it, model, state), = SNAPSHOT_LINE.findall(err)       # the SIGHUP one; the stop's was dropped
    assert int(it) == hup and f"again while writing the snapshot of iteration " in err, err[-3000:]
    assert (f"the last snapshot of this run, iteration {it}, is complete: {model}, {state} (resume with: "
            f"caffe-losses train solver.prototxt --snapshot {state})") in err, err[-3000:]
    assert "stopped without saving" not in err
    names = sorted(os.listdir(tmp_path / "snap"))
    assert names == [f"tiny_iter_{it}.caffemodel", f"tiny_iter_{it}.solverstate"], names
    from caffe.proto import caffe_pb2
    saved = caffe_pb2.SolverState()
    saved.ParseFromString((tmp_path / state).read_bytes())
    assert saved.iter == int(it) and saved.learned_net == model
