#!/usr/bin/env python3
"""Benchmarks: caffe-losses against Caffe's native layers, end to end and per layer.

Two sections, each timing ours against the native counterpart built the same
way, in the same process, in interleaved rounds (ours, native, ours, ...),
and reporting medians and their ratio (machines differ; ratios measured in one
run do not depend on that as much):

1. End to end, what a user feels: iterations per second of real training
   (``solver.step``) of one net with our loss and the same net with the native
   loss (or without the extra loss).  Target on LeNet-size and larger nets:
   our loss costs at most 2% of an iteration more than the native one.  The
   tiny digits templates are reported only: their iteration is a fraction of
   a millisecond, so they show the fixed cost of a Python layer call.
2. Per layer: forward + backward of a net holding only the inputs and the
   loss (``net._forward`` / ``net._backward``, the C++ entry points), with
   speed targets from N * C >= 256k; and the fixed cost of any Python layer
   (``bench/noop_layer.py``).

The cases and their targets are the families': each family whose declaration
says ``bench=True`` has a ``bench`` module (``caffe_losses/losses/<family>/bench.py``)
yielding :class:`caffe_losses.losses.family.BenchCase` rows; this script times
them, in the registry's order (``caffe_losses.losses.FAMILIES``), and keeps no
per-loss case of its own.

The header says which SIMD extensions NumPy found, so figures from different
machines can be told apart.  ``--avx2`` reruns the benchmark with NumPy's
AVX-512 code paths disabled (``NPY_DISABLE_CPU_FEATURES``) and OpenBLAS told
it runs on a Haswell (``OPENBLAS_CORETYPE``): what an AVX2-only server or CI
runner does.

Run with ``make bench`` (or ``make bench-avx2``; ``.venv/bin/python
bench/run.py --help``).  Writes ``bench/results/bench.csv`` and
``bench/results/bench.png``.  Not part of the tests: timings vary with the
machine (``--tiny`` runs every case at toy sizes, for the smoke test).
"""

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE, os.path.join(ROOT, "tests")):   # tests/seed_layers.py: the seed's layer
    if p not in sys.path:
        sys.path.insert(0, p)

import caffe  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from caffe_losses.files.figures import pyplot, save_figure  # noqa: E402
from caffe_losses.glue.netbuild import LARGE, SOLVER, layer_net_text, native_loss, python_loss, swap_type  # noqa: E402
from caffe_losses.glue.params import load_yaml  # noqa: E402
from caffe_losses.glue.testing import net_from_text  # noqa: E402
from caffe_losses.losses import FAMILIES, LAYERS  # noqa: E402
from caffe_losses.losses.family import BenchCase  # noqa: E402
from caffe_losses.nets.prototxt import read_net_param, read_solver_param, working_directory  # noqa: E402
from caffe_losses.nets.templates import TEMPLATE_ROOT, prepare_template  # noqa: E402

caffe.set_mode_cpu()

CLOCK = time.perf_counter  # --clock cpu: time.process_time (this process's CPU time, all its threads)
AVX2_ENV = "CAFFE_LOSSES_BENCH_AVX2"


# ---------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------

def simd_report():
    """One line: NumPy's baseline, and the SIMD targets it found and did not find."""
    from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    found = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    missing = [f for f in __cpu_dispatch__ if not __cpu_features__.get(f)]
    return (f"NumPy {np.__version__} SIMD: baseline {' '.join(__cpu_baseline__) or 'none'}; "
            f"found {' '.join(found) or 'none'}; not found {' '.join(missing) or 'none'}")


