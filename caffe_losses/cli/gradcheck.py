"""Check any Python layer's gradient inside a real caffe.Net (Caffe's GradientChecker).

Builds a one-layer net (an Input per bottom, force_backward: true), fills the
bottoms with random data, and compares the diffs from net.backward() with
central finite differences of the net's objective, as Caffe's C++
GradientChecker does (float32, stepsize 1e-2, threshold 1e-2 by default).

  caffe-losses gradcheck --module caffe_losses --layer SmoothL1Loss \\
      --bottom pred=8x3 --bottom target=8x3 --param-str "{sigma: 2}"
  caffe-losses gradcheck --module mylayers --layer MyLoss \\
      --bottom scores=4x10 --bottom label=4:int:0:10 --wrt scores

A bottom is NAME=DIMS (Gaussian data, mean 0, std 1), NAME=DIMS:normal:MEAN:STD
(Gaussian of that mean and std), NAME=DIMS:int:LOW:HIGH (integers in
[LOW, HIGH), e.g. labels), NAME=DIMS:const:V (every value V, e.g. a zero
target or weights of 1), or NAME=FILE.npy (your own data, e.g. a real
batch). Checked by default: the bottoms the layer declares differentiable (a
DIFF_BOTTOMS tuple of bottom indexes on the class, as caffe_losses' layers
have) that hold Gaussian or file data, else every such bottom; --wrt
chooses.

The check runs in float32, as Caffe does: a finite difference of an
objective of size F resolves the gradient only to about ulp(F) / (2 * step),
so a large loss (many elements, a large loss weight) fails on round-off;
the FAIL report says when that is the case.

A function that is not smooth everywhere (ReLU at 0, Smooth L1 where
|d| = 1/sigma^2) fails a finite-difference check at the elements whose step
straddles the kink. As Caffe's GradientChecker(stepsize, threshold, seed,
kink, kink_range), --kink K leaves out the elements with
K - R <= |x| <= K + R (R = --kink-range, default the stepsize):

  caffe-losses gradcheck --module caffe_losses --layer SmoothL1Loss \\
      --bottom pred=1x36x14x19:normal:0:0.2 --bottom target=1x36x14x19:const:0 \\
      --param-str "{sigma: 3}" --kink 0.1111

Exit status 0 when the gradients agree, 1 when they do not, 2 on bad input.
"""

import importlib
import math
import os
import sys

import numpy as np

from caffe_losses.files.hmatrix import MAX_BLOB_AXES, read_npy
from caffe_losses.glue.params import FLOAT32_EXACT_INT
from caffe_losses.files.safety import BLOB_MAX_COUNT, check_allocation, float32_overflow, overflows_float32
from caffe_losses.glue.testing import GradientCheckError, check_net_gradient, layer_net

# caffe (pycaffe) is imported inside the functions that use it: the CLI imports this
# module, and must run without pycaffe to say that it is missing (tests/test_layout.py).

KINDS = ("normal", "int", "const", "file")


class Spec:
    """One ``--bottom``: its name, dims, and how it is filled."""

    __slots__ = ("name", "dims", "kind", "args")

    def __init__(self, name, dims, kind=None, args=()):
        self.name, self.dims, self.kind, self.args = name, dims, kind, args

    def __iter__(self):   # name, dims, (low, high) or None: the old tuple form
        return iter((self.name, self.dims, self.args if self.kind == "int" else None))

    def __eq__(self, other):
        return tuple(self) == tuple(other)

    def fill(self, rng):
        if self.kind == "int":
            return rng.randint(self.args[0], self.args[1], size=self.dims).astype(np.float32)
        if self.kind == "const":
            return np.full(self.dims, self.args[0], np.float32)
        if self.kind == "file":
            return self.args[1]
        mean, std = self.args if self.kind == "normal" else (0.0, 1.0)
        return (mean + std * rng.randn(*self.dims)).astype(np.float32)

    @property
    def checked_by_default(self):
        return self.kind in (None, "normal", "file")


def _number(text, what, cast):
    try:
        value = cast(text)
    except ValueError:
        raise ValueError(f"{what} must be {'an integer' if cast is int else 'a number'}. "
                         f"Received: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite. Received: {text!r}")
    return value


