"""Train a solver through pycaffe with a progress bar, a loss curve and Ctrl-C snapshots.

Does what `caffe train -solver SOLVER` does (test intervals, snapshots,
snapshot_after_train), and also: a progress bar with iteration, loss, rate
and ETA; the training curve as a PNG; a snapshot when you press Ctrl-C.
Paths inside the solver are relative to the current directory, as with
`caffe train`.

  caffe-losses train solver.prototxt
  caffe-losses train solver.prototxt --weights init_weights.caffemodel
  caffe-losses train solver.prototxt --snapshot snapshots/net_iter_500.solverstate
"""

import os
import sys

from caffe_losses.training import train


def add_arguments(parser):
    parser.add_argument("solver", help="solver.prototxt")
    parser.add_argument("--weights", help=".caffemodel to start from (fine-tuning, or net-surgery output)")
    parser.add_argument("--snapshot", help=".solverstate to resume from")
    parser.add_argument("--max-iter", type=int, help="stop at this iteration instead of the solver's max_iter")
    parser.add_argument("--curve", help="where to write the training curve PNG "
                        "(default: training_curve.png next to the solver)")
    parser.add_argument("--gpu", type=int, help="GPU id (CUDA builds); default CPU")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--caffe-log", action="store_true",
                        help="show Caffe's own INFO log (test-net scores, snapshots)")


def run(args):
    if args.caffe_log and "caffe" not in sys.modules:
        os.environ["GLOG_minloglevel"] = "0"
        os.environ.setdefault("GLOG_logtostderr", "1")
    if args.weights and args.snapshot:
        print("caffe-losses train: give --weights or --snapshot, not both", file=sys.stderr)
        return 2
    curve = args.curve or os.path.join(os.path.dirname(os.path.abspath(args.solver)), "training_curve.png")
    try:
        result = train(args.solver, weights=args.weights, snapshot=args.snapshot,
                       max_iter=args.max_iter, progress=not args.no_progress, curve_png=curve,
                       gpu=args.gpu)
    except (FileNotFoundError, ValueError) as err:
        print(f"caffe-losses train: {err}", file=sys.stderr)
        return 1
    if result["iters"]:
        print(f"trained to iteration {result['iters'][-1]}; final loss {result['loss'][-1]:.5g}; "
              f"curve: {curve}")
    if result["interrupted"]:
        print("interrupted: snapshot saved", file=sys.stderr)
        return 130
    return 0