def avx512_targets():
    """NumPy's dispatch targets that need AVX-512 (what ``--avx2`` disables)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__
    return [f for f in __cpu_dispatch__ if "AVX512" in f or f == "X86_V4"]


def rerun_as_avx2(argv):
    """Runs this script again in a child process that sees an AVX2-only machine."""
    env = dict(os.environ)
    env["NPY_DISABLE_CPU_FEATURES"] = " ".join(avx512_targets())
    env["OPENBLAS_CORETYPE"] = "Haswell"
    env[AVX2_ENV] = "1"
    argv = [a for a in argv if a != "--avx2"]
    return subprocess.call([sys.executable, os.path.abspath(__file__)] + argv, env=env)


def copy_bandwidth():
    a = np.ones(64 * 2**20 // 4, np.float32)
    b = np.empty_like(a)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        np.copyto(b, a)
        times.append(time.perf_counter() - t0)
    return 2 * a.nbytes / min(times)     # read + write


# ---------------------------------------------------------------------------
# The cases: the families' bench modules
# ---------------------------------------------------------------------------

def _bench_modules():
    return [family.module("bench") for family in FAMILIES if family.bench]


def e2e_cases(tmp, tiny=False):
    """The families' net cases (:class:`BenchCase`), in the registry's order."""
    for module in _bench_modules():
        yield from module.net_cases(tmp, tiny)


def layer_cases(tmp, tiny=False):
    """The families' per-layer cases, then the fixed cost of any Python layer."""
    for module in _bench_modules():
        yield from module.layer_cases(tmp, tiny)
    # a layer that does nothing, against the cheapest native loss, at the smallest size
    n, c = (4, 3) if tiny else (32, 10)
    shapes = {"pred": (n, c), "target": (n, c)}
    pred = np.random.RandomState(0).randn(n, c).astype(np.float32)
    yield BenchCase("python floor", f"N={n} C={c}", n * c, "NoOp Python layer (bench)", "EuclideanLoss (native)",
                    layer_net_text(shapes, python_loss("NoOpLoss", ["pred", "target"], module="noop_layer")),
                    layer_net_text(shapes, native_loss("EuclideanLoss", ["pred", "target"])),
                    {"pred": pred, "target": pred * 0}, memory=False)


# ---------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------

def make_solver(folder, tag, net_text, solver=None):
    net_path = os.path.join(folder, f"{tag}_net.prototxt")
    with open(net_path, "w") as f:
        f.write(net_text)
    solver_path = os.path.join(folder, f"{tag}_solver.prototxt")
    with open(solver_path, "w") as f:
        f.write(f'net: "{net_path}"\n' + (SOLVER if solver is None else solver))
    return caffe.SGDSolver(solver_path)


def fill(net, data):
    """Sets the net's input blobs named in ``data`` (names the net lacks are skipped)."""
    for name, value in data.items():
        if name in net.blobs:
            net.blobs[name].data[...] = value


def solver_pair(tmp, tag, case):
    """Solver factories (ours, native) for a net case."""
    if case.template:
        return template_pair(tmp, case.template)

    def build(text, side):
        def make():
            solver = make_solver(tmp, f"{tag}_{side}", text, case.solver)
            fill(solver.net, case.data)
            return solver
        return make
    return build(case.ours_net, "ours"), build(case.native_net, "native")


