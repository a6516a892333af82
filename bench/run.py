#!/usr/bin/env python3
"""Benchmarks: caffe-losses against Caffe's native layers, end to end and per layer.

Two sections, each timing ours against the native counterpart built the same
way, in the same process, in interleaved rounds (ours, native, ours, ...),
and reporting medians and their ratio (machines differ; ratios measured in one
run do not depend on that as much):

1. End to end, what a user feels: iterations per second of real training
   (``solver.step``) of one net with our loss and the same net with the native
   loss (or without the extra loss, for CenterLoss): LeNet at MNIST size
   (1 x 28 x 28, batch 64) with SoftmaxWithInfogainLoss (H = I and a full H),
   LeNet++ with and without CenterLoss, a small FCN-style segmentation net
   (8 x 21 x 128 x 128 scores) with per-pixel infogain, an HED-like edge net
   (8 x 1 x 128 x 128) with WeightedSigmoidCrossEntropyLoss, and the tiny
   digits templates (reported only: their iteration is a fraction of a
   millisecond, so they show the fixed cost of a Python layer call).
   Target on LeNet-size and larger nets: our loss costs at most 2% of an
   iteration more than the native one.
2. Per layer: forward + backward of a net holding only the inputs and the
   loss (``net._forward`` / ``net._backward``, the C++ entry points) at
   N x C from 32 x 10 to 256 x 1000 and 8 x 21 x 128 x 128.  Targets at
   N * C >= 256k: at least 3x faster than native InfogainLoss and
   SigmoidCrossEntropyLoss, 2x faster than SoftmaxWithLoss with H = I; and
   never slower than the seed's weighted-sigmoid Python layer
   (``tests/seed_layers.py``) at any size.

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

from caffe_losses.files.figures import pyplot, save_figure# noqa: E402
from caffe_losses.files.hmatrix import save_h# noqa: E402
from caffe_losses.glue.params import load_yaml# noqa: E402
from caffe_losses.nets.prototxt import read_net_param, read_solver_param, working_directory# noqa: E402
from caffe_losses.nets.templates import TEMPLATE_ROOT, prepare_template# noqa: E402
from caffe_losses.glue.testing import net_from_text# noqa: E402

caffe.set_mode_cpu()

CLOCK = time.perf_counter  # --clock cpu: time.process_time (this process's CPU time, all its threads)
E2E_TARGET = 0.02            # our loss may cost at most 2% of an iteration more than the native one
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
# Prototxt pieces
# ---------------------------------------------------------------------------

def _input(name, shape):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}'


def python_loss(layer, bottoms, param_str="", module="caffe_losses", name="loss", top="loss",
                loss_weight=1):
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    ps = param_str.replace('"', '\\"')
    return (f'layer {{ name: "{name}" type: "Python" {b} top: "{top}" python_param {{ '
            f'module: "{module}" layer: "{layer}" param_str: "{ps}" }} loss_weight: {loss_weight} }}')


def native_loss(ltype, bottoms, extra="", name="loss", top="loss"):
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    return f'layer {{ name: "{name}" type: "{ltype}" {b} top: "{top}" {extra} }}'


def write_h(path, h):
    """Writes H as Caffe reads it (the package's :func:`caffe_losses.files.hmatrix.save_h`); returns ``path``."""
    save_h(path, h)
    return path


def conv(name, bottom, num, kernel, pad=0, stride=1, top=None):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top or name}" '
            f'convolution_param {{ num_output: {num} kernel_size: {kernel} pad: {pad} stride: {stride} '
            f'weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}')


def act(kind, name, blob):
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{blob}" top: "{blob}" }}'


def pool(name, bottom):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
            f'pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}')


def ip(name, bottom, num):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f'inner_product_param {{ num_output: {num} weight_filler {{ type: "xavier" }} '
            f'bias_filler {{ type: "constant" }} }} }}')


# ---------------------------------------------------------------------------
# End-to-end nets: (layers up to the scores, input shapes, input data)
# ---------------------------------------------------------------------------

def lenet(batch, size):
    """BVLC's examples/mnist/lenet_train_test.prototxt, Input layers instead of LMDB."""
    body = [conv("conv1", "data", 20, 5), pool("pool1", "conv1"), conv("conv2", "pool1", 50, 5),
            pool("pool2", "conv2"), ip("ip1", "pool2", 500), act("ReLU", "relu1", "ip1"),
            ip("ip2", "ip1", 10)]
    return body, {"data": (batch, 1, size, size), "label": (batch,)}