def parse_bottom(text):
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--bottom must look like NAME=4x3, NAME=4:int:0:10 or NAME=4x3:const:0. "
                         f"Received: {text[:80]!r}")
    if spec.lower().endswith(".npy"):
        return _file_bottom(name, spec)
    parts = spec.split(":")
    try:
        dims = tuple(int(d) for d in parts[0].lower().split("x"))
    except ValueError:
        raise ValueError(f"--bottom {name}: dims must be integers joined by 'x'. "
                         f"Received: {parts[0][:40]!r}") from None
    if any(d <= 0 for d in dims):
        raise ValueError(f"--bottom {name}: dims must be positive. Received: {parts[0]!r}")
    if len(dims) > MAX_BLOB_AXES:
        raise ValueError(f"--bottom {name}: {len(dims)} dims; a Caffe blob has at most {MAX_BLOB_AXES} axes "
                         f"(kMaxBlobAxes): Caffe would abort")
    if math.prod(dims) > BLOB_MAX_COUNT:
        raise ValueError(f"--bottom {name}: {parts[0]} is {math.prod(dims)} values, more than a "
                         f"Caffe blob holds ({BLOB_MAX_COUNT})")
    if len(parts) == 1:
        return Spec(name, dims)
    if parts[1] == "int" and len(parts) == 4:
        low = _number(parts[2], f"--bottom {name}: LOW", int)
        high = _number(parts[3], f"--bottom {name}: HIGH", int)
        if high <= low:
            raise ValueError(f"--bottom {name}: need LOW < HIGH. Received: {low}, {high}")
        if max(abs(low), abs(high)) > FLOAT32_EXACT_INT:
            raise ValueError(f"--bottom {name}: integers beyond 2**24 are not exact in float32")
        return Spec(name, dims, "int", (low, high))
    if parts[1] == "normal" and len(parts) == 4:
        mean = _number(parts[2], f"--bottom {name}: MEAN", float)
        std = _number(parts[3], f"--bottom {name}: STD", float)
        if not 0 < std <= 1e18 or abs(mean) > 1e18:
            raise ValueError(f"--bottom {name}: need 0 < STD and |MEAN|, STD <= 1e18. "
                             f"Received: {parts[2]}, {parts[3]}")
        return Spec(name, dims, "normal", (mean, std))
    if parts[1] == "const" and len(parts) == 3:
        value = _number(parts[2], f"--bottom {name}: V", float)
        if overflows_float32(value):
            raise ValueError(f"--bottom {name}: V must fit float32. Received: {parts[2]!r}")
        return Spec(name, dims, "const", (value,))
    raise ValueError(f"--bottom {name}: after the dims comes :normal:MEAN:STD, :int:LOW:HIGH or "
                     f":const:V. Received: {spec[:60]!r}")


def _file_bottom(name, path):
    if not os.path.isfile(path):
        raise ValueError(f"--bottom {name}: file '{path}' not found")
    try:
        data = read_npy(path, f"--bottom {name}: file '{path}'")
    except OSError as err:
        raise ValueError(str(err)) from None
    if data.ndim == 0 or data.size == 0:
        raise ValueError(f"--bottom {name}: '{path}' must hold an array with at least one value "
                         f"in every dimension. Received shape {data.shape}")
    if not np.isfinite(data).all() or float32_overflow(data) is not None:
        raise ValueError(f"--bottom {name}: '{path}' must hold finite float32 values")
    return Spec(name, tuple(data.shape), "file", (path, data.astype(np.float32)))


def _positive(text):
    """argparse type: a finite number > 0."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError
    return value


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def _non_negative(text):
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError
    return value


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError
    return value


_positive.__name__ = "positive number"
_positive_int.__name__ = "integer >= 1"
_non_negative.__name__ = "number >= 0"
_finite.__name__ = "finite number"


def add_arguments(parser):
    parser.add_argument("--module", required=True, help="python_param module (must be importable; "
                        "the current folder is searched after the installed packages)")
    parser.add_argument("--layer", required=True, help="python_param layer class")
    parser.add_argument("--param-str", default="", help="python_param param_str")
    parser.add_argument("--bottom", action="append", required=True,
                        metavar="NAME=DIMS[:normal:MEAN:STD|:int:LOW:HIGH|:const:V]",
                        help="a bottom, in order (repeat for each)")
    parser.add_argument("--top", action="append", metavar="NAME", help="top names (default: one top 'out')")
    parser.add_argument("--wrt", action="append", metavar="NAME",
                        help="bottoms to check (default: those the layer declares differentiable "
                             "in DIFF_BOTTOMS, else every Gaussian bottom)")
    parser.add_argument("--loss-weight", type=_finite, default=2.0,
                        help="loss weight on the first top; 0 for a non-loss layer (default 2)")
    parser.add_argument("--stepsize", type=_positive, default=1e-2,
                        help="finite-difference step, > 0 (default 1e-2)")
    parser.add_argument("--threshold", type=_positive, default=1e-2,
                        help="relative tolerance, > 0 (default 1e-2)")
    parser.add_argument("--kink", type=_non_negative, metavar="K",
                        help="leave out elements x with K - R <= |x| <= K + R, where the function "
                             "is not smooth (Caffe's GradientChecker kink; e.g. 0 for ReLU, "
                             "1/sigma^2 for a smooth L1 (Huber) loss against a zero target)")
    parser.add_argument("--kink-range", type=_non_negative, metavar="R",
                        help="R of --kink (Caffe's kink_range; default: the stepsize)")
    parser.add_argument("--max-checks", type=_positive_int, default=200,
                        help="elements checked per bottom, >= 1 (default 200)")
    parser.add_argument("--seed", type=int, default=1701, help="random seed (default 1701)")


def declared_wrt(module, layer, specs):
    """The bottoms to check by default: the layer's DIFF_BOTTOMS that are Gaussian, else all Gaussian."""
    gaussian = [s.name for s in specs if s.checked_by_default]
    try:
        cls = getattr(importlib.import_module(module), layer)
    except Exception:       # reported when the net is built
        return gaussian
    declared = getattr(cls, "DIFF_BOTTOMS", None)
    if declared is None:
        return gaussian
    names = [specs[i].name for i in declared if i < len(specs)]
    return [n for n in names if n in gaussian]


