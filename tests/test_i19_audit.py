"""Issue 19, audited by hand on the merged work: the variants that still failed.

Each case runs `caffe-losses` in its own process (Caffe could abort), with a
file-size limit (RLIMIT_FSIZE) standing in for a full disk where the case is
about one, and asserts one line naming the file or option, no traceback, and
the user's files byte-identical.  Device nodes are made in the test's own
temporary folder, never under /dev.
"""

import hashlib
import os
import resource
import stat
import subprocess
import sys

import pytest

SURGERY_NET = """name: "surgery"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 100 dim: 1 dim: 1 } } }
layer { name: "big" type: "InnerProduct" bottom: "data" top: "big"
  inner_product_param { num_output: 100 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "pred" type: "Convolution" bottom: "big" top: "pred" param { lr_mult: 0 }
  convolution_param { num_output: 1 kernel_size: 1 bias_term: false } }
"""


def _cli(args, cwd, fsize=None, stdout=subprocess.PIPE, timeout=120):
    def limit():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    env = dict(os.environ, GLOG_minloglevel="2")
    proc = subprocess.run([sys.executable, "-m", "caffe_losses.cli", *args], cwd=cwd, env=env,
                          preexec_fn=limit, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)
    return proc.returncode, (proc.stdout or "") + proc.stderr


def _digests(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_net_surgery_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    (tmp_path / "net.prototxt").write_text(SURGERY_NET)
    (tmp_path / "out.caffemodel").write_bytes(b"the user's previous model")
    before = _digests(tmp_path)
    code, out = _cli(["net-surgery", "--model", "net.prototxt", "--layer", "pred", "--values", "0:100",
                      "--output", "out.caffemodel"], tmp_path, fsize=4096)
    assert code == 2, out
    assert "Traceback" not in out and "Check failure stack trace" not in out, out
    assert "--output out.caffemodel: Caffe could not write it" in out, out
    assert "the disk may be full" in out and "Nothing was written under that name" in out, out
    # no temporary file left behind, the previous output untouched
    assert _digests(tmp_path) == before


def test_net_surgery_still_writes_and_verifies(tmp_path):
    (tmp_path / "net.prototxt").write_text(SURGERY_NET)
    code, out = _cli(["net-surgery", "--model", "net.prototxt", "--layer", "pred", "--values", "0:100",
                      "--output", "out.caffemodel"], tmp_path)
    assert code == 0, out
    assert "wrote out.caffemodel" in out
    import caffe
    caffe.set_mode_cpu()
    net = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TEST, weights=str(tmp_path / "out.caffemodel"))
    assert net.params["pred"][0].data.ravel().tolist() == list(range(100))
    assert sorted(os.listdir(tmp_path)) == ["net.prototxt", "out.caffemodel"]


@pytest.mark.parametrize("name", ["H.npy", "H.binaryproto"])
def test_make_h_on_a_full_disk_names_the_output(tmp_path, name):
    (tmp_path / name).write_bytes(b"the user's previous H")
    before = _digests(tmp_path)
    code, out = _cli(["make-h", "--identity", "300", "-o", name], tmp_path, fsize=1024)
    assert code == 2, out
    assert "Traceback" not in out, out
    assert f"{name}: cannot write it (" in out and "nothing was written under that name" in out, out
    assert _digests(tmp_path) == before


def _full_device(tmp_path):
    """A character device like /dev/full (1, 7), made in the test's folder: every write is ENOSPC."""
    path = tmp_path / "full.dev"
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    return path


@pytest.mark.parametrize("args", [["template", "--list"], ["make-pos-weight", "labels.txt"]])
def test_standard_output_that_cannot_be_written_is_one_line(tmp_path, args):
    (tmp_path / "labels.txt").write_text("0 1\n1 0\n")
    with open(_full_device(tmp_path), "w") as full:
        code, out = _cli(args, tmp_path, stdout=full)
    assert code == 1, out
    assert "Traceback" not in out, out
    assert f"caffe-losses {args[0]}: cannot write the standard output: No space left on device" in out, out


