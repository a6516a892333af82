"""The solver handed to Caffe: read, checked, built with Caffe's testing and snapshots left to
the run, on the CPU or the GPU as ``caffe train`` chooses."""

import os
import shutil
import subprocess
import sys
import tempfile

from google.protobuf import text_format

from caffe_losses.nets.preflight import PreflightError
from caffe_losses.nets.prototxt import read_solver_param
from caffe_losses.training.errors import TrainingError
from caffe_losses.training.snapshots import _partial_prefix

# caffe (pycaffe) is imported inside the functions that use it: the CLI
# imports this module, and must run without pycaffe to say that it is missing.


def read_solver(path):
    """Parses a ``solver.prototxt`` into a ``caffe_pb2.SolverParameter``."""
    return read_solver_param(path)


def _solver_type(param):
    """The solver's type name, with the deprecated ``solver_type`` enum read as Caffe upgrades it."""
    from caffe.proto import caffe_pb2
    if not param.HasField("type") and param.HasField("solver_type"):
        name = caffe_pb2.SolverParameter.SolverType.Name(param.solver_type)
        return {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad", "RMSPROP": "RMSProp",
                "ADADELTA": "AdaDelta", "ADAM": "Adam"}[name]
    return param.type


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


# test_interval for the solver handed to Caffe: its own TestAll never runs
# (iter % (2^31 - 1) == 0 only at 0, and test_initialization is turned off)
_NEVER = 2 ** 31 - 1


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
