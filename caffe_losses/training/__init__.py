"""Training through pycaffe as ``caffe train`` does, with progress, curves and safe interrupts.

``train(solver_path)`` runs the solver iteration by iteration and follows
Caffe's ``Solver::Solve`` and ``Solver::Step`` (BVLC ``src/caffe/solver.cpp``):

* Tests: before the update of iteration ``it``, when ``test_interval > 0``,
  ``it % test_interval == 0`` and (``it > 0`` or ``test_initialization``);
  after the last iteration, once more when ``it % test_interval == 0``.
  Each test net is run ``test_iter`` times on the trained weights
  (``share_with``), every output summed in float32 and divided by
  ``test_iter``, the loss too with ``test_compute_loss``: Caffe's ``Test``.
  pycaffe's ``step`` would run Caffe's own ``TestAll``, which only writes
  glog lines, so the solver handed to Caffe has its testing turned off
  (``test_interval`` 2^31-1, ``test_initialization: false``) and the tests
  run here, at Caffe's iterations, with Caffe's arithmetic; each result is
  printed (the format of Caffe's "Test net output" lines, numbers to 6
  significant digits as glog prints them) and kept in the history.
* Snapshots: Caffe writes ``PREFIX_iter_N.caffemodel`` and
  ``.solverstate`` (``.caffemodel.h5`` / ``.solverstate.h5`` with
  ``snapshot_format: HDF5``) every ``snapshot`` iterations, and after the
  last one when ``snapshot_after_train`` unless that iteration was just
  written. Each is written once. Without ``snapshot_prefix`` the prefix is
  the solver file's path without its extension, and a prefix naming a folder
  gets the solver file's stem appended, as Caffe's
  ``UpgradeSnapshotPrefixProperty`` does. Caffe writes each snapshot under
  a hidden temporary prefix in the same folder (on the CPU in a forked
  child, so that a full disk, where Caffe's writers abort, ends only the
  child); the files are renamed into place once complete
  (:meth:`_Run.write_snapshot`).
* Interrupts: Ctrl-C (SIGINT) and SIGTERM (``docker stop``) stop training
  after the current iteration (or test batch) and save a snapshot at that
  iteration; SIGHUP saves one and goes on (Caffe's ``-sighup_effect``
  default). A second SIGINT stops at once (:class:`StoppedAgain`, whose
  message says which snapshot of the run is complete), a second SIGTERM
  ends the process; either while a snapshot is being written drops it
  (never left half-written under its final name) and says so, and either
  after it (while the curve is drawn) says which snapshot is complete and
  the command that resumes from it.
  Every message about a snapshot names its files, after they exist.

Before building the nets it checks what Caffe would abort on (solver
structure, ``snapshot_prefix``'s folder, data sources, weights and solver
state files: :mod:`caffe_losses.nets.preflight`); errors raised by Python layers
(while building the nets or training) become a :class:`TrainingError` that
names the layer as written in the prototxt.
"""

import contextlib
import ctypes
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import deque

import h5py
import numpy as np
from google.protobuf import text_format

from caffe_losses.files.figures import pyplot, save_figure
from caffe_losses.nets.preflight import PreflightError, check_data_sources, check_net_structure, check_solverstate, check_weights, snapshot_prefix, solver_preflight
from caffe_losses.nets.prototxt import read_solver_param, solver_nets
from caffe_losses.files.safety import format_bytes, not_a_file

# caffe (pycaffe) is imported inside the functions that use it: the CLI
# imports this module, and must run without pycaffe to say that it is missing.

__all__ = ["read_solver", "train", "plot_curve", "check_max_iter", "StoppedAgain", "net_loss",
           "snapshot_prefix", "snapshot_files", "format_test", "TrainingError", "CURVE_EXTRA_NOTE"]

# test_interval for the solver handed to Caffe: its own TestAll never runs
# (iter % (2^31 - 1) == 0 only at 0, and test_initialization is turned off)
_NEVER = 2 ** 31 - 1
# the line printed when the training curve cannot be drawn
CURVE_EXTRA_NOTE = ("training curve not drawn: matplotlib is not installed "
                    "(pip install 'caffe-losses[demo]' to get it)")


class TrainingError(Exception):
    """Training could not start or go on; the message is one line for the user.

    ``details`` holds a traceback when the error came from a user's own layer
    code (where it helps), else None.
    """

    def __init__(self, message, details=None):
        super().__init__(message)
        self.details = details


def read_solver(path):
    """Parses a ``solver.prototxt`` into a ``caffe_pb2.SolverParameter``."""
    return read_solver_param(path)


def snapshot_files(prefix, iteration, snapshot_format):
    """(weights file, solver state file) Caffe writes for a snapshot at ``iteration``."""
    from caffe.proto import caffe_pb2
    base = f"{prefix}_iter_{iteration}"
    if snapshot_format == caffe_pb2.SolverParameter.HDF5:
        return base + ".caffemodel.h5", base + ".solverstate.h5"
    return base + ".caffemodel", base + ".solverstate"


def _solver_type(param):
    """The solver's type name, with the deprecated ``solver_type`` enum read as Caffe upgrades it."""
    from caffe.proto import caffe_pb2
    if not param.HasField("type") and param.HasField("solver_type"):
        name = caffe_pb2.SolverParameter.SolverType.Name(param.solver_type)
        return {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad", "RMSPROP": "RMSProp",
                "ADADELTA": "AdaDelta", "ADAM": "Adam"}[name]
    return param.type


def net_loss(net):
    """The weighted loss of ``net``'s last forward: ``sum(w * top)`` over loss outputs."""
    weights = net.blob_loss_weights
    total = 0.0
    for name in net.outputs:
        w = float(weights.get(name, 0.0))
        if w:
            total += w * float(np.sum(net.blobs[name].data))
    return total


def _fmt_time(seconds):
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


