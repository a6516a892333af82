"""Train a solver as `caffe train` does, with progress, test scores, a curve and safe interrupts.

Does what `caffe train -solver SOLVER` does (Caffe's test intervals and
final test, snapshots, snapshot_after_train, -weights, -snapshot, -gpu),
and also: checks the nets with the `check` rules and the files Caffe would
abort on before training; shows a progress line (iteration, loss, rate,
ETA; when the output is not a terminal, a line at each 10% and every 20 s)
and every test-net output at each test; draws the training curve with the
test scores as a PNG; on Ctrl-C or SIGTERM (docker stop) saves a snapshot,
prints its files and the command that resumes from it. Snapshots are
written under a temporary name and renamed: a full disk or a second
Ctrl-C never leaves a half-written file. Paths inside the solver are relative to the current
directory, as with `caffe train`. Caffe's single-dash spellings work too
(-solver, -weights, -snapshot, -gpu).

  caffe-losses train solver.prototxt
  caffe-losses train solver.prototxt --weights init_weights.caffemodel
  caffe-losses train solver.prototxt --snapshot snapshots/net_iter_500.solverstate

Exit status: 0 trained; 1 a check failed or a layer raised an error; 2 bad
usage; 128 + signal number when stopped by Ctrl-C (130) or SIGTERM (143),
after saving a snapshot.
"""

import os
import shlex
import sys

from caffe_losses.nets.lint import lint_file
from caffe_losses.nets.preflight import PreflightError
from caffe_losses.files.safety import OutputError, figure_output
from caffe_losses.training import StoppedAgain, TrainingError, train


def add_arguments(parser):
    parser.add_argument("solver", nargs="?", help="solver.prototxt")
    parser.add_argument("--solver", "-solver", dest="solver_flag", metavar="SOLVER",
                        help="the solver, as caffe's -solver (same as the positional argument)")
    parser.add_argument("--weights", "-weights",
                        help=".caffemodel(s) to start from, comma-separated (fine-tuning, or net-surgery "
                             "output); replaces the solver's weights field")
    parser.add_argument("--snapshot", "-snapshot", help=".solverstate to resume from")
    parser.add_argument("--gpu", "-gpu",
                        help="GPU id (CUDA builds); default: the solver's solver_mode/device_id, else CPU")
    parser.add_argument("--max-iter", type=int,
                        help="stop at this iteration instead of the solver's max_iter "
                             "(the learning-rate schedule is unchanged; beyond max_iter with "
                             "lr_policy poly it is refused: its rate would go negative)")
    parser.add_argument("--curve", help="where to write the training curve PNG "
                        "(default: training_curve.png next to the solver; a name without an extension "
                        "gets .png); checked before training")
    parser.add_argument("--no-curve", action="store_true", help="do not draw the training curve")
    parser.add_argument("--no-check", action="store_true",
                        help="train even if `caffe-losses check` finds errors in the nets")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress line (test scores and snapshots are still printed)")
    parser.add_argument("--progress-every", type=float, default=20.0, metavar="SECONDS",
                        help="when the output is not a terminal, a progress line at least this often "
                             "(default 20), besides one at each 10%%")
    parser.add_argument("--caffe-log", action="store_true", help="show Caffe's own INFO log too")


def _fail(message):
    print(f"caffe-losses train: {message}", file=sys.stderr)
    return 1


def _lint(solver):
    """Runs the `check` rules; prints the findings; returns the number of errors."""
    findings = lint_file(solver)
    for net_path, finding in findings:
        print(f"{net_path}: {finding}", file=sys.stderr)
    return sum(f.severity == "error" for _, f in findings)


def run(args):
    if args.solver and args.solver_flag and args.solver != args.solver_flag:
        print("caffe-losses train: give the solver once", file=sys.stderr)
        return 2
    solver = args.solver or args.solver_flag
    if not solver:
        print("caffe-losses train: which solver? caffe-losses train solver.prototxt", file=sys.stderr)
        return 2
    if args.weights and args.snapshot:
        print("caffe-losses train: give --weights or --snapshot, not both", file=sys.stderr)
        return 2
    gpu = None
    if args.gpu is not None:
        if not args.gpu.strip().isdigit():
            print(f"caffe-losses train: --gpu {args.gpu}: one GPU id. Caffe's command line refuses "
                  f"several GPUs for nets with Python layers: train those with Caffe's python/train.py "
                  f"(NCCL)", file=sys.stderr)
            return 2
        gpu = int(args.gpu)
    if args.caffe_log and "caffe" not in sys.modules:
        os.environ["GLOG_minloglevel"] = "0"
        os.environ.setdefault("GLOG_logtostderr", "1")
    if not os.path.isfile(solver):
        return _fail(f"solver file not found: {solver}")
    curve = None
    if not args.no_curve:       # checked before training, not after it
        default = os.path.join(os.path.dirname(os.path.abspath(solver)), "training_curve.png")
        inputs = {"solver": solver, "--weights": args.weights, "--snapshot": args.snapshot}
        try:
            curve = figure_output(args.curve or default, inputs, option="--curve")
        except OutputError as err:
            if args.curve:
                print(f"caffe-losses train: {err}", file=sys.stderr)
                return 2
            print(f"caffe-losses train: note: the training curve will not be drawn: {err} "
                  f"(give --curve PATH, or --no-curve)", file=sys.stderr)
    try:
        if not args.no_check:
            errors = _lint(solver)
            if errors:
                return _fail(f"{errors} error(s) in {solver} and its nets (listed above): fix them, or "
                             f"train anyway with --no-check")
        result = train(solver, weights=args.weights, snapshot=args.snapshot, max_iter=args.max_iter,
                       progress=not args.no_progress, report=True, curve_png=curve, gpu=gpu,
                       progress_every=args.progress_every)
    except TrainingError as err:
        if err.details:
            print(err.details, file=sys.stderr, end="")
        return _fail(err)
    except (FileNotFoundError, PreflightError, ValueError) as err:
        return _fail(err)
    except StoppedAgain as err:
        print(f"\ncaffe-losses train: {err.message}", file=sys.stderr)
        return 128 + int(err.signum)
    except KeyboardInterrupt:
        print("\ncaffe-losses train: interrupted: stopped (every snapshot printed above is complete; "
              "no other was written)", file=sys.stderr)
        return 130
    if result["iters"]:
        print(f"trained to iteration {result['iters'][-1]}; final loss {result['loss'][-1]:.5g}")
    elif result["interrupted"] is None:
        print(f"nothing to train: the solver is at iteration {result['solver'].iter}")
    if result["curve"]:
        print(f"training curve: {result['curve']}")
    elif result["curve_note"]:
        print(result["curve_note"])
    if result["interrupted"] is not None:
        if result["snapshots"]:
            print(f"resume with: caffe-losses train {shlex.quote(solver)} --snapshot "
                  f"{shlex.quote(result['snapshots'][-1][2])}")
        return 128 + int(result["interrupted"])
    return 0