HDF5_NET = """layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "list.txt" batch_size: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def test_list_file_with_a_huge_line_is_quoted_short(tmp_path):
    (tmp_path / "net.prototxt").write_text(HDF5_NET)
    (tmp_path / "list.txt").write_text("x" * 1_000_000 + "\n")
    code, out = _cli(["check", "net.prototxt"], tmp_path)
    assert code == 1, out
    assert "list file 'list.txt' names a missing file 'xxx" in out, out
    assert "(a line of 1000000 characters)" in out, out
    assert len(out) < 2000, len(out)


def test_list_file_naming_an_unreadable_file_says_why_in_one_line(tmp_path):
    (tmp_path / "net.prototxt").write_text(HDF5_NET)
    (tmp_path / "list.txt").write_text("/proc/self/mem\n")
    code, out = _cli(["check", "net.prototxt"], tmp_path)
    assert code == 1, out
    assert "list file 'list.txt' names '/proc/self/mem', which cannot be read: Input/output error" in out, out
    assert "Unable to determine" not in out and "file descriptor" not in out, out


CONSTANT_H_NET = """layer { name: "x" type: "DummyData" top: "x" top: "label" dummy_data_param {
  shape { dim: 4 dim: 3 } shape { dim: 4 } data_filler { type: "gaussian" std: 1 } } }
layer { name: "H" type: "Python" top: "hmat"
  python_param { module: "caffe_losses" layer: "Constant" param_str: "{source: H5.npy}" } }