class _Progress:
    """The progress line (iteration, loss, rate, ETA) and the messages between its updates.

    On a terminal the line is redrawn in place (at most 10 times a second);
    elsewhere (a log file, ``docker logs``) a line is printed at each 10% of
    the run and whenever ``every`` seconds passed since the last one, so a
    long run never looks dead. :meth:`say` prints a full line (test scores,
    snapshots, warnings) without breaking the bar.
    """

    def __init__(self, total, start, stream, *, enabled=True, report=True, label="", every=20.0,
                 clock=time.monotonic):
        self.total, self.start_iter, self.stream = total, start, stream
        self.enabled, self.report = enabled, report
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.clock = clock
        self.t0 = self.last_time = clock()
        self.every = every
        self.last_decade = -1
        self.last_it = None
        self.on_screen = False     # a bar is drawn on the terminal line, without a newline
        self.label = label + " " if label else ""

    def update(self, it, loss, final=False):
        if not self.enabled:
            return
        now = self.clock()
        done, todo = it - self.start_iter, self.total - self.start_iter
        frac = min(done / todo, 1.0) if todo > 0 else 1.0
        if final:
            if it == self.last_it and not self.tty:
                return
        elif self.tty:
            if now - self.last_time < 0.1:
                return
        elif int(frac * 10) == self.last_decade and now - self.last_time < self.every:
            return
        self.last_decade, self.last_time, self.last_it = int(frac * 10), now, it
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 else float("nan")
        eta = (todo - done) / rate if rate and rate > 0 else float("nan")
        width = 24
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        line = (f"{self.label}[{bar}] {it}/{self.total} loss {loss:.4g} "
                f"{rate:.1f} it/s ETA {_fmt_time(eta)}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
            self.on_screen = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def say(self, text):
        """Prints one full line (when reporting), clearing the bar drawn on a terminal."""
        if not self.report:
            return
        if self.on_screen:
            self.stream.write("\r\x1b[K")
            self.on_screen = False
        self.stream.write(text + "\n")
        self.stream.flush()


class _Signals:
    """SIGINT and SIGTERM ask to stop (with a snapshot), SIGHUP to snapshot and go on.

    The handlers only set flags, read between iterations, so Caffe is never
    interrupted in the middle of an update or of writing a file. After the
    first stop request the default handlers come back: a second Ctrl-C
    raises ``KeyboardInterrupt`` at once, a second SIGTERM ends the process.
    """

    NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}

    def __init__(self):
        self.stop = None          # the signal number that asked to stop
        self.hup = False
        self.saved = {}

    def _on_stop(self, signum, frame):
        self.stop = signum
        for sig, old in self.saved.items():
            if sig != signal.SIGHUP:
                signal.signal(sig, old)

    def _on_hup(self, signum, frame):
        self.hup = True

    def __enter__(self):
        wanted = {signal.SIGINT: self._on_stop, signal.SIGTERM: self._on_stop}
        if hasattr(signal, "SIGHUP"):
            wanted[signal.SIGHUP] = self._on_hup
        try:
            for sig, handler in wanted.items():
                self.saved[sig] = signal.signal(sig, handler)
        except ValueError:          # not the main thread: Python runs handlers there only
            self.__exit__()
        return self

    def __exit__(self, *exc):
        for sig, old in self.saved.items():
            signal.signal(sig, old)
        self.saved = {}

    def take_hup(self):
        hup, self.hup = self.hup, False
        return hup


class _LayerNames:
    """Finds which prototxt layer a running Python layer object is.

    Once the nets exist, by identity (``net.layers[i]`` is the Python object
    Caffe created); while they are being built, by the layer's class and
    ``param_str`` in the parsed prototxts.
    """

    def __init__(self, nets):
        self.nets = nets           # [(where, NetParameter, phase)]
        self.live = {}             # id(layer object) -> (where, name)

    def add_solver(self, solver, wheres):
        import caffe
        for net, where in zip([solver.net] + list(solver.test_nets), wheres):
            for i, name in enumerate(net._layer_names):
                layer = net.layers[i]
                if type(layer) is not caffe.Layer:      # a Python layer: the object Caffe holds
                    self.live[id(layer)] = (where, name)

    def describe(self, layer):
        """``("train_val.prototxt", "layer 'loss'")`` for a layer object, or None."""
        if id(layer) in self.live:
            where, name = self.live[id(layer)]
            return where, f"layer '{name}'"
        cls, param_str = type(layer).__name__, getattr(layer, "param_str", None)
        found = []
        for where, net, _ in self.nets:
            for spec in net.layer:
                if (spec.type == "Python" and spec.python_param.layer == cls
                        and spec.python_param.param_str == param_str):
                    key = (spec.name or (spec.top[0] if len(spec.top) else ""), where)
                    if key not in found:
                        found.append(key)
        if not found:
            return None
        names = " or ".join(sorted({f"'{name}'" for name, _ in found}))
        return ", ".join(sorted({where for _, where in found})), f"layer {names}"

    def spec(self, layer):
        """The ``LayerParameter`` of a layer object, when it is known for sure (else None)."""
        if id(layer) in self.live:
            where, name = self.live[id(layer)]
            found = [spec for w, net, _ in self.nets if w == where for spec in net.layer if spec.name == name]
        else:
            cls, param_str = type(layer).__name__, getattr(layer, "param_str", None)
            found = [spec for _, net, _ in self.nets for spec in net.layer
                     if spec.type == "Python" and spec.python_param.layer == cls
                     and spec.python_param.param_str == param_str]
        bottoms = {tuple(spec.bottom) for spec in found}
        return found[0] if len(bottoms) == 1 else None

    def describe_module(self, module):
        """The layers whose ``python_param { module }`` is ``module`` (an import failed)."""
        found = [(spec.name, where) for where, net, _ in self.nets for spec in net.layer
                 if spec.type == "Python" and spec.python_param.module == module]
        if not found:
            return None
        return ", ".join(sorted({w for _, w in found})), \
            "layer " + " or ".join(sorted({f"'{n}'" for n, _ in found}))


