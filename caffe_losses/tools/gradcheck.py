"""Check any Python layer's gradient inside a real caffe.Net (Caffe's GradientChecker).

Builds a one-layer net (an Input per bottom, force_backward: true), fills the
bottoms with random data, and compares the diffs from net.backward() with
central finite differences of the net's objective, as Caffe's C++
GradientChecker does (float32, stepsize 1e-2, threshold 1e-2 by default).

  caffe-losses gradcheck --module caffe_losses --layer SmoothL1Loss \\
      --bottom pred=8x3 --bottom target=8x3 --param-str "{sigma: 2}"
  caffe-losses gradcheck --module mylayers --layer MyLoss \\
      --bottom scores=4x10 --bottom label=4:int:0:10 --wrt scores

A bottom is NAME=DIMS (Gaussian data, checked) or NAME=DIMS:int:LOW:HIGH
(integers in [LOW, HIGH), e.g. labels, not checked). Exit status 0 when the
gradients agree, 1 when they do not.
"""

import sys

import numpy as np


def parse_bottom(text):
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--bottom must look like NAME=4x3 or NAME=4:int:0:10. Received: {text!r}")
    parts = spec.split(":")
    try:
        dims = tuple(int(d) for d in parts[0].lower().split("x"))
    except ValueError:
        raise ValueError(f"--bottom {name}: dims must be integers joined by 'x'. Received: {parts[0]!r}") from None
    if any(d <= 0 for d in dims):
        raise ValueError(f"--bottom {name}: dims must be positive. Received: {parts[0]!r}")
    if len(parts) == 1:
        return name, dims, None
    if len(parts) != 4 or parts[1] != "int":
        raise ValueError(f"--bottom {name}: integer bottoms are NAME=DIMS:int:LOW:HIGH. Received: {spec!r}")
    low, high = int(parts[2]), int(parts[3])
    if high <= low:
        raise ValueError(f"--bottom {name}: need LOW < HIGH. Received: {low}, {high}")
    return name, dims, (low, high)


def add_arguments(parser):
    parser.add_argument("--module", required=True, help="python_param module (must be importable)")
    parser.add_argument("--layer", required=True, help="python_param layer class")
    parser.add_argument("--param-str", default="", help="python_param param_str")
    parser.add_argument("--bottom", action="append", required=True, metavar="NAME=DIMS[:int:LOW:HIGH]",
                        help="a bottom, in order (repeat for each)")
    parser.add_argument("--top", action="append", metavar="NAME", help="top names (default: one top 'out')")
    parser.add_argument("--wrt", action="append", metavar="NAME",
                        help="bottoms to check (default: every non-integer bottom)")
    parser.add_argument("--loss-weight", type=float, default=2.0,
                        help="loss weight on the first top; 0 for a non-loss layer (default 2)")
    parser.add_argument("--stepsize", type=float, default=1e-2, help="finite-difference step (default 1e-2)")
    parser.add_argument("--threshold", type=float, default=1e-2, help="relative tolerance (default 1e-2)")
    parser.add_argument("--max-checks", type=int, default=200, help="elements checked per bottom (default 200)")
    parser.add_argument("--seed", type=int, default=1701, help="random seed (default 1701)")


def run(args):
    import caffe
    from caffe_losses.testing import GradientCheckError, check_net_gradient, layer_net
    caffe.set_mode_cpu()
    try:
        specs = [parse_bottom(b) for b in args.bottom]
    except ValueError as err:
        print(f"caffe-losses gradcheck: {err}", file=sys.stderr)
        return 2
    rng = np.random.RandomState(args.seed)
    inputs = {}
    for name, dims, ints in specs:
        inputs[name] = (rng.randint(ints[0], ints[1], size=dims) if ints else rng.randn(*dims)).astype(np.float32)
    wrt = args.wrt or [name for name, _, ints in specs if ints is None]
    unknown = [w for w in wrt if w not in inputs]
    if unknown:
        print(f"caffe-losses gradcheck: --wrt {unknown[0]} is not a bottom ({', '.join(inputs)})", file=sys.stderr)
        return 2
    tops = tuple(args.top or ["out"])
    try:
        net = layer_net(args.module, args.layer, {name: dims for name, dims, _ in specs}, tops=tops,
                        param_str=args.param_str, loss_weight=args.loss_weight or None)
    except (ValueError, TypeError, AttributeError, ImportError) as err:
        print(f"caffe-losses gradcheck: cannot build the net: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    try:
        results = check_net_gradient(net, inputs, wrt, stepsize=args.stepsize, threshold=args.threshold,
                                     max_checks=args.max_checks, seed=args.seed)
    except GradientCheckError as err:
        print(f"FAIL {args.module}.{args.layer}: {err}")
        return 1
    for name, (a, n) in results.items():
        worst = float(np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1.0)))
        print(f"ok {args.module}.{args.layer} d/d{name}: {a.size} element(s), worst scaled error {worst:.2e} "
              f"(threshold {args.threshold:g})")
    return 0