def _objective_size(net, top, args):
    return float(np.abs(net.blobs[top].data.astype(np.float64)).sum()) * max(abs(args.loss_weight), 1.0)


def _resolution(net, top, args):
    """About how finely float32 finite differences of the objective resolve a gradient.

    Each of f(x + h) and f(x - h) is rounded to float32 (half a spacing of
    f), so their difference over 2h is off by up to spacing(f) / (2h).
    """
    return float(np.spacing(np.float32(_objective_size(net, top, args)))) / (2 * args.stepsize)


def _fail(message):
    print(f"caffe-losses gradcheck: {message}", file=sys.stderr)
    return 2


def run(args):
    try:
        specs = [parse_bottom(b) for b in args.bottom]
    except ValueError as err:
        return _fail(str(err))
    names = [s.name for s in specs]
    tops = tuple(args.top or ["out"])
    clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(tops)))
    if clash:
        return _fail(f"blob name {clash[0]!r} is given twice (bottom and top names must differ)")
    if not 0 <= args.seed < 2 ** 32:
        return _fail(f"--seed must be in [0, 2**32). Received: {args.seed}")
    total = sum(math.prod(s.dims) for s in specs)
    try:
        # each bottom: our array, the blob's data and diff, a float64 copy of the diff
        check_allocation(total * 20, f"the bottoms ({total} values)", owner="caffe-losses gradcheck")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    import caffe
    caffe.set_mode_cpu()
    rng = np.random.RandomState(args.seed)
    inputs = {s.name: s.fill(rng) for s in specs}
    wrt = args.wrt or declared_wrt(args.module, args.layer, specs)
    unknown = [w for w in wrt if w not in inputs]
    if unknown:
        return _fail(f"--wrt {unknown[0]} is not a bottom ({', '.join(inputs)})")
    if not wrt:
        return _fail("no bottom to check: give --wrt NAME (integer and constant bottoms are not "
                     "checked by default)")
    try:
        net = layer_net(args.module, args.layer, {s.name: s.dims for s in specs}, tops=tops,
                        param_str=args.param_str, loss_weight=args.loss_weight or None)
    except (ValueError, TypeError, AttributeError, ImportError) as err:
        return _fail(f"cannot build the net: {type(err).__name__}: {err}")
    kink_range = args.kink_range if args.kink_range is not None else args.stepsize
    try:
        results = check_net_gradient(net, inputs, wrt, stepsize=args.stepsize, threshold=args.threshold,
                                     kink=args.kink, kink_range=kink_range,
                                     max_checks=args.max_checks, seed=args.seed)
    except GradientCheckError as err:
        print(f"FAIL {args.module}.{args.layer}: {err}")
        zero = [w for w in wrt if not net.blobs[w].diff.any()]
        if zero:
            print(f"note: the layer wrote no gradient into {', '.join(zero)} (all zeros): if it is "
                  f"not differentiable there (a label, a weight), leave it out with --wrt, or "
                  f"declare DIFF_BOTTOMS on the layer class")
        resolution = _resolution(net, tops[0], args)
        if resolution > args.threshold / 4:
            print(f"note: the objective is {_objective_size(net, tops[0], args):.4g}: in float32 its "
                  f"finite differences resolve the gradient only to about {resolution:.2g} at "
                  f"stepsize {args.stepsize:g}; disagreements of that size are round-off (use "
                  f"smaller data, a smaller --loss-weight, or a larger --stepsize)")
        if args.kink is None:
            print("note: a function with a kink (ReLU at 0, Smooth L1 at |d| = 1/sigma^2) fails "
                  "next to it; see --kink")
        return 1
    for name, (a, n) in results.items():
        worst = float(np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1.0),
                             initial=0.0))
        checked = min(inputs[name].size, args.max_checks)
        skipped = f", {checked - a.size} left out near the kink" if args.kink is not None else ""
        print(f"ok {args.module}.{args.layer} d/d{name}: {a.size} element(s){skipped}, worst scaled "
              f"error {worst:.2e} (threshold {args.threshold:g})")
    return 0