def _caffe_layer_in(frames):
    """The innermost ``self`` among ``frames`` that is a ``caffe.Layer`` (a Python layer), or None."""
    import caffe
    found = None
    for frame in frames:
        obj = frame.f_locals.get("self")
        if isinstance(obj, caffe.Layer):
            found = obj
    return found


def _traceback_frames(err):
    tb, frames = err.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def with_blob_names(message, layer, spec):
    """A layer's message with its bottoms named as the net names them, not by their role.

    The layers name a bottom by its role (``bottom 'scores'``); in a net whose
    blob is ``score``, the message says ``bottom 'score'``.  Caffe tells a
    Python layer its name and tops (the project's build) but not its bottoms,
    so the names come from the prototxt's layer.
    """
    roles = tuple(getattr(layer, "BOTTOMS", ())) + tuple(getattr(layer, "OPTIONAL_BOTTOMS", ()))
    blobs = list(spec.bottom) if spec is not None else []
    rename = {role: blobs[i] for i, role in enumerate(roles) if i < len(blobs) and blobs[i] != role}
    rename.update({f"bottom[{i}]": blob for i, blob in enumerate(blobs) if i >= len(roles)})
    if not rename:
        return message
    pattern = re.compile(r"\b(bottom|of|as) '(" + "|".join(re.escape(r) for r in rename) + r")'")
    return pattern.sub(lambda m: f"{m.group(1)} '{rename[m.group(2)]}'", message)


def _layer_error(err, names, when):
    """A :class:`TrainingError` for an exception raised inside Caffe, naming the layer."""
    layer = _caffe_layer_in(_traceback_frames(err))
    if layer is None:
        if isinstance(err, ImportError) and getattr(err, "name", None):
            where = names.describe_module(err.name.split(".")[0]) or names.describe_module(err.name)
            if where:
                return TrainingError(f"{when}: {where[0]}: {where[1]}: python_param module '{err.name}' "
                                     f"could not be imported ({err}). Python layers are imported from "
                                     f"sys.path: run from the folder of your layer modules, or add it to "
                                     f"PYTHONPATH")
        return None
    where = names.describe(layer)
    where = f"{where[0]}: {where[1]}" if where else f"Python layer {type(layer).__name__}"
    ours = type(layer).__module__.split(".")[0] == "caffe_losses"
    details = None if ours else "".join(traceback.format_exception(type(err), err, err.__traceback__))
    message = str(err) if ours else f"{type(err).__name__}: {err}"
    if isinstance(err, MemoryError):     # str(MemoryError()) is empty: "layer 'loss': " said nothing
        message = (f"out of memory (MemoryError{': ' + str(err) if str(err) else ''}): its inputs or files "
                   f"are too large for the memory available")
    suffix = f" {layer.where()}" if ours and hasattr(layer, "where") else ""
    if suffix.strip() and message.endswith(suffix):
        message = message[:-len(suffix)]           # the prefix below names the layer already
    if ours:
        message = with_blob_names(message, layer, names.spec(layer))
    return TrainingError(f"{when}: {where}: {message}", details)


@contextlib.contextmanager
def _warnings_to(progress, names):
    """Warnings raised while training are printed naming the prototxt layer, not a source line."""
    if not progress.report:
        yield
        return

    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        frames, frame = [], sys._getframe(1)
        while frame is not None:
            frames.append(frame)
            frame = frame.f_back
        layer = _caffe_layer_in(reversed(frames))
        where = names.describe(layer) if layer is not None else None
        text = (f"{where[0]}: WARNING {where[1]}: {message}" if where
                else f"WARNING ({category.__name__}): {message}")
        if text not in shown:       # the same layer in the train and the test net: once
            shown.add(text)
            progress.say(text)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def check_max_iter(param, max_iter, solver_path):
    """``--max-iter`` beyond the solver's ``max_iter`` with ``lr_policy: "poly"``: refused.

    ``poly`` is the one policy of Caffe's ``SGDSolver::GetLearningRate``
    that reads ``max_iter``: ``base_lr * (1 - iter / max_iter) ^ power``,
    which turns negative (NaN with a fractional power) past ``max_iter``,
    a schedule Caffe never runs (``caffe train`` stops there). The other
    policies are defined at every iteration and run as Caffe runs them.
    """
    if max_iter is None or param.lr_policy != "poly" or max_iter <= param.max_iter:
        return
    raise PreflightError(
        f"--max-iter {max_iter} is beyond the solver's max_iter {param.max_iter} (in {solver_path}), and "
        f'lr_policy "poly" computes the learning rate base_lr * (1 - iter/max_iter)^power from that '
        f"max_iter: past it the rate is negative or NaN, a schedule Caffe never runs. Set max_iter: "
        f"{max_iter} in the solver instead (the schedule then decays to 0 at {max_iter})")


def _weights_list(weights, snapshot, param):
    """The .caffemodel files to start from: --weights, else the solver's ``weights`` (unless resuming).

    Each entry may list several files separated by commas, as ``caffe train
    -weights`` and the solver's ``weights`` field take them.
    """
    if snapshot:
        return []
    entries = [(weights, "--weights")] if weights else [(w, "solver weights") for w in param.weights]
    return [(name.strip(), option) for entry, option in entries for name in entry.split(",") if name.strip()]


def _gpu_problem(device):
    """Why this Caffe cannot use GPU ``device`` (a CPU-only build, no driver...), or None.

    Caffe aborts the process there (``LOG(FATAL)``), so a child process tries.
    """
    code = f"import caffe; caffe.set_device({int(device)}); caffe.set_mode_gpu()"
    env = dict(os.environ, GLOG_minloglevel="2")
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return "probing the GPU timed out"
    if proc.returncode == 0:
        return None
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    fatal = [ln.split("] ", 1)[-1] for ln in lines if ln.startswith("F")]
    return (fatal or lines or [f"exit status {proc.returncode}"])[0]


