"""`caffe-losses train` against `caffe train`: same tests, same snapshots; interrupts; pre-checks."""

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from caffe_losses.training import snapshot_files, snapshot_prefix
from caffe_losses.training.console import _Progress
from test_train_cli import NET as TINY_NET, write_solver as write_tiny   # net.prototxt, solver (snap/tiny)

BIN = os.path.dirname(sys.executable)
CLI = os.path.join(BIN, "caffe-losses")
CAFFE = os.path.join(BIN, "caffe")

# Caffe's log: "Iteration 10, Testing net (#0)" then "Test net output #1: loss = 8.12 (* 1 = 8.12 loss)"
CAFFE_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
CAFFE_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = (\S+)")
CAFFE_TEST_LOSS = re.compile(r"\] Test loss: (\S+)")
# ours: "iteration 10, test: #0 accuracy = 0.49, #1 loss = 8.12 (* 1 = 8.12 loss), test loss = 8.1"
OURS_TEST = re.compile(r"^iteration (\d+), test(?: net #(\d+))?: (.*)$", re.M)
OURS_OUTPUT = re.compile(r"#(\d+) (\S+) = ([^,\s]+)")
SNAPSHOT_LINE = re.compile(r"^snapshot at iteration (\d+): (\S+), (\S+)$", re.M)



def caffe_tests(log):
    """[(iteration, net, [(name, value)], test loss or None)] from Caffe's INFO log."""
    tests, current = [], None
    for line in log.splitlines():
        m = CAFFE_TESTING.search(line)
        if m:
            current = (int(m.group(1)), int(m.group(2)), [], [None])
            tests.append(current)
            continue
        m = CAFFE_TEST_LOSS.search(line)
        if m and current:
            current[3][0] = float(m.group(1))
        m = CAFFE_OUTPUT.search(line)
        if m and current:
            current[2].append((m.group(2), float(m.group(3))))
    return [(it, net, outs, loss[0]) for it, net, outs, loss in tests]


def our_tests(text):
    out = []
    for m in OURS_TEST.finditer(text):
        outs = [(name, float(value)) for _, name, value in OURS_OUTPUT.findall(m.group(3))]
        loss = re.search(r"test loss = (\S+)$", m.group(3))
        out.append((int(m.group(1)), int(m.group(2) or 0), outs, float(loss.group(1)) if loss else None))
    return out


def assert_same_tests(ours, theirs):
    assert [(it, net, [n for n, _ in outs]) for it, net, outs, _ in ours] == \
           [(it, net, [n for n, _ in outs]) for it, net, outs, _ in theirs]
    for (it, net, outs, loss), (_, _, their_outs, their_loss) in zip(ours, theirs):
        np.testing.assert_allclose([v for _, v in outs], [v for _, v in their_outs], rtol=2e-6, atol=0,
                                   err_msg=f"test net #{net} at iteration {it}")
        assert (loss is None) == (their_loss is None)
        if loss is not None:
            np.testing.assert_allclose(loss, their_loss, rtol=2e-6)


def caffemodel_blobs(path):
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        net.ParseFromString(f.read())
    return {(layer.name, i): np.array(b.data, dtype=np.float32)
            for layer in net.layer for i, b in enumerate(layer.blobs)}


def snapshot_names(folder):
    return sorted(p for p in os.listdir(folder) if p.endswith((".caffemodel", ".solverstate")))


