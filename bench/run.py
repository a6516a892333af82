#!/usr/bin/env python3
"""Benchmarks: each caffe-losses layer against its native Caffe counterpart.

Every case builds two real ``caffe.Net`` s from prototxt text with identical
Input blobs and one loss layer each (ours, native), fills them with the same
data, and times forward+backward (``net._forward`` / ``net._backward``, the
C++ entry points, so pycaffe's dict building is not timed) in interleaved
rounds: ours, native, ours, native, ...  The median of the rounds is
reported, with the ratio ours/native measured in the same process, and the
effective memory bandwidth (bytes of bottoms read plus diffs written per
second) next to the machine's copy bandwidth (a NumPy array copy).

Run with ``make bench`` (or ``.venv/bin/python bench/run.py``).  Writes
``bench/results/bench.csv`` and ``bench/results/bench.png``; ``--quick`` for
fewer rounds.  Not part of the tests: timings vary with the machine.
"""

import argparse
import csv
import os
import resource
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE, os.path.join(ROOT, "tests")):   # tests/seed_layers.py: the seed snippets
    if p not in sys.path:
        sys.path.insert(0, p)

import caffe  # noqa: E402

from caffe_losses.testing import net_from_text  # noqa: E402

caffe.set_mode_cpu()


# ---------------------------------------------------------------------------
# Net builders
# ---------------------------------------------------------------------------

def _inputs(shapes):
    out = []
    for name, shape in shapes.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        out.append(f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}')
    return out


def python_layer(layer, bottoms, param_str="", module="caffe_losses"):
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    ps = param_str.replace('"', '\\"')
    return (f'layer {{ name: "loss" type: "Python" {b} top: "loss" python_param {{ module: "{module}" '
            f'layer: "{layer}" param_str: "{ps}" }} loss_weight: 1 }}')


def native_layer(ltype, bottoms, extra=""):
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    return f'layer {{ name: "loss" type: "{ltype}" {b} top: "loss" {extra} }}'


def build(shapes, layer_text):
    text = "force_backward: true\n" + "\n".join(_inputs(shapes) + [layer_text]) + "\n"
    return net_from_text(text)


def fill(net, data):
    for name, value in data.items():
        if name in net.blobs:
            net.blobs[name].data[...] = value


def fwd_bwd(net):
    n = len(net.layers)
    net._forward(0, n - 1)
    net._backward(n - 1, 0)


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def write_h(path, h):
    blob = caffe.io.array_to_blobproto(h.reshape(1, 1, *h.shape).astype(np.float32))
    with open(path, "wb") as f:
        f.write(blob.SerializeToString())
    return path