def _to_native(param):
    """The net with each layer of this package replaced by its native counterpart (the family's
    ``Family.native``, or its bench module's ``to_native(layer, keys)``: kept, changed or removed)."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    for layer in param.layer:
        if layer.type != "Python" or layer.python_param.module != "caffe_losses":
            out.layer.add().CopyFrom(layer)
            continue
        kind = layer.python_param.layer
        family = LAYERS[kind]
        convert = getattr(family.module("bench"), "to_native", None) if family.bench else None
        if convert is not None:
            new = convert(layer, load_yaml(layer.python_param.param_str or "{}") or {})
        elif kind in family.native:
            new = swap_type(layer, family.native[kind])
        else:
            raise ValueError(f"no native counterpart known for {kind} (family {family.name}: "
                             f"neither Family.native nor its bench module's to_native says one)")
        if new is not None:
            out.layer.add().CopyFrom(new)
    return out


def template_pair(tmp, template):
    """Solver factories for a prepared copy of ``template``, ours and with the native loss."""
    folder = os.path.join(tmp, template)
    if not os.path.isdir(folder):
        shutil.copytree(os.path.join(TEMPLATE_ROOT, template), folder)
        prepare_template(folder, small=True)
    param = read_net_param(os.path.join(folder, "train_val.prototxt"))
    for side, net in (("ours", param), ("native", _to_native(param))):
        with open(os.path.join(folder, f"bench_{side}.prototxt"), "w") as f:
            f.write(text_format.MessageToString(net))
        solver = read_solver_param(os.path.join(folder, "solver.prototxt"))
        solver.net = f"bench_{side}.prototxt"
        solver.test_interval = 10**8          # no test pass inside the timed steps
        solver.ClearField("test_iter")
        solver.test_initialization = False
        solver.display = 0
        solver.snapshot = 0
        solver.snapshot_after_train = False
        solver.max_iter = 10**8
        with open(os.path.join(folder, f"bench_{side}_solver.prototxt"), "w") as f:
            f.write(text_format.MessageToString(solver))

    def factory(side):
        def make():
            with working_directory(folder):
                return _TemplateSolver(folder, caffe.SGDSolver(f"bench_{side}_solver.prototxt"))
        return make
    return factory("ours"), factory("native")


class _TemplateSolver:
    """A solver whose steps run in its template folder (HDF5 sources are relative to it)."""

    def __init__(self, folder, solver):
        self.folder, self.solver = folder, solver

    def step(self, n):
        with working_directory(self.folder):
            self.solver.step(n)


def time_steps(ours, native, rounds, min_seconds=0.05):
    """Median seconds per iteration of ``ours`` and ``native``, interleaved."""
    for _ in range(2):                       # warm-up: the first steps allocate
        ours.step(1)
        native.step(1)
    t0 = CLOCK()
    native.step(1)
    one = CLOCK() - t0
    steps = max(1, int(min_seconds / max(one, 1e-6)))
    t_ours, t_native = [], []
    for _ in range(rounds):
        t0 = CLOCK()
        ours.step(steps)
        t1 = CLOCK()
        native.step(steps)
        t2 = CLOCK()
        t_ours.append((t1 - t0) / steps)
        t_native.append((t2 - t1) / steps)
    return summary(t_ours, t_native)


def summary(t_ours, t_native):
    """Medians of the two, and the median and half the interquartile range of their paired ratios.

    Each round times ours right before native, so a ratio compares them under
    the same machine load; the median of the ratios is what the targets read,
    and the spread says how far apart the rounds were (a target finer than it
    cannot be judged on this machine now).
    """
    ratios = np.asarray(t_ours) / np.asarray(t_native)
    q1, q3 = np.percentile(ratios, [25, 75])
    return float(np.median(t_ours)), float(np.median(t_native)), float(np.median(ratios)), float(q3 - q1) / 2


def start_section(title, header, args):
    """Prints a section's title and table header; returns the number of rounds to time."""
    print(f"\n== {title}")
    print(header)
    print("-" * len(header))
    return 3 if args.tiny else (7 if args.quick else 21)


def run_e2e(tmp, args):
    rows = []
    rounds = start_section(
        "End to end: solver.step of the same net, our loss vs the native one (iterations/s: medians "
        "of interleaved rounds; extra: median of the paired ratios - 1; +-: half their IQR)",
        f"{'net':<34} {'size':<13} {'ours':<34} {'it/s':>8} {'native':<24} {'it/s':>8} "
        f"{'extra':>7} {'+-':>6}  target", args)
    for number, case in enumerate(e2e_cases(tmp, args.tiny)):
        if args.only and args.only not in case.label:
            continue
        make_ours, make_native = solver_pair(tmp, f"net{number}", case)
        t_o, t_n, ratio, spread = time_steps(make_ours(), make_native(), rounds, 0.005 if args.tiny else 0.2)
        extra = ratio - 1
        ok = "" if case.target is None else ("met" if ratio <= case.target[0] else "MISSED")
        target = case.target[1] if case.target else ""
        net, size, ours_name, native_name = case.label, case.size, case.ours, case.native
        rows.append({"section": "end-to-end", "family": net, "size": size, "ours": ours_name,
                     "native": native_name, "ours_ms": t_o * 1e3, "native_ms": t_n * 1e3,
                     "ratio": ratio, "spread": spread, "target": target, "target_ok": ok})
        print(f"{net:<34} {size:<13} {ours_name:<34} {1 / t_o:8.1f} {native_name:<24} {1 / t_n:8.1f} "
              f"{extra:+7.1%} {spread:6.1%}  {ok + ': ' + target if target else '(reported only: no target)'}")
    return rows