def lenetpp(batch, size):
    """The LeNet++ of ydwen/caffe-face's MNIST example: 6 convolutions, PReLU, a 2-D feature."""
    body = []
    bottom = "data"
    for stage, width in ((1, 32), (2, 64), (3, 128)):
        for k in (1, 2):
            name = f"conv{stage}_{k}"
            body += [conv(name, bottom, width, 5, pad=2), act("PReLU", f"prelu{stage}_{k}", name)]
            bottom = name
        body.append(pool(f"pool{stage}", bottom))
        bottom = f"pool{stage}"
    body += [ip("ip1", bottom, 2), act("PReLU", "prelu_fc1", "ip1"), ip("ip2", "ip1", 10),
             native_loss("SoftmaxWithLoss", ["ip2", "label"], name="softmax_loss", top="softmax_loss")]
    return body, {"data": (batch, 1, size, size), "label": (batch,)}


def fcn(batch, size, classes=21):
    """A small FCN: two 3x3 convolutions, a pool, 1x1 scores, a fixed bilinear 2x upsampling."""
    body = [conv("conv1", "data", 16, 3, pad=1), act("ReLU", "relu1", "conv1"), pool("pool1", "conv1"),
            conv("conv2", "pool1", 32, 3, pad=1), act("ReLU", "relu2", "conv2"),
            conv("score_pool", "conv2", classes, 1),
            f'layer {{ name: "upscore" type: "Deconvolution" bottom: "score_pool" top: "score" '
            f'param {{ lr_mult: 0 }} convolution_param {{ num_output: {classes} group: {classes} '
            f'kernel_size: 4 stride: 2 pad: 1 bias_term: false weight_filler {{ type: "bilinear" }} }} }}']
    return body, {"data": (batch, 3, size, size), "label": (batch, 1, size, size)}


def hed(batch, size):
    """An HED-like edge net: two 3x3 convolutions and a 1x1 side output of one channel."""
    body = [conv("conv1_1", "data", 16, 3, pad=1), act("ReLU", "relu1_1", "conv1_1"),
            conv("conv1_2", "conv1_1", 16, 3, pad=1), act("ReLU", "relu1_2", "conv1_2"),
            conv("score", "conv1_2", 1, 1)]
    return body, {"data": (batch, 3, size, size), "label": (batch, 1, size, size)}


def solver_text(net_path, seed=1701):
    return (f'net: "{net_path}"\nbase_lr: 0.001\nmomentum: 0.9\nweight_decay: 0.0005\n'
            f'lr_policy: "fixed"\nmax_iter: 100000000\ndisplay: 0\nsnapshot: 0\n'
            f'snapshot_after_train: false\nsolver_mode: CPU\nrandom_seed: {seed}\n')


def make_solver(folder, tag, net_text):
    net_path = os.path.join(folder, f"{tag}_net.prototxt")
    with open(net_path, "w") as f:
        f.write(net_text)
    solver_path = os.path.join(folder, f"{tag}_solver.prototxt")
    with open(solver_path, "w") as f:
        f.write(solver_text(net_path))
    return caffe.SGDSolver(solver_path)


def fill(net, data):
    """Sets the net's input blobs named in ``data`` (names the net lacks are skipped)."""
    for name, value in data.items():
        if name in net.blobs:
            net.blobs[name].data[...] = value