def cases(tmp, quick=False):
    """Yields (family, size label, ours-name, native-name, ours-net, native-net, bytes, diff-bottoms)."""
    rng = np.random.RandomState(0)
    class_sizes = [(256, 10), (256, 100), (256, 1000), (32, 10)]
    for n, c in class_sizes:
        size = f"N={n} C={c}"
        scores = rng.randn(n, c).astype(np.float32) * 3
        label = rng.randint(0, c, n).astype(np.float32)
        shapes = {"scores": (n, c), "label": (n,)}
        data = {"scores": scores, "label": label}
        nbytes = 4 * (2 * scores.size + label.size)

        h = rng.rand(c, c).astype(np.float32)
        hpath = write_h(os.path.join(tmp, f"H_{c}.binaryproto"), h)
        ipath = write_h(os.path.join(tmp, f"I_{c}.binaryproto"), np.eye(c, dtype=np.float32))
        yield ("infogain", size, "SoftmaxWithInfogainLoss", "InfogainLoss (native)",
               build(shapes, python_layer("SoftmaxWithInfogainLoss", ["scores", "label"], f"{{source: '{hpath}'}}")),
               build(shapes, native_layer("InfogainLoss", ["scores", "label"], f'infogain_loss_param {{ source: "{hpath}" }}')),
               data, nbytes)
        yield ("infogain H=I", size, "SoftmaxWithInfogainLoss", "SoftmaxWithLoss (native)",
               build(shapes, python_layer("SoftmaxWithInfogainLoss", ["scores", "label"], f"{{source: '{ipath}'}}")),
               build(shapes, native_layer("SoftmaxWithLoss", ["scores", "label"])),
               data, nbytes)

        target = (rng.rand(n, c) < 0.1).astype(np.float32)
        sshapes = {"scores": (n, c), "target": (n, c)}
        sdata = {"scores": scores, "target": target}
        sbytes = 4 * 3 * scores.size
        yield ("sigmoid", size, "WeightedSigmoidCrossEntropyLoss", "SigmoidCrossEntropyLoss (native)",
               build(sshapes, python_layer("WeightedSigmoidCrossEntropyLoss", ["scores", "target"], "{pos_weight: 5}")),
               build(sshapes, native_layer("SigmoidCrossEntropyLoss", ["scores", "target"])),
               sdata, sbytes)
        yield ("sigmoid vs seed", size, "WeightedSigmoidCrossEntropyLoss", "seed 002 Python layer",
               build(sshapes, python_layer("WeightedSigmoidCrossEntropyLoss", ["scores", "target"],
                                           "{pos_weight: 5, normalization: NONE}")),
               build(sshapes, python_layer("SigmoidCrossEntropyWeightLossLayer", ["scores", "target"],
                                           '{"cls_weight": 5}', module="seed_layers")),
               sdata, sbytes)

        pred = rng.randn(n, c).astype(np.float32)
        tgt = rng.randn(n, c).astype(np.float32)
        rshapes = {"pred": (n, c), "target": (n, c)}
        rdata = {"pred": pred, "target": tgt}
        yield ("smoothl1", size, "SmoothL1Loss", "EuclideanLoss (native)",
               build(rshapes, python_layer("SmoothL1Loss", ["pred", "target"])),
               build(rshapes, native_layer("EuclideanLoss", ["pred", "target"])),
               rdata, 4 * 3 * pred.size)

        feats = rng.randn(n, c).astype(np.float32)
        lab10 = rng.randint(0, 10, n).astype(np.float32)
        cshapes = {"feat": (n, c), "label": (n,)}
        yield ("center", size, "CenterLoss", "EuclideanLoss (native, same data size)",
               build(cshapes, python_layer("CenterLoss", ["feat", "label"], "{num_classes: 10}")),
               build({"feat": (n, c), "target": (n, c)}, native_layer("EuclideanLoss", ["feat", "target"])),
               {"feat": feats, "label": lab10, "target": rng.randn(n, c).astype(np.float32)},
               4 * (2 * feats.size + n))

    # the fixed cost of any Python layer: a layer that does nothing, against
    # the cheapest native loss, at the smallest size
    n, c = 32, 10
    pred = rng.randn(n, c).astype(np.float32)
    yield ("python floor", "N=32 C=10", "NoOp Python layer (bench)", "EuclideanLoss (native)",
           build({"pred": (n, c), "target": (n, c)}, python_layer("NoOpLoss", ["pred", "target"], module="noop_layer")),
           build({"pred": (n, c), "target": (n, c)}, native_layer("EuclideanLoss", ["pred", "target"])),
           {"pred": pred, "target": pred * 0}, 4 * 3 * pred.size)

    # segmentation: N=8, C=21, 128x128, classes on axis 1
    n, c, hh, ww = 8, 21, 128, 128
    size = "N=8 C=21 128x128"
    scores = rng.randn(n, c, hh, ww).astype(np.float32)
    label = rng.randint(0, c, (n, 1, hh, ww)).astype(np.float32)
    shapes = {"scores": (n, c, hh, ww), "label": (n, 1, hh, ww)}
    data = {"scores": scores, "label": label}
    nbytes = 4 * (2 * scores.size + label.size)
    hpath = write_h(os.path.join(tmp, "H_seg.binaryproto"), rng.rand(c, c).astype(np.float32))
    ipath = write_h(os.path.join(tmp, "I_seg.binaryproto"), np.eye(c, dtype=np.float32))
    yield ("infogain", size, "SoftmaxWithInfogainLoss", "InfogainLoss (native)",
           build(shapes, python_layer("SoftmaxWithInfogainLoss", ["scores", "label"], f"{{source: '{hpath}', axis: 1}}")),
           build(shapes, native_layer("InfogainLoss", ["scores", "label"],
                                      f'infogain_loss_param {{ source: "{hpath}" axis: 1 }}')),
           data, nbytes)
    yield ("infogain H=I", size, "SoftmaxWithInfogainLoss", "SoftmaxWithLoss (native)",
           build(shapes, python_layer("SoftmaxWithInfogainLoss", ["scores", "label"], f"{{source: '{ipath}', axis: 1}}")),
           build(shapes, native_layer("SoftmaxWithLoss", ["scores", "label"])),
           data, nbytes)


def time_pair(ours, native, data, rounds, inner):
    fill(ours, data)
    fill(native, data)
    for _ in range(3):          # warm-up (first calls allocate)
        fwd_bwd(ours)
        fwd_bwd(native)
    t_ours, t_native = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(inner):
            fwd_bwd(ours)
        t1 = time.perf_counter()
        for _ in range(inner):
            fwd_bwd(native)
        t2 = time.perf_counter()
        t_ours.append((t1 - t0) / inner)
        t_native.append((t2 - t1) / inner)
    return float(np.median(t_ours)), float(np.median(t_native))


