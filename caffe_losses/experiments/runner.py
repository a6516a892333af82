"""Training runs for the experiments: template copies, seeded solvers, test-set curves.

An experiment trains a recipe and its baseline for several solver seeds.
Each (variant, seed) pair is one :class:`Job`: a prepared folder (the
template's net and data), a solver written for that seed, and an evaluation
function that turns a forward pass over the whole test split into the task's
metrics.  :func:`run_job` trains the solver with ``solver.step`` and
evaluates the test net at iteration 0 and at ten points up to ``max_iter``,
so every run yields a curve of its task metric on the test set;
:func:`run_jobs` runs jobs one after the other or in worker processes (one
per core; each job is deterministic, whatever the number of workers).

Nothing here deletes files: folders are created fresh and a copy into an
existing folder is an error.
"""

import concurrent.futures
import dataclasses
import importlib
import multiprocessing
import os
import shutil
import time

import numpy as np
from google.protobuf import text_format

from caffe_losses.files.figures import pyplot, save_figure
from caffe_losses.nets.prototxt import read_net_param, read_solver_param, working_directory
from caffe_losses.nets.templates import TEMPLATE_ROOT, prepare_data

# caffe (pycaffe) and matplotlib (optional, the demo extra) are imported inside the
# functions that use them: the CLI imports this module, and must run without either
# (tests/test_layout.py).

__all__ = ["SEEDS", "SMALL_SEEDS", "seed_list", "Job", "Variant", "plan", "copy_template", "write_net",
           "write_solver", "eval_points", "run_job", "run_jobs", "by_variant", "finals",
           "default_workers", "plot_curves", "range_bars"]


def seed_list(n):
    """The first ``n`` solver seeds: 1701, 1702, ..."""
    return tuple(1701 + k for k in range(int(n)))


SEEDS = seed_list(5)
"""Solver seeds of every experiment (weight initialisation); the data are fixed."""
SMALL_SEEDS = seed_list(2)
"""Seeds with ``small=True`` (structure checks: two, so the spread exists)."""
N_POINTS = 10
"""Test-set evaluations per run, besides the one at iteration 0."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One training run.

    Attributes:
      family: experiment name (``infogain``, ...).
      variant: key of the net trained (``ours``, ``baseline``, a recipe name).
      seed: the solver's ``random_seed``.
      folder: prepared folder; the solver's relative paths resolve against it.
      solver: solver file name inside ``folder``.
      max_iter: iterations to train.
      evaluate: ``"module:function"``; called as ``function(test_net, n_test)``,
        returns ``(metrics: {name: float}, arrays: dict)``.
      n_test: rows of the test split.
      fixed_from: a ``.caffemodel`` from which ``fixed_layers`` are copied
        after the solver's seeded fillers ran (e.g. net-surgery's kernel).
      fixed_layers: layer names copied from ``fixed_from``.
      cost: relative run time, to start the longest jobs first.
    """
    family: str
    variant: str
    seed: int
    folder: str
    solver: str
    max_iter: int
    evaluate: str
    n_test: int
    fixed_from: str = None
    fixed_layers: tuple = ()
    cost: float = 1.0

    def label(self):
        return f"{self.family} {self.variant} seed {self.seed}"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One net of an experiment, before it is prepared.

    Attributes:
      key: the variant's name in the results (``ours``, ``baseline``, ...).
      folder: its folder, relative to the experiment's.
      template: the template copied there; its own ``prepare`` step
        (``template.yaml``) writes the data and returns ``info``:
        ``info["n_test"]`` is the number of test rows (and ``info["weights"]``
        the file ``fixed_layers`` come from).
      evaluate: ``"module:function"`` (see :class:`Job`).
      edit_net: ``edit_net(train_val_path)`` turns the template's net into
        this variant's (e.g. the baseline's native loss), or None.
      fixed_layers: layers copied from ``info["weights"]`` (see :class:`Job`).
      cost: relative run time.
    """
    key: str
    folder: str
    template: str
    evaluate: str
    edit_net: object = None
    fixed_layers: tuple = ()
    cost: float = 1.0


def plan(family, out_dir, variants, *, small=False, seeds=None, small_iters=None):
    """Prepares every variant under the new folder ``out_dir``; returns one job per variant and seed.

    Each variant gets a copy of its template with its data (the template's
    ``prepare`` step), its net edit, and one solver per seed (the template's, or ``small_iters`` iterations
    with ``small=True``).
    """
    seeds = tuple(seeds or (SMALL_SEEDS if small else SEEDS))
    os.makedirs(out_dir)
    jobs = []
    for v in variants:
        folder = copy_template(v.template, os.path.join(out_dir, v.folder))
        info = prepare_data(folder, small=small)
        if v.edit_net is not None:
            v.edit_net(os.path.join(folder, "train_val.prototxt"))
        fixed = {"fixed_from": info["weights"], "fixed_layers": tuple(v.fixed_layers)} if v.fixed_layers else {}
        for seed in seeds:
            solver, max_iter = write_solver(folder, seed, max_iter=small_iters if small else None)
            jobs.append(Job(family, v.key, seed, folder, solver, max_iter, v.evaluate, info["n_test"],
                            cost=v.cost, **fixed))
    return jobs


def copy_template(name, folder):
    """Copies ``prototxt_templates/name`` to the new folder ``folder`` (which must not exist)."""
    if os.path.exists(folder):
        raise FileExistsError(f"{folder} exists; the experiments write only into new folders")
    shutil.copytree(os.path.join(TEMPLATE_ROOT, name), folder)
    return folder


def write_net(path, net, note):
    """Writes a ``NetParameter`` (or any message: a solver) as prototxt text, with a ``# note`` header."""
    with open(path, "w") as f:
        f.write(f"# {note}\n" + text_format.MessageToString(net))
    return path