def _set_mode(gpu, param, progress):
    """CPU or GPU as ``caffe train`` chooses: ``gpu`` (--gpu), else the solver's ``solver_mode``."""
    import caffe
    from caffe.proto import caffe_pb2
    if gpu is None and param.HasField("solver_mode") and param.solver_mode == caffe_pb2.SolverParameter.GPU:
        problem = _gpu_problem(param.device_id)
        if problem:
            progress.say(f"note: the solver says solver_mode: GPU, but this Caffe cannot use GPU "
                         f"{param.device_id} ({problem}): training on the CPU")
        else:
            gpu = param.device_id
    elif gpu is not None:
        problem = _gpu_problem(gpu)
        if problem:
            raise TrainingError(f"--gpu {gpu}: this Caffe cannot use that GPU: {problem}")
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(int(gpu))
        caffe.set_mode_gpu()
    return gpu


def _partial_prefix(prefix):
    """The prefix Caffe writes snapshots to: a hidden name in the snapshots' own folder (renamed
    into place once complete, see :meth:`_Run.write_snapshot`)."""
    folder, base = os.path.split(prefix)
    return os.path.join(folder, f".{base}.{os.getpid()}.partial")


def _build_solver(param, prefix, solver_path):
    """``caffe.get_solver`` on a copy of the solver: Caffe's own testing and periodic snapshots
    off (both are run here), snapshots to a temporary prefix, no weights."""
    import caffe
    run = type(param)()
    run.CopyFrom(param)
    run.snapshot_prefix = _partial_prefix(prefix)
    run.snapshot = 0
    del run.weights[:]
    if len(run.test_iter):
        run.test_interval = _NEVER
        run.test_initialization = False
    try:
        folder = tempfile.mkdtemp(prefix="caffe-losses-train-")
    except OSError as err:
        raise TrainingError(f"cannot make a temporary folder for the solver in {tempfile.gettempdir()}: "
                            f"{err.strerror}") from None
    try:
        path = os.path.join(folder, os.path.basename(solver_path))
        try:
            with open(path, "w") as f:
                f.write(text_format.MessageToString(run))
        except OSError as err:
            raise TrainingError(f"cannot write a temporary copy of {solver_path} in {folder}: "
                                f"{err.strerror}") from None
        return caffe.get_solver(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _test_due(param, it):
    return param.test_interval > 0 and it % param.test_interval == 0 and (it > 0 or param.test_initialization)


def _run_test(solver, net, test_iter, compute_loss, stop):
    """Caffe's ``Solver::Test`` for one test net; None when a stop was requested meanwhile."""
    net.share_with(solver.net)
    last = len(net.layers) - 1
    outputs = list(net.outputs)
    scores, loss = None, np.float32(0)
    for _ in range(test_iter):
        if stop():
            return None
        iter_loss = net._forward(0, last)          # Net::Forward's loss, as Caffe computes it
        if compute_loss:
            loss += np.float32(iter_loss)
        values = [np.array(net.blobs[o].data, dtype=np.float32).ravel() for o in outputs]
        if scores is None:
            scores = values
        else:
            for j, v in enumerate(values):
                scores[j] += v                     # float32 sums, as Caffe's Dtype test_score
    weights = net.blob_loss_weights
    result = {"outputs": {}, "loss_weights": {}, "loss": None}
    for name, total in zip(outputs, scores or []):
        for k, value in enumerate(total / np.float32(test_iter)):
            key = name if total.size == 1 else f"{name}[{k}]"
            result["outputs"][key] = float(value)
            result["loss_weights"][key] = float(weights.get(name, 0.0))
    if compute_loss:
        result["loss"] = float(loss / np.float32(test_iter))
    return result


def format_test(test, several_nets=False):
    """One line for a test result, with Caffe's names and numbers (``%g``, as glog prints)."""
    parts = []
    for i, (name, value) in enumerate(test["outputs"].items()):
        w = test["loss_weights"][name]
        weighted = f" (* {np.float32(w):g} = {float(np.float32(w) * np.float32(value)):g} loss)" if w else ""
        parts.append(f"#{i} {name} = {value:g}{weighted}")
    if test["loss"] is not None:
        parts.append(f"test loss = {test['loss']:g}")
    net = f" net #{test['net']}" if several_nets else ""
    return f"iteration {test['iter']}, test{net}: " + ", ".join(parts)


def train(solver_path, *, weights=None, snapshot=None, max_iter=None, progress=True, report=None,
          curve_png=None, label="", stream=None, gpu=None, progress_every=20.0):
    """Trains the solver's net as ``caffe train`` does; returns the history.

    Args:
      solver_path: ``solver.prototxt``; relative paths inside it (the net,
        data sources, ``snapshot_prefix``) are resolved against the working
        directory, as with ``caffe train``.
      weights: ``.caffemodel`` to initialise from (fine-tuning, or the
        output of ``net-surgery``); several separated by commas. Replaces the
        solver's own ``weights`` field, as ``caffe train -weights`` does.
      snapshot: ``.solverstate`` to resume from.
      max_iter: stop at this iteration instead of the solver's ``max_iter``
        (the learning-rate schedule still uses the solver's); training
        finishes there as at ``max_iter`` (final snapshot and test). Beyond
        the solver's ``max_iter`` with ``lr_policy: "poly"`` it is refused
        (:func:`check_max_iter`).
      progress: show the progress bar on ``stream`` (stderr by default).
      report: print test scores, snapshots, warnings and notes on
        ``stream`` (default: as ``progress``).
      curve_png: write the training curve (and test scores) there; without
        matplotlib, ``curve`` is None and ``curve_note`` says how to get it.
      label: text before the progress bar.
      gpu: device id for GPU mode (CUDA builds); None follows the solver's
        ``solver_mode`` (GPU with ``device_id``) as ``caffe train`` does, on
        the CPU where this Caffe has no usable GPU.
      progress_every: when ``stream`` is not a terminal, also print a
        progress line whenever this many seconds passed.

    Returns:
      dict: ``iters`` and ``loss`` (weighted training loss per iteration);
      ``tests``, one dict per test run: ``iter``, ``net`` (test net index),
      ``outputs`` ({name: mean value}, Caffe's order), ``loss_weights``
      ({name: weight}), ``loss`` (with ``test_compute_loss``, else None);
      ``snapshots``: ``(iteration, weights file, state file)`` written in
      this run; ``solver`` (the pycaffe solver); ``interrupted`` (the
      signal number that stopped training, or None); ``curve`` and
      ``curve_note``.

    Raises:
      FileNotFoundError, PreflightError: a file Caffe would abort on.
      TrainingError: a Python layer's error while building the nets or
        training, naming the layer (a snapshot at the last completed
        iteration is saved first).
    """
    stream = sys.stderr if stream is None else stream
    report = progress if report is None else report
    param = read_solver(solver_path)
    for problem in solver_preflight(param, solver_path, weights_field=False):
        raise problem       # the first; `caffe-losses check` lists them all
    prefix = snapshot_prefix(param, solver_path)
    nets = solver_nets(param, solver_path)
    for where, net_param, phase in nets:
        check_net_structure(net_param, phase, where)
        check_data_sources(net_param, phase)
    starts = _weights_list(weights, snapshot, param)
    for path, option in starts:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{option}: weights file not found: {path}")
    if snapshot and not os.path.isfile(snapshot):
        raise FileNotFoundError(f"--snapshot: solver state file not found: {snapshot}")

    check_max_iter(param, max_iter, solver_path)
    total = int(param.max_iter if max_iter is None else max_iter)
    bar = _Progress(total, 0, stream, enabled=progress,
                    report=report, label=label, every=progress_every)
    names = _LayerNames(nets)
    with _Signals() as signals, _warnings_to(bar, names):
        gpu = _set_mode(gpu, param, bar)
        try:
            solver = _build_solver(param, prefix, solver_path)
        except Exception as err:
            wrapped = _layer_error(err, names, f"building the nets of {solver_path}")
            if wrapped is None:
                raise
            raise wrapped from None
        names.add_solver(solver, [where for where, _, _ in nets])
        for path, option in starts:
            check_weights(path, solver.net, option=option, require_match=True)
            for net in solver.test_nets:
                check_weights(path, net, option=option)
            solver.net.copy_from(path)
            for net in solver.test_nets:
                net.copy_from(path)
        if snapshot:
            check_solverstate(snapshot, solver.net, _solver_type(param))
            solver.restore(snapshot)
        bar.start_iter, bar.t0 = solver.iter, bar.clock()
        runner = _Run(solver, param, prefix, bar, signals, total, solver_path=solver_path,
                      fork=gpu is None)
        history = runner.run(names)
    stop = history["interrupted"]
    if stop is None:
        return _finish_history(history, solver, solver_path, label, curve_png)
    try:      # stopped: a second Ctrl-C or SIGTERM while the curve is drawn still says what exists
        with _stop_raises():
            return _finish_history(history, solver, solver_path, label, curve_png)
    except StoppedAgain:
        raise
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        raise StoppedAgain(f"{_Signals.NAMES.get(signum, 'a signal')} again: stopped; {runner.existing()}",
                           signum) from None


def _finish_history(history, solver, solver_path, label, curve_png):
    """``train``'s end: the history collected for the demo, the curve drawn."""
    history["solver"] = solver
    solver_dir = os.path.basename(os.path.dirname(os.path.abspath(solver_path)))
    history["curve"], history["curve_note"] = None, None
    if curve_png and (history["iters"] or history["tests"]):
        try:
            history["curve"] = plot_curve(history, curve_png, title=f"{solver_dir}/{os.path.basename(solver_path)}")
        except ModuleNotFoundError as err:
            if not (err.name or "").split(".")[0] == "matplotlib":
                raise
            history["curve_note"] = CURVE_EXTRA_NOTE
        except (OSError, ValueError) as err:     # a disk that filled up while training
            history["curve_note"] = f"training curve not written: {curve_png}: {getattr(err, 'strerror', None) or err}"
    return history


class _Run:
    """One training run: Caffe's ``Solve``/``Step`` one iteration at a time (see the module doc)."""

    def __init__(self, solver, param, prefix, bar, signals, total, *, solver_path="solver.prototxt",
                 fork=True):
        self.solver, self.param, self.prefix, self.bar, self.signals = solver, param, prefix, bar, signals
        self.solver_path = solver_path
        self.fork = fork and hasattr(os, "fork")     # write snapshots in a child process (CPU mode)
        self.writing = None            # the iteration whose snapshot is being written
        self.start = solver.iter
        self.total = total             # the iteration to stop at
        self.history = {"iters": [], "loss": [], "tests": [], "snapshots": [], "interrupted": None}
        self.recent = deque(maxlen=max(int(param.average_loss), 1))   # Caffe's smoothed (shown) loss
        self.last_snapshot = None      # the iteration of the last snapshot written in this run
        self.phase = "training"        # what was going on, for error messages

    def stop_requested(self):
        return self.signals.stop is not None

    def files(self):
        return snapshot_files(self.prefix, self.solver.iter, self.param.snapshot_format)

    def write_snapshot(self):
        """Caffe's ``Solver::Snapshot`` of the current iteration, atomically.

        Caffe writes the two files under a temporary prefix in the snapshot
        folder (``_partial_prefix``); the solver state's ``learned_net`` is
        set to the final weights file (the name Caffe would have written);
        both are flushed to the disk and renamed into place, weights first.
        On the CPU, Caffe writes in a forked child: a full disk makes Caffe
        abort (``CHECK`` in its writers), which then ends only the child and
        becomes one line here. Whatever fails or interrupts it, no file is
        left under a final name half-written, and the temporary files go.
        """
        it = self.solver.iter
        final = snapshot_files(self.prefix, it, self.param.snapshot_format)
        for path in final:       # a FIFO, device, link or folder there is never replaced
            problem = not_a_file(path)
            if problem:
                raise TrainingError(f"cannot write the snapshot of iteration {it}: {path} {problem}; a snapshot "
                                    f"replaces nothing but a regular file: move it away, or change "
                                    f"snapshot_prefix. Nothing was written; {self.existing()}")
        partial = snapshot_files(_partial_prefix(self.prefix), it, self.param.snapshot_format)
        self.writing = it
        done = False
        try:
            with _stop_raises():
                if self.fork:
                    _in_child(lambda: self._caffe_snapshot(partial, final[0]))
                else:
                    _check_free_space(self.solver, os.path.dirname(os.path.abspath(final[0])))
                    self._caffe_snapshot(partial, final[0])
                for path in partial:
                    _fsync(path)
                with _signals_held():
                    os.replace(partial[0], final[0])
                    os.replace(partial[1], final[1])
                    done = True
        except (_ChildFailed, OSError) as err:
            folder = os.path.dirname(os.path.abspath(final[0]))
            free = shutil.disk_usage(folder).free if os.path.isdir(folder) else None
            space = f"; {format_bytes(free)} free in {folder}" if free is not None else ""
            raise TrainingError(f"cannot write the snapshot of iteration {it} ({final[0]}, {final[1]}): "
                                f"{err}{space}. Nothing was written under those names; "
                                f"{self.existing()}") from None
        except KeyboardInterrupt as err:
            signum = getattr(err, "signum", signal.SIGINT)
            if done:       # the stop came as the files were complete
                self.last_snapshot = it
                self.history["snapshots"].append((it, *final))
                raise StoppedAgain(f"{_Signals.NAMES.get(signum, 'a signal')} again: stopped; "
                                   f"{self.existing()}", signum) from None
            raise self.not_saved(signum) from None
        finally:
            self.writing = None
            for path in partial:
                if os.path.lexists(path):
                    os.unlink(path)

    def not_saved(self, signum):
        """The :class:`StoppedAgain` for a stop that came while the snapshot of this iteration was
        being written (its files were not renamed into place)."""
        final = self.files()
        if self.last_snapshot == self.solver.iter:       # written already (a repeat)
            return StoppedAgain(f"{_Signals.NAMES.get(signum, 'a signal')} again: stopped; {self.existing()}",
                                signum)
        return StoppedAgain(f"{_Signals.NAMES.get(signum, 'a signal')} again while writing the snapshot of "
                            f"iteration {self.solver.iter}: stopped; that snapshot was not saved (no file "
                            f"under {final[0]} or {final[1]}); {self.existing()}", signum)

    def _caffe_snapshot(self, partial, model):
        self.solver.snapshot()
        _set_learned_net(partial[1], model, self.param.snapshot_format)

    def existing(self):
        """What this run saved and still exists, with the command that resumes from it (a sentence)."""
        for it, model, state in reversed(self.history["snapshots"]):
            if os.path.isfile(model) and os.path.isfile(state):
                return (f"the last snapshot of this run, iteration {it}, is complete: {model}, {state} "
                        f"(resume with: caffe-losses train {shlex.quote(self.solver_path)} --snapshot "
                        f"{shlex.quote(state)})")
        return "no snapshot of this run was saved (files of earlier runs are untouched)"

    def saved(self):
        """Records (and reports) the snapshot just written, once its files exist."""
        model, state = self.files()
        for path in (model, state):
            if not os.path.isfile(path):
                raise TrainingError(f"Caffe reported a snapshot at iteration {self.solver.iter} but {path} "
                                    f"does not exist")
        self.last_snapshot = self.solver.iter
        self.history["snapshots"].append((self.solver.iter, model, state))
        self.bar.say(f"snapshot at iteration {self.solver.iter}: {model}, {state}")

    def snapshot(self, repeat=False):
        """A snapshot of the current iteration, unless one was written at it; ``repeat`` names it again."""
        if self.last_snapshot != self.solver.iter:
            self.write_snapshot()
            self.saved()
        elif repeat:      # written a moment ago: name it again where the user looks for it
            model, state = self.files()
            self.bar.say(f"snapshot at iteration {self.solver.iter}: {model}, {state}")

    def test_all(self):
        self.phase = f"testing at iteration {self.solver.iter}"
        nets = self.solver.test_nets
        for k in range(len(nets)):
            result = _run_test(self.solver, nets[k], int(self.param.test_iter[k]), self.param.test_compute_loss,
                               self.stop_requested)
            if result is None:
                self.bar.say(f"iteration {self.solver.iter}: test interrupted")
                return
            result = {"iter": self.solver.iter, "net": k, **result}
            self.history["tests"].append(result)
            self.bar.say(format_test(result, len(nets) > 1))

    def stopped(self):
        """Ctrl-C or SIGTERM: a snapshot of the last completed iteration, if one was trained."""
        what = _Signals.NAMES.get(self.signals.stop, "a signal")
        self.history["interrupted"] = self.signals.stop
        if self.solver.iter == self.start:
            self.bar.say(f"{what} before the first iteration: nothing trained, nothing saved")
        else:
            with _stop_raises():    # a second stop from here on is reported, and cleans up
                try:
                    self.bar.say(f"{what} at iteration {self.solver.iter}: saving a snapshot before exiting")
                    self.snapshot(repeat=True)
                except StoppedAgain:
                    raise
                except KeyboardInterrupt as err:
                    raise self.not_saved(getattr(err, "signum", signal.SIGINT)) from None
        return self.history

    def step(self):
        solver, param = self.solver, self.param
        if len(solver.test_nets) and _test_due(param, solver.iter):
            self.test_all()
            if self.stop_requested():
                return
        self.phase = f"iteration {solver.iter}"
        solver.step(1)
        value = net_loss(solver.net)
        self.history["iters"].append(solver.iter)
        self.history["loss"].append(value)
        self.recent.append(value)
        if param.snapshot and solver.iter % param.snapshot == 0:   # where Caffe's Step() writes it
            self.snapshot()
        if self.signals.take_hup():
            self.snapshot()
        self.bar.update(solver.iter, sum(self.recent) / len(self.recent))

    def finish(self):
        """``Solve``'s end: the last snapshot (unless just written), the train net's display forward,
        the final test."""
        solver, param = self.solver, self.param
        if self.recent:
            self.bar.update(solver.iter, sum(self.recent) / len(self.recent), final=True)
        self.phase = f"finishing at iteration {solver.iter}"
        if param.snapshot_after_train and solver.iter > self.start:
            self.snapshot()
        if param.display and solver.iter % param.display == 0:
            solver.net.forward()
        if len(solver.test_nets) and param.test_interval and solver.iter % param.test_interval == 0:
            self.test_all()

    def run(self, names):
        """Trains to the end (or a stop request); returns the history.

        A Python layer's error becomes a :class:`TrainingError` naming the
        layer, after a snapshot of the last completed iteration.
        """
        try:
            while self.solver.iter < self.total and not self.stop_requested():
                self.step()
            if not self.stop_requested():
                self.finish()
            return self.stopped() if self.stop_requested() else self.history
        except StoppedAgain:
            raise
        except KeyboardInterrupt as err:      # a second Ctrl-C: say what exists
            signum = getattr(err, "signum", signal.SIGINT)
            raise StoppedAgain(f"{_Signals.NAMES.get(signum, 'a signal')} again at iteration "
                               f"{self.solver.iter}: stopped at once; {self.existing()}", signum) from None
        except Exception as err:
            wrapped = _layer_error(err, names, self.phase)
            if wrapped is None:
                raise
            if self.solver.iter > self.start and self.last_snapshot != self.solver.iter:
                self.bar.say(f"error at iteration {self.solver.iter}: saving a snapshot of the last "
                             f"completed iteration")
                self.snapshot()
                model, state = self.files()
                bad = _non_finite_weights(self.solver.net)
                if bad:
                    self.bar.say(f"note: {model} and {state} are the failed run as it was after iteration "
                                 f"{self.solver.iter}, before the error; its weights already hold NaN or inf "
                                 f"(layer '{bad}'), so resuming from them fails again: delete them")
                else:
                    self.bar.say(f"note: {model} and {state} are the failed run as it was after iteration "
                                 f"{self.solver.iter}, before the error: resume from them once it is fixed "
                                 f"(--snapshot {state}), or delete them")
            raise wrapped from None


def _non_finite_weights(net):
    """The first layer of ``net`` whose learnable blobs hold NaN or inf, or None."""
    for name, blobs in net.params.items():
        for blob in blobs:
            if not np.isfinite(blob.data).all():
                return name
    return None


class StoppedAgain(KeyboardInterrupt):
    """A second Ctrl-C or SIGTERM stopped training at once; the message says what was saved."""

    def __init__(self, message, signum=signal.SIGINT):
        super().__init__(message)
        self.message, self.signum = message, signum


class _ChildFailed(Exception):
    """The child process writing a snapshot failed (the message says how)."""


class _StopNow(KeyboardInterrupt):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_raises():
    """While a snapshot is written: a Ctrl-C or SIGTERM that would end the process (a second one,
    the default handlers being back) raises :class:`_StopNow` instead, so that the writer
    cleans up and says what exists. The first stop request (a flag) is left as it is."""
    def stop_now(signum, frame):
        raise _StopNow(signum)

    saved = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if not (callable(current) and getattr(current, "__name__", "") == "_on_stop"):
                with contextlib.suppress(ValueError):       # not the main thread
                    saved[sig] = signal.signal(sig, stop_now)
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM wait until the block is over (both files renamed, or neither)."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _in_child(work):
    """Runs ``work()`` in a forked child, waits for it; raises :class:`_ChildFailed` with its
    last error line when it fails or is killed (a Caffe ``CHECK`` abort on a full disk).

    Any exception while waiting (:class:`_StopNow` from :func:`_stop_raises`)
    kills the child first, so that the caller can remove what it wrote.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)     # fork() with BLAS threads (Python 3.12)
        pid = os.fork()
    if pid == 0:                                         # the child: never returns
        code = 1
        try:
            os.close(read_end)
            os.dup2(write_end, 2)                        # Caffe's FATAL line goes to the parent
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (it kills us)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
            _die_with_parent()
            work()
            code = 0
        except BaseException as err:                     # noqa: B902 - reported to the parent
            with contextlib.suppress(Exception):
                os.write(2, f"{type(err).__name__}: {err}\n".encode(errors="replace"))
        finally:
            os._exit(code)
    os.close(write_end)
    output = b""
    try:
        try:
            while True:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                output = (output + chunk)[-8192:]
            _, status = os.waitpid(pid, 0)
        except BaseException:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
            raise
    finally:
        os.close(read_end)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return
    lines = [ln.strip() for ln in output.decode(errors="replace").splitlines() if ln.strip()]
    fatal = [ln.split("] ", 1)[-1] for ln in lines if ln.startswith("F") and "] " in ln]
    how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
           else f"exit status {os.WEXITSTATUS(status)}")
    if fatal:        # Caffe's CHECK on its writer: the first FATAL line says which
        raise _ChildFailed(f"Caffe could not write it ({fatal[0]}; the disk may be full)")
    others = [ln for ln in lines if not ln.startswith("*** ")]      # glog's stack dump lines
    raise _ChildFailed(f"writing it failed ({others[-1] if others else how})")


def _die_with_parent():
    """Linux: the snapshot child is killed if training is (never a writer left behind)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)      # PR_SET_PDEATHSIG