def e2e_cases(tmp, tiny=False):
    """Yields (net, size label, ours name, native name, make_ours(), make_native(), target?)."""
    rng = np.random.RandomState(0)
    batch, mnist = (2, 16) if tiny else (64, 28)
    seg_n, seg_size = (1, 16) if tiny else (8, 128)

    def digits(shapes):
        return {"data": rng.rand(*shapes["data"]).astype(np.float32),
                "label": rng.randint(0, 10, shapes["label"]).astype(np.float32)}

    def pair(tag, body, shapes, data, ours, native):
        head = [_input(name, shape) for name, shape in shapes.items()]

        def build(loss, side):
            def make():
                solver = make_solver(tmp, f"{tag}_{side}", "\n".join(head + body + [loss]) + "\n")
                fill(solver.net, data)
                return solver
            return make
        return build(ours, "ours"), build(native, "native")

    body, shapes = lenet(batch, mnist)
    data = digits(shapes)
    size = f"{batch}x1x{mnist}x{mnist}"
    eye = write_h(os.path.join(tmp, "I10.binaryproto"), np.eye(10))
    full = write_h(os.path.join(tmp, "H10.binaryproto"), 0.5 * np.eye(10) + 0.5 * rng.rand(10, 10))
    for h_name, h_path, native_name, native_text in [
            ("H=I", eye, "SoftmaxWithLoss", native_loss("SoftmaxWithLoss", ["ip2", "label"])),
            ("H=I", eye, "InfogainLoss", native_loss("InfogainLoss", ["ip2", "label"],
                                                     f'infogain_loss_param {{ source: "{eye}" }}')),
            ("full H", full, "InfogainLoss", native_loss("InfogainLoss", ["ip2", "label"],
                                                         f'infogain_loss_param {{ source: "{full}" }}'))]:
        ours = python_loss("SoftmaxWithInfogainLoss", ["ip2", "label"], f"{{source: '{h_path}'}}")
        yield (f"LeNet, {h_name}", size, "SoftmaxWithInfogainLoss", native_name,
               *pair(f"lenet_{native_name}_{h_name[0]}", body, shapes, data, ours, native_text), True)

    body, shapes = lenetpp(batch, mnist)
    ours = python_loss("CenterLoss", ["ip1", "label"], "{num_classes: 10, alpha: 0.5}",
                       name="center_loss", top="center_loss", loss_weight=0.01)
    ours = ours.replace("loss_weight", "param { lr_mult: 0 decay_mult: 0 } loss_weight")
    yield ("LeNet++", size, "SoftmaxWithLoss + CenterLoss", "SoftmaxWithLoss only",
           *pair("lenetpp", body, shapes, digits(shapes), ours, ""), True)

    classes = 21
    body, shapes = fcn(seg_n, seg_size, classes)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": rng.randint(0, classes, shapes["label"]).astype(np.float32)}
    size = f"{seg_n}x{classes}x{seg_size}x{seg_size}"
    weights = np.diag(0.5 + rng.rand(classes))                       # class weights (imbalance)
    similar = weights @ np.exp(-3 * rng.rand(classes, classes))      # full: weights x similarity
    for h_name, h in (("class-weight H", weights), ("full H", similar)):
        path = write_h(os.path.join(tmp, f"seg_{h_name[0]}.binaryproto"), h)
        ours = python_loss("SoftmaxWithInfogainLoss", ["score", "label"], f"{{source: '{path}'}}")
        native = native_loss("InfogainLoss", ["score", "label"], f'infogain_loss_param {{ source: "{path}" }}')
        yield (f"FCN, {h_name}", size, "SoftmaxWithInfogainLoss", "InfogainLoss",
               *pair(f"fcn_{h_name[0]}", body, shapes, data, ours, native), True)

    body, shapes = hed(seg_n, seg_size)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": (rng.rand(*shapes["label"]) < 0.1).astype(np.float32)}
    ours = python_loss("WeightedSigmoidCrossEntropyLoss", ["score", "label"], "{pos_weight: 9}")
    native = native_loss("SigmoidCrossEntropyLoss", ["score", "label"])
    yield ("HED-like", f"{seg_n}x1x{seg_size}x{seg_size}", "WeightedSigmoidCrossEntropyLoss",
           "SigmoidCrossEntropyLoss", *pair("hed", body, shapes, data, ours, native), True)

    for template, ours_name, native_name in TEMPLATE_CASES:
        yield (f"template {template}", "digits 8x8", ours_name, native_name,
               *template_pair(tmp, template), False)


# The tiny digits templates, each against its prototxt with the native loss
# (the Python loss swapped for the native layer, or removed for CenterLoss).
TEMPLATE_CASES = [
    ("infogain_digits_source", "SoftmaxWithInfogainLoss", "InfogainLoss"),
    ("infogain_digits_constant", "SoftmaxWithInfogainLoss (H bottom)", "InfogainLoss (H bottom)"),
    ("center_loss_lenetpp", "SoftmaxWithLoss + CenterLoss", "SoftmaxWithLoss only"),
]