layer { name: "score" type: "InnerProduct" bottom: "x" top: "score"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "Python" bottom: "score" bottom: "label" bottom: "hmat" top: "loss"
  python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" } loss_weight: 1 }
"""
SOLVER = ('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 2\nsnapshot_prefix: "snap"\n'
          'random_seed: 1\nsolver_mode: CPU\n')


def test_check_refuses_a_constant_h_of_the_wrong_size_as_train_does(tmp_path):
    import numpy as np
    np.save(tmp_path / "H5.npy", np.eye(5))
    (tmp_path / "net.prototxt").write_text(CONSTANT_H_NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    before = _digests(tmp_path)
    code, out = _cli(["check", "solver.prototxt"], tmp_path)
    assert code == 1, out
    assert ("layer 'loss': bottom 'hmat' (H) comes from Constant layer 'H', whose file 'H5.npy'" in out
            and "holds shape (5, 5), but the classifier feeding the loss has 10 outputs: expected 10 x 10" in out), out
    code, out = _cli(["train", "solver.prototxt", "--no-progress", "--no-curve", "--no-check"], tmp_path)
    assert code == 1 and "Traceback" not in out, out
    assert "bottom 'hmat' must be a 10 x 10 matrix" in out and "'score' (4, 10)" in out, out
    np.save(tmp_path / "H5.npy", np.eye(10))
    code, out = _cli(["check", "solver.prototxt"], tmp_path)
    assert code == 0 and "0 error(s)" in out, out
    assert sorted(os.listdir(tmp_path)) == sorted(before)


def test_param_str_axis_of_hundreds_of_digits_is_refused_by_check(tmp_path):
    net = CONSTANT_H_NET.replace('layer: "SoftmaxWithInfogainLoss" }',
                                 'layer: "SoftmaxWithInfogainLoss" param_str: "{axis: ' + "1" * 350 + '}" }')
    import numpy as np
    np.save(tmp_path / "H5.npy", np.eye(10))
    (tmp_path / "net.prototxt").write_text(net)
    code, out = _cli(["check", "net.prototxt"], tmp_path)
    assert code == 1, out
    assert "layer 'loss': SoftmaxWithInfogainLoss: 'axis' must be <= 31. Received: axis=111" in out, out
    assert len(out) < 1000 and "Traceback" not in out, out


FEATURE_NET = """layer { name: "x" type: "DummyData" top: "x" top: "label" dummy_data_param {
  shape { dim: 8 dim: 3 } shape { dim: 8 } data_filler { type: "gaussian" std: 1 } } }
layer { name: "feature" type: "InnerProduct" bottom: "x" top: "feature"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
"""


def test_plot_features_on_a_full_disk_is_one_line(tmp_path):
    import caffe
    caffe.set_mode_cpu()
    (tmp_path / "net.prototxt").write_text(FEATURE_NET)
    caffe.Net(str(tmp_path / "net.prototxt"), caffe.TEST).save(str(tmp_path / "net.caffemodel"))
    (tmp_path / "feats.png").write_bytes(b"the user's previous picture")
    before = _digests(tmp_path)
    code, out = _cli(["plot-features", "--model", "net.prototxt", "net.caffemodel", "--out", "feats"],
                     tmp_path, fsize=2048)
    assert code == 2, out
    assert "Traceback" not in out, out
    assert "plot-features: --out feats.png: cannot write it (File too large)" in out, out
    assert _digests(tmp_path) == before
    code, out = _cli(["plot-features", "--model", "net.prototxt", "net.caffemodel", "--out", "feats"], tmp_path)
    assert code == 0 and "wrote feats.png" in out, out


@pytest.mark.parametrize("force", [False, True])
def test_template_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, force):
    out_dir = tmp_path / "t"
    if force:
        out_dir.mkdir()
        (out_dir / "notes.txt").write_text("the user's notes")
    code, out = _cli(["template", "infogain_digits_source", "--out", "t", *(["--force"] if force else [])],
                     tmp_path, fsize=50 * 1024)
    assert code == 2, out
    assert "Traceback" not in out, out
    assert f"caffe-losses template: cannot write {out_dir}: data/train.h5: File too large" in out, out
    if force:
        assert sorted(os.listdir(out_dir)) == ["notes.txt"]
        assert (out_dir / "notes.txt").read_text() == "the user's notes"
    assert sorted(os.listdir(tmp_path)) == (["t"] if force else [])


HIDE_CAFFE = """
import os, sys
sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p or '.', 'caffe', '__init__.py'))]
"""


@pytest.mark.parametrize("script, args", [("train.py", ["solver.prototxt"]),
                                          ("check_net.py", ["solver.prototxt"]),
                                          ("make_infogain_h.py", ["--identity", "3", "-o", "H.binaryproto"])])
def test_the_repository_scripts_without_pycaffe_say_one_line(tmp_path, script, args):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_CAFFE)
    env = dict(os.environ, GLOG_minloglevel="2")
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep)
        if p and not os.path.isfile(os.path.join(p, "caffe", "__init__.py"))])
    (tmp_path / "net.prototxt").write_text(FEATURE_NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    tools = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
    proc = subprocess.run([sys.executable, os.path.join(tools, script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "needs pycaffe (Caffe's Python module): `import caffe` failed (No module named 'caffe')" in lines[0]
    assert "README.md, section 'Into the Caffe you already have'" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["net.prototxt", "site", "solver.prototxt"]


SECOND_STOP_AFTER_SNAPSHOT = """
import os, signal, sys
from caffe_losses import cli
from caffe_losses.training import loop

SIG = getattr(signal, sys.argv[1])
step = loop._Run.step


def stop_at_3(self):                      # the first stop: as a user's Ctrl-C / `docker stop`
    step(self)
    if self.solver.iter == 3:
        os.kill(os.getpid(), SIG)


def curve(*args, **kwargs):               # the second stop comes while the curve is drawn
    os.kill(os.getpid(), SIG)
    for _ in range(10000):
        pass
    raise AssertionError("the second stop did not stop")