def copy_bandwidth():
    a = np.ones(64 * 2**20 // 4, np.float32)
    b = np.empty_like(a)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        np.copyto(b, a)
        times.append(time.perf_counter() - t0)
    return 2 * a.nbytes / min(times)     # read + write


def current_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def rss_growth(iterations=1000):
    """Resident memory (MiB) after 100 and after `iterations` forward+backward passes of each layer."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family, size, ours_name, _, ours, _, data, _ in cases(tmp):
            if size != "N=256 C=100" or family in ("sigmoid vs seed",):
                continue
            fill(ours, data)
            for _ in range(100):
                fwd_bwd(ours)
            before = current_rss_mib()
            for _ in range(iterations - 100):
                fwd_bwd(ours)
            after = current_rss_mib()
            rows.append((f"{ours_name} ({family})", before, after))
    return rows


TARGETS = {   # family, size label prefix -> (max ratio ours/native, text)
    ("infogain", "N=256 C=1000"): (1 / 3, "at least 3x faster than native InfogainLoss"),
    ("infogain H=I", "N=256 C=1000"): (1 / 2, "at least 2x faster than native SoftmaxWithLoss"),
    ("sigmoid", "N=256 C=1000"): (1 / 3, "at least 3x faster than native SigmoidCrossEntropyLoss"),
    ("smoothl1", "N=256 C=1000"): (2.0, "within 2x of native EuclideanLoss"),
}


def target_for(family, size):
    if (family, size) in TARGETS:
        return TARGETS[(family, size)]
    if family == "python floor":
        return None
    if family == "sigmoid vs seed":
        return (0.1, "at least 10x faster than the seed's layer")
    if size == "N=32 C=10":
        return (2.0, "within 2x of native at the smallest size")
    return None


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{r['family']}\n{r['size']}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    colors = ["tab:red" if r["target_ok"] == "NO" else "tab:green" if r["ratio"] <= 1 else "tab:orange"
              for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(rows)), 5))
    ax.bar(range(len(rows)), ratios, color=colors)
    ax.axhline(1.0, color="black", linewidth=1, label="same speed as the native layer")
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("time ours / time native (log; < 1 is faster)")
    ax.set_title("caffe-losses vs native Caffe layers: forward+backward, median of interleaved runs")
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color="tab:green", label="faster than native (no target missed)"),
                       Patch(color="tab:orange", label="slower than native (no target missed)"),
                       Patch(color="tab:red", label="target missed (see the printed table)"),
                       ax.get_lines()[0]], fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="output folder")
    parser.add_argument("--only", help="only families containing this text")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rounds = 7 if args.quick else 21
    bw = copy_bandwidth()
    print(f"machine copy bandwidth (NumPy copy, read+write): {bw / 1e9:.1f} GB/s")
    rows = []
    header = (f"{'family':<17} {'size':<17} {'ours':<32} {'ms':>8} {'native':<38} {'ms':>8} "
              f"{'ours/native':>11} {'GB/s ours':>9}  target")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for family, size, ours_name, native_name, ours, native, data, nbytes in cases(tmp, args.quick):
            if args.only and args.only not in family:
                continue
            inner = 5 if "128x128" in size else (20 if "1000" in size else 100)
            t_o, t_n = time_pair(ours, native, data, rounds, inner)
            ratio = t_o / t_n
            tgt = target_for(family, size)
            ok = "" if tgt is None else ("yes" if ratio <= tgt[0] else "NO")
            row = {"family": family, "size": size, "ours": ours_name, "native": native_name,
                   "ours_ms": t_o * 1e3, "native_ms": t_n * 1e3, "ratio": ratio,
                   "ours_GBps": nbytes / t_o / 1e9, "native_GBps": nbytes / t_n / 1e9,
                   "copy_GBps": bw / 1e9, "target": tgt[1] if tgt else "", "target_ok": ok}
            rows.append(row)
            print(f"{family:<17} {size:<17} {ours_name:<32} {t_o * 1e3:8.3f} {native_name:<38} {t_n * 1e3:8.3f} "
                  f"{ratio:11.2f} {row['ours_GBps']:9.2f}  {ok + ': ' + tgt[1] if tgt else ''}")
    csv_path = os.path.join(args.out, "bench.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    png_path = os.path.join(args.out, "bench.png")
    plot(rows, png_path)
    print(f"\nwrote {csv_path} and {png_path}")
    missed = [r for r in rows if r["target_ok"] == "NO"]
    print(f"targets: {sum(r['target_ok'] == 'yes' for r in rows)} met, {len(missed)} missed")
    for r in missed:
        print(f"  missed: {r['family']} {r['size']}: ratio {r['ratio']:.2f}, target {r['target']}")
    if not args.only:
        print("\nresident memory across 1,000 forward+backward passes (N=256, C=100), MiB:")
        for name, before, after in rss_growth():
            print(f"  {name:<55} after 100: {before:8.1f}  after 1000: {after:8.1f}  growth {after - before:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