def run_caffe(folder, *flags):
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    proc = subprocess.run([CAFFE, "train", "-solver", "solver.prototxt", *flags], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def run_ours(folder, *flags):
    proc = subprocess.run([CLI, "train", "solver.prototxt", "--no-progress", *flags], cwd=folder,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc.stderr


def set_solver(folder, **fields):
    """Rewrites solver.prototxt with ``fields`` set (None: removed)."""
    from google.protobuf import text_format
    from caffe_losses.training import read_solver
    param = read_solver(str(folder / "solver.prototxt"))
    for key, value in fields.items():
        if value is None:
            param.ClearField(key)
        else:
            setattr(param, key, value)
    (folder / "solver.prototxt").write_text(text_format.MessageToString(param))


@pytest.fixture(scope="module")
def infogain_template(tmp_path_factory):
    """`caffe-losses template infogain_digits_source --out DIR`, solver shortened for the comparison."""
    root = tmp_path_factory.mktemp("template")
    proc = subprocess.run([CLI, "template", "infogain_digits_source", "--out", "tpl"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    # tests at 0 (test_initialization), 10, 20 and the final one at 30; a
    # snapshot every 10 (30 is not written twice); no snapshot_prefix, so
    # both tools must derive it from the solver file's name
    set_solver(root / "tpl", max_iter=30, test_interval=10, test_initialization=True, snapshot=10,
               display=5, test_compute_loss=True, snapshot_prefix=None)
    return root / "tpl"


def test_same_test_outputs_and_snapshots_as_caffe_train(infogain_template, tmp_path):
    theirs, ours = tmp_path / "caffe", tmp_path / "ours"
    shutil.copytree(infogain_template, theirs)
    shutil.copytree(infogain_template, ours)
    log = run_caffe(theirs)
    text = run_ours(ours)
    expected = caffe_tests(log)
    assert [t[0] for t in expected] == [0, 10, 20, 30]          # Caffe's own schedule, final test included
    assert [name for name, _ in expected[0][2]] == ["accuracy", "loss"]
    assert_same_tests(our_tests(text), expected)
    names = snapshot_names(theirs)
    assert names == ["solver_iter_10.caffemodel", "solver_iter_10.solverstate", "solver_iter_20.caffemodel",
                     "solver_iter_20.solverstate", "solver_iter_30.caffemodel", "solver_iter_30.solverstate"]
    assert snapshot_names(ours) == names
    for name in names:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    # each snapshot reported once, with its real files, after they exist
    reported = SNAPSHOT_LINE.findall(text)
    assert reported == [(str(i), f"solver_iter_{i}.caffemodel", f"solver_iter_{i}.solverstate") for i in (10, 20, 30)]
    assert "(* 1 = " in text and "test loss = " in text
    assert (ours / "training_curve.png").stat().st_size > 5000


@pytest.mark.parametrize("flag", ["-snapshot", "-weights"])
def test_resume_and_fine_tune_as_caffe_train(infogain_template, tmp_path, flag):
    theirs, ours = tmp_path / "caffe", tmp_path / "ours"
    shutil.copytree(infogain_template, theirs)
    run_caffe(theirs)
    shutil.copytree(theirs, ours)           # the same snapshot files to start from
    start = "solver_iter_10.solverstate" if flag == "-snapshot" else "solver_iter_10.caffemodel"
    log = run_caffe(theirs, flag, start)
    text = run_ours(ours, flag, start)      # Caffe's single-dash spelling is accepted
    expected = caffe_tests(log)
    assert [t[0] for t in expected] == ([10, 20, 30] if flag == "-snapshot" else [0, 10, 20, 30])
    assert_same_tests(our_tests(text), expected)
    for name in snapshot_names(theirs):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


def test_center_loss_template_as_caffe_train(tmp_path):
    """Two loss outputs (one weighted 0.01) and CenterLoss's centers in the snapshots."""
    proc = subprocess.run([CLI, "template", "center_loss_lenetpp", "--out", "tpl"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    set_solver(tmp_path / "tpl", max_iter=20, test_interval=10, test_initialization=False, snapshot=15,
               snapshot_prefix="snap_center")
    theirs, ours = tmp_path / "caffe", tmp_path / "ours"
    shutil.copytree(tmp_path / "tpl", theirs)
    shutil.copytree(tmp_path / "tpl", ours)
    expected = caffe_tests(run_caffe(theirs))
    assert [t[0] for t in expected] == [10, 20]
    assert len(expected[0][2]) >= 2
    assert_same_tests(our_tests(run_ours(ours)), expected)
    names = snapshot_names(theirs)
    assert names == ["snap_center_iter_15.caffemodel", "snap_center_iter_15.solverstate",
                     "snap_center_iter_20.caffemodel", "snap_center_iter_20.solverstate"]
    assert snapshot_names(ours) == names
    for name in names:
        if name.endswith(".caffemodel"):
            a, b = caffemodel_blobs(ours / name), caffemodel_blobs(theirs / name)
            assert a.keys() == b.keys() and ("center_loss", 0) in a
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")


def start_training(folder, *flags):
    proc = subprocess.Popen([CLI, "train", "solver.prototxt", *flags], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()        # the first progress line: training has started
    assert "loss" in line, line + proc.stderr.read()[-2000:]
    return proc


def finish(proc):
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_a_snapshot_and_prints_its_files(tmp_path, signum):
    write_tiny(tmp_path, 10_000_000)
    proc = start_training(tmp_path)
    proc.send_signal(signum)
    out, err = finish(proc)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert "Traceback" not in err
    reported = SNAPSHOT_LINE.findall(err)
    assert len(reported) == 1, err
    iteration, model, state = reported[0]
    assert (model, state) == snapshot_files("snap/tiny", int(iteration), 1)
    assert sorted(os.listdir(tmp_path / "snap")) == sorted([os.path.basename(model), os.path.basename(state)])
    from caffe.proto import caffe_pb2
    saved = caffe_pb2.SolverState()
    saved.ParseFromString((tmp_path / state).read_bytes())
    assert saved.iter == int(iteration) >= 1 and saved.learned_net == model
    # the message comes before the files' line, and names the same iteration
    assert f"at iteration {iteration}: saving a snapshot" in err.split("snapshot at iteration")[0]


def test_sighup_saves_a_snapshot_and_training_goes_on(tmp_path):
    write_tiny(tmp_path, 10_000_000)
    proc = start_training(tmp_path)
    proc.send_signal(signal.SIGHUP)
    seen = ""
    while "snapshot at iteration" not in seen:
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc)
    reported = SNAPSHOT_LINE.findall(seen + err)
    assert proc.returncode == 130 and len(reported) >= 2, seen + err
    for iteration, model, state in reported:
        assert (tmp_path / model).is_file() and (tmp_path / state).is_file()
    assert int(reported[-1][0]) >= int(reported[0][0])


def test_curve_is_optional_without_matplotlib(tmp_path):
    """Base install (no matplotlib): one line naming the extra, exit 0, snapshots written."""
    write_tiny(tmp_path, 5)
    hide = textwrap.dedent("""
        import sys
        class NoMatplotlib:
            def find_spec(self, name, path=None, target=None):
                if name == "matplotlib" or name.startswith("matplotlib."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoMatplotlib())
        sys.path.insert(0, %r)
        from caffe_losses.cli import main
        sys.exit(main(["train", "solver.prototxt"]))
    """ % os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", hide], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    notes = [line for line in proc.stdout.splitlines() if "matplotlib" in line]
    assert notes == ["training curve not drawn: matplotlib is not installed "
                     "(pip install 'caffe-losses[demo]' to get it)"]
    assert not (tmp_path / "training_curve.png").exists()
    assert (tmp_path / "snap" / "tiny_iter_5.caffemodel").is_file()


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_off_a_terminal_prints_by_time_and_at_each_tenth():
    stream, clock = io.StringIO(), FakeClock()
    bar = _Progress(1000, 0, stream, every=20.0, clock=clock)
    for it in range(1, 1001):
        clock.now += 1.0                  # one second per iteration
        bar.update(it, 0.5, final=it == 1000)
    printed = [int(m) for m in re.findall(r"\] (\d+)/1000 loss", stream.getvalue())]
    # every 20 s, and at 10% (100) although only 19 s passed since 81
    assert printed[:8] == [1, 21, 41, 61, 81, 100, 120, 140]
    assert printed[-1] == 1000 and len(printed) == len(set(printed))
    assert all(b - a <= 20 for a, b in zip(printed, printed[1:]))


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_redraws_one_line_and_messages_do_not_break_it():
    stream, clock = Terminal(), FakeClock()
    bar = _Progress(100, 0, stream, clock=clock)
    for it in range(1, 101):
        clock.now += 0.0625                # redrawn at most every 0.1 s: every other update
        bar.update(it, 0.5, final=it == 100)
        if it == 50:
            bar.say("iteration 50, test: #0 accuracy = 0.5")
    text = stream.getvalue()
    assert "\r\x1b[Kiteration 50, test: #0 accuracy = 0.5\n" in text     # the bar cleared first
    assert text.count("\n") == 2 and text.endswith("100/100 loss 0.5 16.0 it/s ETA 00:00\n")
    assert text.count("\r[") == 50


def test_snapshot_prefix_follows_caffe(tmp_path, monkeypatch):
    from caffe.proto import caffe_pb2
    monkeypatch.chdir(tmp_path)
    param = caffe_pb2.SolverParameter()
    assert snapshot_prefix(param, "models/solver.prototxt") == "models/solver"
    (tmp_path / "snaps").mkdir()
    param.snapshot_prefix = "snaps"
    assert snapshot_prefix(param, "models/solver.prototxt") == os.path.join("snaps", "solver")
    param.snapshot_prefix = "snaps/run1"
    assert snapshot_prefix(param, "models/solver.prototxt") == "snaps/run1"
    assert snapshot_files("p", 7, caffe_pb2.SolverParameter.HDF5) == ("p_iter_7.caffemodel.h5",
                                                                        "p_iter_7.solverstate.h5")


def test_hdf5_snapshot_format_files_are_reported(tmp_path):
    write_tiny(tmp_path, 4)
    with open(tmp_path / "solver.prototxt", "a") as f:
        f.write("snapshot_format: HDF5\n")
    err = run_ours(tmp_path)
    assert SNAPSHOT_LINE.findall(err) == [("4", "snap/tiny_iter_4.caffemodel.h5", "snap/tiny_iter_4.solverstate.h5")]
    assert (tmp_path / "snap/tiny_iter_4.caffemodel.h5").is_file()


def test_check_errors_refuse_training_and_warnings_name_the_prototxt_layer(tmp_path):
    write_tiny(tmp_path, 3)
    # our SmoothL1Loss without loss_weight: Caffe gives a Python layer none, so it would not train
    no_weight = re.sub(r'python_param \{[^}]*\}\s*loss_weight: 1',
                       'python_param { module: "caffe_losses" layer: "SmoothL1Loss" }', TINY_NET)
    assert "SmoothL1Loss" in no_weight and "loss_weight" not in no_weight
    (tmp_path / "net.prototxt").write_text(no_weight)
    proc = subprocess.run([CLI, "train", "solver.prototxt"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "net.prototxt: ERROR [python-loss-weight] layer 'loss'" in proc.stderr
    assert "--no-check" in proc.stderr and not list((tmp_path / "snap").iterdir())
    proc = subprocess.run([CLI, "train", "solver.prototxt", "--no-check", "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(warning) == 1 and warning[0].startswith("net.prototxt: WARNING layer 'loss': SmoothL1Loss"), warning
    assert ".py" not in proc.stderr


def write_failing_net(folder, calls):
    """The tiny net with a Python layer 'copy' (module failing.py in ``folder``) before its loss,
    which raises RuntimeError("failing on purpose") in forward once it has run ``calls`` times."""
    (folder / "failing.py").write_text(textwrap.dedent(f"""
        import caffe
        class FailsLater(caffe.Layer):
            def setup(self, bottom, top):
                self.calls = 0
            def reshape(self, bottom, top):
                top[0].reshape(*bottom[0].data.shape)
            def forward(self, bottom, top):
                self.calls += 1
                if self.calls > {calls}:
                    raise RuntimeError("failing on purpose")
                top[0].data[...] = bottom[0].data
            def backward(self, top, propagate_down, bottom):
                bottom[0].diff[...] = top[0].diff
    """))
    copy = ('layer { name: "copy" type: "Python" bottom: "fc" top: "fc2" '
            'python_param { module: "failing" layer: "FailsLater" } }\n')
    head, loss = TINY_NET.split('layer { name: "loss"')     # the failing layer goes before the loss
    (folder / "net.prototxt").write_text(head + copy + 'layer { name: "loss"' +
                                         loss.replace('bottom: "fc" bottom: "y"', 'bottom: "fc2" bottom: "y"'))


def test_layer_error_while_training_names_the_layer_and_keeps_the_run(tmp_path):
    write_tiny(tmp_path, 50)
    write_failing_net(tmp_path, 4)
    proc = subprocess.run([CLI, "train", "solver.prototxt", "--no-progress"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "caffe-losses train: iteration 4: net.prototxt: layer 'copy': RuntimeError: failing on purpose"
    assert "failing.py" in proc.stderr        # the user's own layer: its traceback is shown too
    assert SNAPSHOT_LINE.findall(proc.stderr) == [("4", "snap/tiny_iter_4.caffemodel", "snap/tiny_iter_4.solverstate")]
    assert (tmp_path / "snap/tiny_iter_4.caffemodel").is_file()


def test_resumed_at_max_iter_writes_nothing(tmp_path):
    write_tiny(tmp_path, 3)
    run_ours(tmp_path)
    before = (tmp_path / "snap/tiny_iter_3.caffemodel").stat().st_mtime_ns
    proc = subprocess.run([CLI, "train", "solver.prototxt", "--snapshot", "snap/tiny_iter_3.solverstate"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to train: the solver is at iteration 3" in proc.stdout
    assert (tmp_path / "snap/tiny_iter_3.caffemodel").stat().st_mtime_ns == before


def test_our_layer_error_names_the_layer_once(tmp_path):
    # The project's Caffe tells a Python layer its name, so our messages carry
    # "[layer 'loss']"; train's own prefix names file and layer: not both.
    write_tiny(tmp_path, 3)
    bad = re.sub(r'python_param \{[^}]*\}',
                 'python_param { module: "caffe_losses" layer: "SmoothL1Loss" param_str: "{sigma: 0}" }',
                 TINY_NET)
    (tmp_path / "net.prototxt").write_text(bad)
    proc = subprocess.run([CLI, "train", "solver.prototxt", "--no-check", "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "net.prototxt: layer 'loss': SmoothL1Loss: 'sigma' must be > 0" in last, last
    assert last.count("'loss'") == 1, last