def native_baseline(path, native, note, *, name="loss", normalization="VALID", **loss_param):
    """Replaces the Python loss ``name`` of the net at ``path`` by Caffe's layer ``native``.

    The same bottoms and tops; ``loss_param { normalization }`` by name, and
    the other ``loss_param`` fields from the keywords (``ignore_label=255``).
    Returns the layer, for a recipe to set more (``softmax_param``).
    """
    from caffe.proto import caffe_pb2
    net = read_net_param(path)
    (layer,) = [l for l in net.layer if l.name == name]
    layer.type = native
    layer.ClearField("python_param")
    layer.loss_param.normalization = caffe_pb2.LossParameter.NormalizationMode.Value(normalization)
    for key, value in loss_param.items():
        setattr(layer.loss_param, key, value)
    write_net(path, net, note)
    return layer


def write_solver(folder, seed, *, source="solver.prototxt", max_iter=None):
    """Writes ``solver_seed<seed>.prototxt`` beside ``source``: the same solver, seeded.

    Caffe's own testing, display and snapshots are off (the runner evaluates
    the test net itself and keeps no weights); everything else, including
    ``max_iter`` unless given, is the template's.

    Returns:
      (file name, max_iter).
    """
    param = read_solver_param(os.path.join(folder, source))
    param.random_seed = int(seed)
    if max_iter is not None and int(max_iter) != param.max_iter:
        # the rate drops stay at the same fractions of the run
        steps = sorted({max(1, int(round(v * int(max_iter) / param.max_iter))) for v in param.stepvalue})
        del param.stepvalue[:]
        param.stepvalue.extend(steps)
        param.max_iter = int(max_iter)
    param.test_interval = param.max_iter + 1   # never reached: no test by Caffe
    param.test_initialization = False
    param.display = 0
    param.snapshot = 0
    param.snapshot_after_train = False
    name = f"solver_seed{seed}.prototxt"
    write_net(os.path.join(folder, name), param,
              f"{source} with random_seed {seed}; testing and snapshots are done by the demo")
    return name, int(param.max_iter)


def eval_points(max_iter, n=N_POINTS):
    """Iterations at which a run is evaluated: 0 and ``n`` points up to ``max_iter``."""
    return sorted({0} | {int(round(max_iter * k / n)) for k in range(1, n + 1)})


def _function(spec):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _copy_fixed_layers(net, caffemodel, layers):
    """Copies the blobs of ``layers`` from a ``.caffemodel`` into ``net``'s parameters."""
    from caffe.proto import caffe_pb2
    param = caffe_pb2.NetParameter()
    with open(caffemodel, "rb") as f:
        param.ParseFromString(f.read())
    found = {layer.name: layer for layer in param.layer}
    for name in layers:
        if name not in found or name not in net.params:
            raise ValueError(f"{caffemodel}: no parameters of layer '{name}' to copy")
        for i, blob in enumerate(found[name].blobs):
            target = net.params[name][i].data
            target[...] = np.asarray(blob.data, dtype=target.dtype).reshape(target.shape)


def _check_finite(solver, job):
    """A run whose loss turned NaN or inf is refused, not scored (its metrics would be noise)."""
    for name in solver.net.outputs:
        value = solver.net.blobs[name].data
        if not np.all(np.isfinite(value)):
            raise RuntimeError(f"{job.label()}: the training diverged: its output '{name}' is "
                               f"{value.ravel()[0]} at iteration {solver.iter}")