# ---------------------------------------------------------------------------
# Per-layer cases
# ---------------------------------------------------------------------------

def fwd_bwd(net):
    n = len(net.layers)
    net._forward(0, n - 1)
    net._backward(n - 1, 0)


def time_pair(ours, native, data, rounds, inner):
    fill(ours, data)
    fill(native, data)
    for _ in range(3):          # warm-up (first calls allocate)
        fwd_bwd(ours)
        fwd_bwd(native)
    t_ours, t_native = [], []
    for _ in range(rounds):
        t0 = CLOCK()
        for _ in range(inner):
            fwd_bwd(ours)
        t1 = CLOCK()
        for _ in range(inner):
            fwd_bwd(native)
        t2 = CLOCK()
        t_ours.append((t1 - t0) / inner)
        t_native.append((t2 - t1) / inner)
    return summary(t_ours, t_native)


def run_layers(tmp, args):
    rows = []
    rounds = start_section(
        "Per layer: forward + backward, ours vs native (ms: medians of interleaved rounds; "
        "ours/native: median of the paired ratios; +-: half their IQR)",
        f"{'family':<16} {'size':<17} {'ours':<32} {'ms':>8} {'native':<38} {'ms':>8} "
        f"{'ours/native':>11} {'+-':>5}  target", args)
    for case in layer_cases(tmp, args.tiny):
        if args.only and args.only not in case.label:
            continue
        family, size, elements, ours_name, native_name = case.label, case.size, case.elements, case.ours, case.native
        inner = 1 if args.tiny else (5 if elements > 10**6 else (20 if elements >= LARGE else 100))
        t_o, t_n, ratio, spread = time_pair(net_from_text(case.ours_net), net_from_text(case.native_net),
                                            case.data, rounds, inner)
        tgt = case.target
        ok = "" if tgt is None else ("met" if ratio <= tgt[0] else "MISSED")
        rows.append({"section": "per-layer", "family": family, "size": size, "ours": ours_name,
                     "native": native_name, "ours_ms": t_o * 1e3, "native_ms": t_n * 1e3,
                     "ratio": ratio, "spread": spread, "target": tgt[1] if tgt else "", "target_ok": ok})
        print(f"{family:<16} {size:<17} {ours_name:<32} {t_o * 1e3:8.3f} {native_name:<38} {t_n * 1e3:8.3f} "
              f"{ratio:11.2f} {spread:5.2f}  {ok + ': ' + tgt[1] if tgt else ''}")
    return rows


# ---------------------------------------------------------------------------
# Memory, chart, main
# ---------------------------------------------------------------------------

def current_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def rss_growth(tmp, iterations=1000):
    """Resident memory (MiB) after 100 and after ``iterations`` forward+backward passes of each layer."""
    rows = []
    for case in layer_cases(tmp):
        if case.size != "N=256 C=100" or not case.memory:
            continue
        ours = net_from_text(case.ours_net)
        fill(ours, case.data)
        for _ in range(100):
            fwd_bwd(ours)
        before = current_rss_mib()
        for _ in range(iterations - 100):
            fwd_bwd(ours)
        rows.append((f"{case.ours} ({case.label})", before, current_rss_mib()))
    return rows