def _fsync(path):
    """Flushes ``path`` to the disk: a write error the disk reports late (ENOSPC) surfaces here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_learned_net(state_path, model, snapshot_format):
    """Sets the ``learned_net`` a solver state names (the weights file restored with it) to ``model``."""
    from caffe.proto import caffe_pb2
    if snapshot_format == caffe_pb2.SolverParameter.HDF5:
        with h5py.File(state_path, "r+") as f:
            # Caffe's hdf5_save_string: a scalar, null-terminated fixed-length string
            data = model.encode() + b"\0"
            if "learned_net" in f:
                del f["learned_net"]
            tid = h5py.h5t.C_S1.copy()
            tid.set_size(len(data))
            tid.set_strpad(h5py.h5t.STR_NULLTERM)
            space = h5py.h5s.create(h5py.h5s.SCALAR)
            ds = h5py.h5d.create(f.id, b"learned_net", tid, space)
            ds.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(data, dtype=f"S{len(data)}"), mtype=tid)
        return
    state = caffe_pb2.SolverState()
    with open(state_path, "rb") as f:
        state.ParseFromString(f.read())
    state.learned_net = model
    with open(state_path, "wb") as f:
        f.write(state.SerializeToString())


def _check_free_space(solver, folder):
    """In-process snapshots (GPU mode): refuses one the disk has clearly no room for (Caffe would abort)."""
    need = sum(int(b.data.nbytes) for blobs in solver.net.params.values() for b in blobs)
    free = shutil.disk_usage(folder).free
    if free < 2 * need:
        raise OSError(f"the disk has {format_bytes(free)} free, less than the "
                      f"{format_bytes(2 * need)} the weights and solver state need at least")


def _test_series(tests):
    """From test results: {label: (iters, values)} of the weighted test loss and of the other outputs."""
    several = len({t["net"] for t in tests}) > 1
    losses, scores = {}, {}
    for t in tests:
        net = f"net #{t['net']} " if several else ""
        weighted = [t["loss_weights"][k] * v for k, v in t["outputs"].items() if t["loss_weights"][k]]
        if weighted:
            it, vals = losses.setdefault(f"test {net}loss", ([], []))
            it.append(t["iter"])
            vals.append(sum(weighted))
        for k, v in t["outputs"].items():
            if not t["loss_weights"][k]:
                it, vals = scores.setdefault(f"test {net}{k}", ([], []))
                it.append(t["iter"])
                vals.append(v)
    return losses, scores


SCORE_AXIS_01 = (-0.02, 1.02)


def score_axis(test_scores):
    """The y range of the test-output panel: 0 to 1 when every output lies there (accuracy,
    recall...), so that a 0.4-point wobble does not fill the panel; else the outputs' own range
    (padded), each series' minimum and maximum being printed in the legend."""
    values = np.array([v for _, vals in test_scores.values() for v in vals], dtype=float)
    values = values[np.isfinite(values)]
    if not values.size or (values.min() >= 0 and values.max() <= 1):
        return SCORE_AXIS_01
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    return lo - pad, hi + pad