def _to_native(param):
    """The net with each Python loss of this package replaced by its native counterpart."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    for layer in param.layer:
        if layer.type != "Python" or layer.python_param.module != "caffe_losses":
            out.layer.add().CopyFrom(layer)
            continue
        kind = layer.python_param.layer
        if kind == "CenterLoss":
            continue                                    # the same net without it
        new = out.layer.add()
        new.CopyFrom(layer)
        if kind == "SoftmaxWithInfogainLoss":           # native InfogainLoss: the same bottoms and tops
            new.type = "InfogainLoss"
            new.ClearField("python_param")
            keys = load_yaml(layer.python_param.param_str or "{}") or {}
            if "source" in keys:
                new.infogain_loss_param.source = keys["source"]
        elif kind != "Constant":                        # Constant (H as a bottom) stays
            raise ValueError(f"no native counterpart known for {kind}")
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
    for net, size, ours_name, native_name, make_ours, make_native, has_target in e2e_cases(tmp, args.tiny):
        if args.only and args.only not in net:
            continue
        t_o, t_n, ratio, spread = time_steps(make_ours(), make_native(), rounds, 0.005 if args.tiny else 0.2)
        extra = ratio - 1
        if has_target:
            ok = "met" if extra <= E2E_TARGET else "MISSED"
            target = f"at most {E2E_TARGET:.0%} more per iteration than native"
        else:
            ok = target = ""
        rows.append({"section": "end-to-end", "family": net, "size": size, "ours": ours_name,
                     "native": native_name, "ours_ms": t_o * 1e3, "native_ms": t_n * 1e3,
                     "ratio": ratio, "spread": spread, "target": target, "target_ok": ok})
        print(f"{net:<34} {size:<13} {ours_name:<34} {1 / t_o:8.1f} {native_name:<24} {1 / t_n:8.1f} "
              f"{extra:+7.1%} {spread:6.1%}  {ok + ': ' + target if target else '(reported only: no target)'}")
    return rows


# ---------------------------------------------------------------------------
# Per-layer cases
# ---------------------------------------------------------------------------

def build(shapes, layer_text):
    text = "force_backward: true\n" + "\n".join([_input(n, s) for n, s in shapes.items()] + [layer_text]) + "\n"
    return net_from_text(text)


def fwd_bwd(net):
    n = len(net.layers)
    net._forward(0, n - 1)
    net._backward(n - 1, 0)


def layer_cases(tmp, tiny=False):
    """Yields (family, size label, elements, ours name, native name, ours net, native net, data)."""
    rng = np.random.RandomState(0)
    class_sizes = [(4, 3)] if tiny else [(32, 10), (256, 10), (256, 100), (256, 1000)]
    for n, c in class_sizes:
        size = f"N={n} C={c}"
        scores = rng.randn(n, c).astype(np.float32) * 3
        label = rng.randint(0, c, n).astype(np.float32)
        shapes = {"scores": (n, c), "label": (n,)}
        data = {"scores": scores, "label": label}
        hpath = write_h(os.path.join(tmp, f"H_{c}.binaryproto"), rng.rand(c, c))
        ipath = write_h(os.path.join(tmp, f"I_{c}.binaryproto"), np.eye(c))
        yield ("infogain", size, n * c, "SoftmaxWithInfogainLoss", "InfogainLoss (native)",
               build(shapes, python_loss("SoftmaxWithInfogainLoss", ["scores", "label"], f"{{source: '{hpath}'}}")),
               build(shapes, native_loss("InfogainLoss", ["scores", "label"],
                                         f'infogain_loss_param {{ source: "{hpath}" }}')),
               data)
        yield ("infogain H=I", size, n * c, "SoftmaxWithInfogainLoss", "SoftmaxWithLoss (native)",
               build(shapes, python_loss("SoftmaxWithInfogainLoss", ["scores", "label"], f"{{source: '{ipath}'}}")),
               build(shapes, native_loss("SoftmaxWithLoss", ["scores", "label"])),
               data)

        target = (rng.rand(n, c) < 0.1).astype(np.float32)
        sshapes = {"scores": (n, c), "target": (n, c)}
        sdata = {"scores": scores, "target": target}
        yield ("sigmoid", size, n * c, "WeightedSigmoidCrossEntropyLoss", "SigmoidCrossEntropyLoss (native)",
               build(sshapes, python_loss("WeightedSigmoidCrossEntropyLoss", ["scores", "target"], "{pos_weight: 5}")),
               build(sshapes, native_loss("SigmoidCrossEntropyLoss", ["scores", "target"])),
               sdata)
        yield ("sigmoid vs seed", size, n * c, "WeightedSigmoidCrossEntropyLoss", "seed 002 Python layer",
               build(sshapes, python_loss("WeightedSigmoidCrossEntropyLoss", ["scores", "target"],
                                          "{pos_weight: 5, normalization: NONE}")),
               build(sshapes, python_loss("SigmoidCrossEntropyWeightLossLayer", ["scores", "target"],
                                          '{"cls_weight": 5}', module="seed_layers")),
               sdata)

        pred = rng.randn(n, c).astype(np.float32)
        rshapes = {"pred": (n, c), "target": (n, c)}
        rdata = {"pred": pred, "target": rng.randn(n, c).astype(np.float32)}
        yield ("smoothl1", size, n * c, "SmoothL1Loss", "EuclideanLoss (native)",
               build(rshapes, python_loss("SmoothL1Loss", ["pred", "target"])),
               build(rshapes, native_loss("EuclideanLoss", ["pred", "target"])),
               rdata)

        feats = rng.randn(n, c).astype(np.float32)
        yield ("center", size, n * c, "CenterLoss", "EuclideanLoss (native, same data size)",
               build({"feat": (n, c), "label": (n,)},
                     python_loss("CenterLoss", ["feat", "label"], "{num_classes: 10}")),
               build({"feat": (n, c), "target": (n, c)}, native_loss("EuclideanLoss", ["feat", "target"])),
               {"feat": feats, "label": rng.randint(0, 10, n).astype(np.float32),
                "target": rng.randn(n, c).astype(np.float32)})

    # the fixed cost of any Python layer: a layer that does nothing, against
    # the cheapest native loss, at the smallest size
    n, c = (4, 3) if tiny else (32, 10)
    pred = rng.randn(n, c).astype(np.float32)
    yield ("python floor", f"N={n} C={c}", n * c, "NoOp Python layer (bench)", "EuclideanLoss (native)",
           build({"pred": (n, c), "target": (n, c)}, python_loss("NoOpLoss", ["pred", "target"], module="noop_layer")),
           build({"pred": (n, c), "target": (n, c)}, native_loss("EuclideanLoss", ["pred", "target"])),
           {"pred": pred, "target": pred * 0})

    # segmentation: classes on axis 1, one label per pixel
    n, c, hh = (1, 3, 8) if tiny else (8, 21, 128)
    size = f"N={n} C={c} {hh}x{hh}"
    shapes = {"scores": (n, c, hh, hh), "label": (n, 1, hh, hh)}
    data = {"scores": rng.randn(n, c, hh, hh).astype(np.float32),
            "label": rng.randint(0, c, (n, 1, hh, hh)).astype(np.float32)}
    hpath = write_h(os.path.join(tmp, "H_seg.binaryproto"), rng.rand(c, c))
    ipath = write_h(os.path.join(tmp, "I_seg.binaryproto"), np.eye(c))
    yield ("infogain", size, n * c * hh * hh, "SoftmaxWithInfogainLoss", "InfogainLoss (native)",
           build(shapes, python_loss("SoftmaxWithInfogainLoss", ["scores", "label"], f"{{source: '{hpath}'}}")),
           build(shapes, native_loss("InfogainLoss", ["scores", "label"], f'infogain_loss_param {{ source: "{hpath}" }}')),
           data)
    yield ("infogain H=I", size, n * c * hh * hh, "SoftmaxWithInfogainLoss", "SoftmaxWithLoss (native)",
           build(shapes, python_loss("SoftmaxWithInfogainLoss", ["scores", "label"], f"{{source: '{ipath}'}}")),
           build(shapes, native_loss("SoftmaxWithLoss", ["scores", "label"])),
           data)


LARGE = 256 * 1000     # N * C from which the per-layer speed targets apply
LARGE_TARGETS = {      # family -> (max ratio ours/native, text)
    "infogain": (1 / 3, "at least 3x faster than native InfogainLoss"),
    "infogain H=I": (1 / 2, "at least 2x faster than native SoftmaxWithLoss"),
    "sigmoid": (1 / 3, "at least 3x faster than native SigmoidCrossEntropyLoss"),
}


def layer_target(family, elements):
    if family == "sigmoid vs seed":
        return (1.0, "never slower than the seed's layer")
    if elements >= LARGE and family in LARGE_TARGETS:
        return LARGE_TARGETS[family]
    return None


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
    for family, size, elements, ours_name, native_name, ours, native, data in layer_cases(tmp, args.tiny):
        if args.only and args.only not in family:
            continue
        inner = 1 if args.tiny else (5 if elements > 10**6 else (20 if elements >= LARGE else 100))
        t_o, t_n, ratio, spread = time_pair(ours, native, data, rounds, inner)
        tgt = layer_target(family, elements)
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
    for family, size, _, ours_name, _, ours, _, data in layer_cases(tmp):
        if size != "N=256 C=100" or family in ("sigmoid vs seed",):
            continue
        fill(ours, data)
        for _ in range(100):
            fwd_bwd(ours)
        before = current_rss_mib()
        for _ in range(iterations - 100):
            fwd_bwd(ours)
        rows.append((f"{ours_name} ({family})", before, current_rss_mib()))
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