def run_job(job):
    """Trains one job; returns its test-set curve and final evaluation.

    Returns:
      dict with ``job``, ``iters`` (evaluation points), ``curves``
      (``{metric: [value per point]}``), ``final`` (metrics at ``max_iter``),
      ``arrays`` (the final evaluation's arrays) and ``seconds``.
    """
    import caffe
    caffe.set_mode_cpu()
    evaluate = _function(job.evaluate)
    t0 = time.time()
    with working_directory(job.folder):
        solver = caffe.get_solver(job.solver)
        if job.fixed_from:
            _copy_fixed_layers(solver.net, job.fixed_from, job.fixed_layers)
        test_net = solver.test_nets[0]
        test_net.share_with(solver.net)   # the test net then sees the trained weights
        iters, curves, arrays = [], {}, None
        for point in eval_points(job.max_iter):
            if point > solver.iter:
                solver.step(point - solver.iter)
                _check_finite(solver, job)
            metrics, arrays = evaluate(test_net, job.n_test)
            iters.append(int(solver.iter))
            for name, value in metrics.items():
                curves.setdefault(name, []).append(float(value))
    return {"job": job, "iters": iters, "curves": curves,
            "final": {name: values[-1] for name, values in curves.items()},
            "arrays": arrays, "seconds": time.time() - t0}


def default_workers():
    """Worker processes for :func:`run_jobs`: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not Linux
        return max(1, os.cpu_count() or 1)


def _report(progress, done, total, result):
    job = result["job"]
    final = ", ".join(f"{k} {v:.3f}" for k, v in list(result["final"].items())[:2])
    log(progress, f"[{done}/{total}] {job.label()}: {job.max_iter} iterations, {final} "
                  f"({result['seconds']:.1f} s)")


def run_jobs(jobs, *, workers=1, progress=None):
    """Runs ``jobs``; returns their results in the same order.

    Args:
      jobs: list of :class:`Job`.
      workers: 1 runs them here, one after the other; more runs them in that
        many fresh processes (``spawn``), the costliest first.  Each worker
        uses one BLAS thread, so a job's numbers do not depend on ``workers``.
      progress: a stream for one line per finished job, or None.
    """
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(run_job(job))
            _report(progress, len(results), len(jobs), results[-1])
        return results
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost)
    results = [None] * len(jobs)
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})   # inherited by the workers started below
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                                                  mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(run_job, jobs[i]): i for i in order}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as err:
                raise RuntimeError(f"run '{jobs[i].label()}' failed: {err}") from err
            _report(progress, done, len(jobs), results[i])
    except BaseException:    # Ctrl-C or a failed job: start no more jobs, stop the running ones
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results


def by_variant(results):
    """``{variant: [result per seed, in seed order]}``."""
    out = {}
    for result in sorted(results, key=lambda r: r["job"].seed):
        out.setdefault(result["job"].variant, []).append(result)
    return out


def finals(results, metric):
    """``metric`` at the end of each run of ``results`` (one variant's runs, in seed order)."""
    return [r["final"][metric] for r in results]


def plot_curves(panels, path, *, title, n_seeds):
    """Writes a PNG of test-set metrics against iterations, one panel per metric.

    Args:
      panels: list of ``{"title": str, "ylabel": str, "better": "higher"|"lower",
        "series": [(legend label, results of that variant)], "hline": (y, label) or None}``.
        Each series is drawn as the mean over its runs (seeds), with the
        range over the runs shaded.
      path: PNG file.
      title: figure title.
      n_seeds: seeds per series (said in the title).
    """
    plt = pyplot()
    cols = min(len(panels), 2)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.9 * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        for label, results in panel["series"]:
            iters = np.asarray(results[0]["iters"])
            values = np.array([r["curves"][panel["metric"]] for r in results])
            line, = ax.plot(iters, values.mean(axis=0), lw=1.8, label=label,
                            **({"ls": "--"} if "baseline" in label.lower() else {}))
            if len(results) > 1:
                ax.fill_between(iters, values.min(axis=0), values.max(axis=0), color=line.get_color(),
                                alpha=0.15, lw=0)
        if panel.get("hline"):
            y, label = panel["hline"]
            ax.axhline(y, color="0.4", lw=1, ls=":", label=label)
        if panel.get("log"):
            import matplotlib.ticker     # matplotlib: optional (the demo extra)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        if panel.get("ylim"):
            ax.set_ylim(*panel["ylim"])
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel("training iteration")
        scale = ", log scale" if panel.get("log") else ""
        ax.set_ylabel(f"{panel['ylabel']} ({panel['better']} is better{scale})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc=panel.get("legend", "best"))
    fig.suptitle(f"{title}\non the test split: mean of {n_seeds} solver seed(s), shaded: range over the seeds",
                 fontsize=11)
    return save_figure(fig, path)


def range_bars(ax, x, values, *, k, label):
    """The ``k``-th (0 or 1) bar of a pair at each ``x``: the mean of ``values`` (one row per run,
    i.e. per seed), with whiskers over the range of the runs."""
    values = np.asarray(values)
    mean = values.mean(axis=0)
    ax.bar(np.asarray(x) + (k - 0.5) * 0.4, mean, width=0.4, label=label,
           yerr=np.maximum([mean - values.min(axis=0), values.max(axis=0) - mean], 0),
           error_kw={"lw": 0.8, "capsize": 2})


def log(progress, text):
    """One line on the progress stream, if any."""
    if progress is not None:
        progress.write(text + "\n")
        progress.flush()