def plot_curve(histories, path, *, title="Training loss", smooth=10):
    """Draws loss curves (``{label: history}`` or one history) to ``path``.

    One history with ``tests`` (from :func:`train`) also gets its test
    scores: the weighted test loss beside the training loss, and the other
    test outputs (accuracy...) on a second panel, from 0 to 1 when they all
    lie there (:func:`score_axis`), with each one's range in the legend.
    """
    plt = pyplot()
    test_losses, test_scores = {}, {}
    if "iters" in histories:
        test_losses, test_scores = _test_series(histories.get("tests") or [])
        histories = {"training loss": histories}
    rows = 2 if test_scores else 1
    fig, axes = plt.subplots(rows, 1, figsize=(7, 4 if rows == 1 else 6.5), sharex=True, squeeze=False)
    ax = axes[0][0]
    for label, h in histories.items():
        it, loss = np.asarray(h["iters"]), np.asarray(h["loss"], dtype=float)
        if not len(it):
            continue
        line, = ax.plot(it, loss, alpha=0.25)
        if len(loss) >= smooth > 1:
            kernel = np.ones(smooth) / smooth
            ax.plot(it[smooth - 1:], np.convolve(loss, kernel, mode="valid"), color=line.get_color(),
                    label=f"{label} (moving average of {smooth})")
        else:
            line.set_alpha(1.0)
            line.set_label(label)
    for label, (it, vals) in test_losses.items():
        ax.plot(it, vals, "o-", label=label)
    positive = [v for h in histories.values() for v in h["loss"] if v > 0]
    positive += [v for _, vals in test_losses.values() for v in vals if v > 0]
    if positive and max(positive) / max(min(positive), 1e-12) > 1e2:
        ax.set_yscale("log")
    ax.set_ylabel(("weighted loss" if test_losses else "weighted training loss") +
                  (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if test_scores:
        low = axes[1][0]
        for label, (it, vals) in test_scores.items():
            low.plot(it, vals, "o-", label=f"{label} ({min(vals):.4g} to {max(vals):.4g})")
        lo, hi = score_axis(test_scores)
        low.set_ylim(lo, hi)
        low.ticklabel_format(axis="y", useOffset=False, style="plain")
        low.set_ylabel("test net outputs" + (" (0 to 1)" if (lo, hi) == SCORE_AXIS_01 else ""))
        low.grid(alpha=0.3)
        low.legend()
    axes[-1][0].set_xlabel("iteration")
    return save_figure(fig, path)
