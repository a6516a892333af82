"""Training through pycaffe, with progress, a loss curve and safe interrupts.

``train(solver_path)`` does what ``caffe train -solver`` does (the solver's own
test intervals, snapshots and ``snapshot_after_train``), iteration by
iteration, so it can show a progress bar (iteration, loss, rate, ETA), record
the training curve, and save a snapshot when interrupted with Ctrl-C.
"""

import contextlib
import math
import os
import sys
import time

import numpy as np

from caffe_losses.preflight import check_data_sources, check_weights
from caffe_losses.prototxt import read_net_param, read_solver_param

__all__ = ["read_solver", "train", "plot_curve", "net_loss", "collect_histories"]

_COLLECTORS = []


@contextlib.contextmanager
def collect_histories():
    """Collects the history of every :func:`train` call made inside the block.

    Yields a list that fills with ``{"label", "solver", "iters", "loss"}``
    dicts (``caffe-losses demo`` draws its training curves from them).
    """
    runs = []
    _COLLECTORS.append(runs)
    try:
        yield runs
    finally:
        _COLLECTORS.remove(runs)


def read_solver(path):
    """Parses a ``solver.prototxt`` into a ``caffe_pb2.SolverParameter``."""
    return read_solver_param(path)


def _preflight_data(param):
    """Caffe aborts on a missing data source: look before building the nets."""
    from caffe.proto import caffe_pb2
    files = [(param.net, caffe_pb2.TRAIN), (param.net, caffe_pb2.TEST), (param.train_net, caffe_pb2.TRAIN)]
    files += [(path, caffe_pb2.TEST) for path in param.test_net]
    for path, phase in files:
        if not path:
            continue
        check_data_sources(read_net_param(path), phase)


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
    def __init__(self, total, start, stream, enabled, label=""):
        self.total, self.start_iter, self.stream = total, start, stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.time()
        self.last_pct = -1
        self.label = label + " " if label else ""

    def update(self, it, loss, final=False):
        if not self.enabled:
            return
        done = it - self.start_iter
        todo = self.total - self.start_iter
        elapsed = time.time() - self.t0
        rate = done / elapsed if elapsed > 0 else float("nan")
        eta = (todo - done) / rate if rate and rate > 0 else float("nan")
        frac = done / todo if todo > 0 else 1.0
        pct = int(frac * 100)
        if not self.tty and pct // 10 == self.last_pct // 10 and (not final or pct == self.last_pct):
            return
        self.last_pct = pct
        width = 24
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        line = (f"{self.label}[{bar}] {it}/{self.total} loss {loss:.4g} "
                f"{rate:.1f} it/s ETA {_fmt_time(eta)}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def train(solver_path, *, weights=None, snapshot=None, max_iter=None, progress=True,
          curve_png=None, label="", stream=None, gpu=None):
    """Trains the solver's net; returns the history.

    Args:
      solver_path: ``solver.prototxt``; relative paths inside it (the net,
        ``snapshot_prefix``) are resolved against the working directory, as
        with ``caffe train``.
      weights: ``.caffemodel`` to initialise from (fine-tuning, or the
        output of ``net-surgery``).
      snapshot: ``.solverstate`` to resume from.
      max_iter: stop at this iteration instead of the solver's ``max_iter``.
      progress: show the progress bar on ``stream`` (stderr by default).
      curve_png: write the training curve there.
      label: text before the progress bar.
      gpu: device id for GPU mode (CUDA builds), or None for CPU.

    Returns:
      dict with ``iters`` and ``loss`` (weighted training loss per
      iteration), ``solver`` (the pycaffe solver) and ``interrupted``.
    """
    import caffe
    stream = sys.stderr if stream is None else stream
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(int(gpu))
        caffe.set_mode_gpu()
    param = read_solver(solver_path)
    _preflight_data(param)
    solver = caffe.get_solver(solver_path)
    if weights:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file not found: {weights}")
        check_weights(weights, solver.net, option="--weights")
        solver.net.copy_from(weights)
        for net in solver.test_nets:
            net.share_with(solver.net)
    if snapshot:
        if not os.path.isfile(snapshot):
            raise FileNotFoundError(f"snapshot file not found: {snapshot}")
        solver.restore(snapshot)
    total = int(max_iter if max_iter is not None else param.max_iter)
    bar = _Progress(total, solver.iter, stream, progress, label)
    iters, losses = [], []
    interrupted = False
    try:
        while solver.iter < total:
            solver.step(1)
            value = net_loss(solver.net)
            iters.append(solver.iter)
            losses.append(value)
            bar.update(solver.iter, value)
        bar.update(solver.iter, losses[-1] if losses else float("nan"), final=True)
        if param.snapshot_after_train and param.snapshot_prefix and iters:
            solver.snapshot()
    except KeyboardInterrupt:
        interrupted = True
        if progress:
            stream.write("\ninterrupted: saving a snapshot before exiting\n")
        if param.snapshot_prefix:
            solver.snapshot()
    n = min(len(iters), len(losses))   # an interrupt can fall between the two appends
    iters, losses = iters[:n], losses[:n]
    solver_dir = os.path.basename(os.path.dirname(os.path.abspath(solver_path)))
    for runs in _COLLECTORS:
        runs.append({"label": label or solver_dir, "solver": os.path.abspath(solver_path),
                     "iters": list(iters), "loss": list(losses)})
    if curve_png and iters and _has_matplotlib(stream):
        plot_curve({"iters": iters, "loss": losses}, curve_png,
                   title=f"Training loss: {os.path.basename(os.path.dirname(os.path.abspath(solver_path)))}"
                   f"/{os.path.basename(solver_path)}")
    return {"iters": iters, "loss": losses, "solver": solver, "interrupted": interrupted}


def _has_matplotlib(stream):
    # the picture needs the demo extra; a finished training run is no error without it
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        stream.write("note: no training curve picture: it needs matplotlib "
                     "(pip install 'caffe-losses[demo]')\n")
        return False
    return True


def plot_curve(histories, path, *, title="Training loss", smooth=10):
    """Draws one or more loss curves (``{label: history}`` or one history) to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if "iters" in histories:
        histories = {"training loss": histories}
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, h in histories.items():
        it, loss = np.asarray(h["iters"]), np.asarray(h["loss"], dtype=float)
        line, = ax.plot(it, loss, alpha=0.25)
        if len(loss) >= smooth > 1:
            kernel = np.ones(smooth) / smooth
            ax.plot(it[smooth - 1:], np.convolve(loss, kernel, mode="valid"), color=line.get_color(),
                    label=f"{label} (moving average of {smooth})")
        else:
            line.set_alpha(1.0)
            line.set_label(label)
    positive = [v for h in histories.values() for v in h["loss"] if v > 0]
    if positive and max(positive) / max(min(positive), 1e-12) > 1e2:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("weighted training loss" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