def plot(rows, path, title):
    plt = pyplot()
    from matplotlib.patches import Patch     # matplotlib: optional (the demo extra)
    sections = [s for s in ("end-to-end", "per-layer") if any(r["section"] == s for r in rows)]
    fig, axes = plt.subplots(len(sections), 1, figsize=(max(9, 0.5 * len(rows)), 5 * len(sections)),
                             squeeze=False)
    for ax, section in zip(axes[:, 0], sections):
        part = [r for r in rows if r["section"] == section]
        colors = ["tab:red" if r["target_ok"] == "MISSED" else "tab:green" if r["ratio"] <= 1 else "tab:orange"
                  for r in part]
        ax.bar(range(len(part)), [r["ratio"] for r in part], color=colors)
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_yscale("log")
        ax.set_xticks(range(len(part)))
        ax.set_xticklabels([f"{r['family']}\n{r['size']}" for r in part], rotation=70, ha="right", fontsize=7)
        what = "time per iteration" if section == "end-to-end" else "forward+backward time"
        ax.set_ylabel(f"{what}, ours / native (log)")
        ax.set_title(f"{section}: median of interleaved rounds ({title})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(handles=[Patch(color="tab:green", label="faster than native"),
                               Patch(color="tab:orange", label="slower than native, no target missed"),
                               Patch(color="tab:red", label="target missed (see the printed table)")],
                      fontsize=8)
    save_figure(fig, path, dpi=110)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier figures)")
    parser.add_argument("--tiny", action="store_true",
                        help="every case at toy sizes, few rounds: checks that the script runs "
                             "(the smoke test); the figures mean nothing")
    parser.add_argument("--section", choices=("all", "e2e", "layers"), default="all",
                        help="which section to run (default: both)")
    parser.add_argument("--only", help="only cases whose net / family name contains this text")
    parser.add_argument("--avx2", action="store_true",
                        help="emulate an AVX2-only machine: rerun with NumPy's AVX-512 paths disabled "
                             "(NPY_DISABLE_CPU_FEATURES) and OPENBLAS_CORETYPE=Haswell")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time (what a user waits; default); cpu: this process's CPU "
                             "time, steadier on a machine shared with other jobs")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="output folder")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.avx2 and not os.environ.get(AVX2_ENV):
        return rerun_as_avx2(argv)
    os.makedirs(args.out, exist_ok=True)
    emulated = bool(os.environ.get(AVX2_ENV))
    print(simd_report())
    if emulated:
        print(f"AVX2 emulation (--avx2): NPY_DISABLE_CPU_FEATURES="
              f"'{os.environ.get('NPY_DISABLE_CPU_FEATURES', '')}' "
              f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}")
    print(f"machine copy bandwidth (NumPy copy, read+write): {copy_bandwidth() / 1e9:.1f} GB/s; "
          f"clock: {args.clock}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.section in ("all", "e2e"):
            rows += run_e2e(tmp, args)
        if args.section in ("all", "layers"):
            rows += run_layers(tmp, args)
        if not rows:
            print("no case matches --only", file=sys.stderr)
            return 2
        csv_path = os.path.join(args.out, "bench.csv")
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        png_path = os.path.join(args.out, "bench.png")
        plot(rows, png_path, "AVX2 emulated" if emulated else "this machine")
        print(f"\nwrote {csv_path} and {png_path}")
        missed = [r for r in rows if r["target_ok"] == "MISSED"]
        print(f"targets: {sum(r['target_ok'] == 'met' for r in rows)} met, {len(missed)} missed")
        for r in missed:
            print(f"  missed: {r['section']} {r['family']} {r['size']}: ours/native {r['ratio']:.3f}, "
                  f"target {r['target']}")
        if args.section in ("all", "layers") and not args.only and not args.tiny:
            print("\nresident memory across 1,000 forward+backward passes (N=256, C=100), MiB:")
            for name, before, after in rss_growth(tmp):
                print(f"  {name:<55} after 100: {before:8.1f}  after 1000: {after:8.1f}  "
                      f"growth {after - before:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