loop._Run.step = stop_at_3
loop.plot_curve = curve
sys.exit(cli.main(["train", "solver.prototxt", "--no-progress"]))
"""


@pytest.mark.parametrize("signame, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_second_stop_after_the_snapshot_prints_the_resume_command(tmp_path, signame, code):
    from test_train_cli import write_solver
    write_solver(tmp_path, 1000)
    (tmp_path / "second_stop.py").write_text(SECOND_STOP_AFTER_SNAPSHOT)
    proc = subprocess.run([sys.executable, "second_stop.py", signame], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, GLOG_minloglevel="2"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out and "did not stop" not in out, out
    assert "snapshot at iteration 3: snap/tiny_iter_3.caffemodel, snap/tiny_iter_3.solverstate" in out, out
    assert ("again: stopped; the last snapshot of this run, iteration 3, is complete: snap/tiny_iter_3.caffemodel, "
            "snap/tiny_iter_3.solverstate (resume with: caffe-losses train solver.prototxt --snapshot "
            "snap/tiny_iter_3.solverstate)") in out, out
    assert sorted(os.listdir(tmp_path / "snap")) == ["tiny_iter_3.caffemodel", "tiny_iter_3.solverstate"]


def test_a_nan_base_lr_is_named_and_the_failed_snapshot_is_not_offered_for_resuming(tmp_path):
    from corpus_train import NET
    (tmp_path / "net.prototxt").write_text(NET.replace("PARAMS", "{sigma: 1}"))
    (tmp_path / "solver.prototxt").write_text(SOLVER.replace("base_lr: 0.01", "base_lr: nan"))
    code, out = _cli(["check", "solver.prototxt"], tmp_path)
    assert code == 0, out          # Caffe trains it: a warning, not an error
    assert "WARNING [solver] solver solver.prototxt: base_lr: nan is not a finite number" in out, out
    code, out = _cli(["train", "solver.prototxt", "--no-progress", "--no-curve"], tmp_path)
    assert code == 1 and "Traceback" not in out, out
    assert "base_lr: nan is not a finite number" in out, out
    assert ("note: snap_iter_1.caffemodel and snap_iter_1.solverstate are the failed run as it was after "
            "iteration 1, before the error; its weights already hold NaN or inf (layer 'fc'), so resuming "
            "from them fails again: delete them") in out, out
    assert "resume from them once it is fixed" not in out, out


def test_an_unknown_option_is_named_with_the_subcommand_s_usage(tmp_path):
    code, out = _cli(["make-h", "--classes", "3"], tmp_path)
    assert code == 2, out
    assert "usage: caffe-losses make-h" in out and "caffe-losses make-h: error: unrecognized arguments: --classes 3" in out, out
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_a_snapshot_never_replaces_a_fifo_a_link_or_a_device(tmp_path, kind):
    from corpus_train import NET
    (tmp_path / "net.prototxt").write_text(NET.replace("PARAMS", "{sigma: 1}"))
    (tmp_path / "solver.prototxt").write_text(SOLVER)        # max_iter 2, snapshot_prefix "snap"
    (tmp_path / "user.txt").write_text("the user's file")
    target = tmp_path / "snap_iter_2.caffemodel"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        os.symlink("user.txt", target)
    else:
        os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    before = sorted(os.listdir(tmp_path))
    code, out = _cli(["check", "solver.prototxt"], tmp_path)
    assert code == 1, out
    assert ("snapshot_prefix 'snap': the snapshot of iteration 2 would be written as snap_iter_2.caffemodel, "
            "which ") in out and "move it away, or change snapshot_prefix" in out, out
    # train refuses it before training; with --no-check, when the snapshot is due, writing nothing
    code, out = _cli(["train", "solver.prototxt", "--no-progress", "--no-curve"], tmp_path)
    assert code == 1 and "the snapshot of iteration 2 would be written as snap_iter_2.caffemodel" in out, out
    assert sorted(os.listdir(tmp_path)) == before
    # --max-iter 1: a snapshot off the solver's schedule, met only when it is due (nothing written)
    os.rename(target, tmp_path / "snap_iter_1.caffemodel")
    target = tmp_path / "snap_iter_1.caffemodel"
    before = sorted(os.listdir(tmp_path))
    code, out = _cli(["train", "solver.prototxt", "--no-progress", "--no-curve", "--max-iter", "1"], tmp_path)
    assert code == 1 and "Traceback" not in out, out
    assert ("cannot write the snapshot of iteration 1: snap_iter_1.caffemodel is a" in out
            and "Nothing was written; no snapshot of this run was saved" in out), out
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "user.txt").read_text() == "the user's file"
    mode = os.lstat(target).st_mode
    assert {"fifo": stat.S_ISFIFO, "symlink": stat.S_ISLNK, "device": stat.S_ISCHR}[kind](mode)
