"""The run loop: Caffe's ``Solver::Solve`` and ``Step``, one iteration at a time (see
:mod:`caffe_losses.training` for what it follows)."""

import os
import shlex
import shutil
import signal
import sys
from collections import deque

import numpy as np

from caffe_losses.files.safety import format_bytes, not_a_file
from caffe_losses.nets.preflight import (check_data_sources, check_net_structure, check_solverstate, check_weights,
                                         snapshot_prefix, solver_preflight)
from caffe_losses.nets.prototxt import solver_nets
from caffe_losses.training.console import _Progress, _Signals, _signals_held, _stop_raises
from caffe_losses.training.curves import CURVE_EXTRA_NOTE, plot_curve
from caffe_losses.training.errors import StoppedAgain, TrainingError, _layer_error, _LayerNames, _warnings_to
from caffe_losses.training.snapshots import (_check_free_space, _ChildFailed, _fsync, _in_child, _partial_prefix,
                                             _set_learned_net, snapshot_files)
from caffe_losses.training.solver import (_build_solver, _set_mode, _solver_type, _weights_list, check_max_iter,
                                          read_solver)


def net_loss(net):
    """The weighted loss of ``net``'s last forward: ``sum(w * top)`` over loss outputs."""
    weights = net.blob_loss_weights
    total = 0.0
    for name in net.outputs:
        w = float(weights.get(name, 0.0))
        if w:
            total += w * float(np.sum(net.blobs[name].data))
    return total


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
