"""Draw a trained net's 2-D features coloured by class (the center-loss picture).

Runs each model (a prototxt and its .caffemodel) in the TEST phase over its
own test data, collects a 2-D feature blob and the labels, and draws one
scatter panel per model, side by side: give two models, trained with and
without center loss, for the figure of Wen et al. (ECCV 2016).  Each panel's
title carries the intra/inter ratio: the mean distance of a feature to its
class mean divided by the mean distance between class means (lower = more
compact classes; it does not depend on the scale of the features).

Example, from a template folder after training both nets:

  caffe-losses plot-features --model train_val.prototxt lenetpp_center_iter_2000.caffemodel \\
      --model softmax/train_val.prototxt softmax/lenetpp_iter_2000.caffemodel \\
      --title "softmax + center loss" --title "softmax only" --out features.png

Relative data paths inside a prototxt (``hdf5_data_param { source: ... }``)
are resolved as Caffe does, against the current folder; when they do not
exist there but do next to the prototxt, the prototxt's folder is used
(``--root`` sets it explicitly).
"""

import os
import sys

import numpy as np

from caffe_losses.features import draw_features, intra_inter_ratio
from caffe_losses.prototxt import working_directory
from caffe_losses.safety import OutputError, check_output, output_file

__all__ = ["add_arguments", "run", "load_net", "collect_features", "intra_inter_ratio",
           "draw_features", "evaluate"]


def add_arguments(parser):
    parser.add_argument("--model", nargs=2, action="append", required=True,
                        metavar=("PROTOTXT", "CAFFEMODEL"),
                        help="a net and its trained weights; repeat for side-by-side panels (at most 4)")
    parser.add_argument("--title", action="append", default=None,
                        help="panel title, once per --model (default: the weights' file name)")
    parser.add_argument("--feature", default="feature",
                        help="blob holding the 2-D feature, N x 2 (default: %(default)s)")
    parser.add_argument("--label", default="label", help="blob holding the labels (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=None,
                        help="how many test samples to draw (default: all rows of the TEST-phase "
                             "HDF5Data source, else one batch)")
    parser.add_argument("--root", default=None,
                        help="folder that relative paths in the prototxts are resolved against "
                             "(default: the current folder, else the prototxt's folder)")
    parser.add_argument("--out", default="features.png", help="PNG to write (default: %(default)s)")
    parser.add_argument("--suptitle", default="2-D features of the test set, coloured by class",
                        help="figure title (default: %(default)r)")


def run(args):
    models = args.model
    if len(models) > 4:
        raise SystemExit(f"plot-features: at most 4 --model pairs, got {len(models)}")
    titles = args.title or []
    if titles and len(titles) != len(models):
        raise SystemExit(f"plot-features: give one --title per --model ({len(models)}), got {len(titles)}")
    if args.samples is not None and args.samples < 1:
        raise SystemExit(f"plot-features: --samples must be >= 1, got {args.samples}")
    inputs = [path for pair in models for path in pair]
    try:
        check_output(args.out, inputs, option="--out", tool="plot-features")
    except OutputError as err:
        print(err, file=sys.stderr)
        return 2
    panels = []
    for k, (prototxt, weights) in enumerate(models):
        try:
            net = load_net(prototxt, weights, root=args.root)
            samples = args.samples if args.samples is not None else _default_samples(prototxt, args.root)
            feats, labels = collect_features(net, args.feature, args.label, samples)
        except (FileNotFoundError, ValueError) as err:
            print(err, file=sys.stderr)
            return 2
        title = titles[k] if titles else os.path.basename(weights)
        panels.append((feats, labels, title))
    with output_file(args.out, inputs, option="--out", tool="plot-features") as tmp:
        draw_features(panels, tmp, suptitle=args.suptitle)
    for feats, labels, title in panels:
        print(f"{title}: {len(labels)} samples, intra/inter ratio {intra_inter_ratio(feats, labels):.4f}")
    print(f"wrote {args.out}")
    return 0


# ---------------------------------------------------------------------------
# Nets and data
# ---------------------------------------------------------------------------


def _read_net_param(prototxt):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    param = caffe_pb2.NetParameter()
    with open(prototxt) as f:
        text_format.Merge(f.read(), param)
    return param


def _test_hdf5_sources(prototxt):
    """The ``source`` of every HDF5Data layer the TEST phase builds."""
    from caffe.proto import caffe_pb2
    out = []
    for layer in _read_net_param(prototxt).layer:
        if layer.type != "HDF5Data":
            continue
        phases = [r.phase for r in layer.include if r.HasField("phase")]
        if phases and caffe_pb2.TEST not in phases:
            continue
        if any(r.HasField("phase") and r.phase == caffe_pb2.TEST for r in layer.exclude):
            continue
        out.append(layer.hdf5_data_param.source)
    return out


def _resolve_root(prototxt, root):
    """The folder to build the net in, so that its relative data paths exist."""
    if root is not None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"plot-features: --root {root!r} is not a folder")
        return os.path.abspath(root)
    sources = [s for s in _test_hdf5_sources(prototxt) if not os.path.isabs(s)]
    if all(os.path.isfile(s) for s in sources):
        return os.getcwd()
    here = os.path.dirname(os.path.abspath(prototxt))
    if all(os.path.isfile(os.path.join(here, s)) for s in sources):
        return here
    missing = next(s for s in sources if not os.path.isfile(s))
    raise FileNotFoundError(f"plot-features: {prototxt}: the TEST data source {missing!r} exists neither "
                            f"in the current folder nor next to the prototxt; run the template's "
                            f"prepare step (caffe-losses demo), or pass --root")


def _default_samples(prototxt, root):
    """Rows of the TEST-phase HDF5Data source(s), or None (= one batch)."""
    import h5py
    base = _resolve_root(prototxt, root)
    total = 0
    for source in _test_hdf5_sources(prototxt):
        path = source if os.path.isabs(source) else os.path.join(base, source)
        with open(path) as f:
            files = [line.strip() for line in f if line.strip()]
        for name in files:
            name = name if os.path.isabs(name) else os.path.join(base, name)
            with h5py.File(name, "r") as h5:
                first = next(iter(h5.keys()))
                total += h5[first].shape[0]
        break   # one data layer is enough
    return total or None


def load_net(prototxt, weights, *, root=None):
    """A TEST-phase ``caffe.Net`` with ``weights``, built where its data paths resolve."""
    import caffe
    for path, what in ((prototxt, "prototxt"), (weights, "weights")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"plot-features: {what} file not found: {path}")
    prototxt, weights = os.path.abspath(prototxt), os.path.abspath(weights)
    with working_directory(_resolve_root(prototxt, root)):
        return caffe.Net(prototxt, caffe.TEST, weights=weights)


def _forward_rows(net, names, samples):
    """Forward passes until ``samples`` rows (None: one batch); the rows of each named blob."""
    for name in names:
        if name not in net.blobs:
            raise ValueError(f"plot-features: the net has no blob {name!r}; blobs: {', '.join(net.blobs)}")
    rows = {name: [] for name in names}
    seen = 0
    while True:
        net.forward()
        n = net.blobs[names[0]].data.shape[0]
        take = n if samples is None else min(n, samples - seen)
        for name in names:
            data = net.blobs[name].data
            rows[name].append(data.reshape(data.shape[0], -1)[:take].astype(np.float64))
        seen += take
        if samples is None or seen >= samples:
            return {name: np.concatenate(parts) for name, parts in rows.items()}


def collect_features(net, feature="feature", label="label", samples=None):
    """Runs ``net`` forward until ``samples`` rows are seen; returns (features, labels).

    Args:
      net: a ``caffe.Net`` whose data layer produces ``feature`` and ``label``.
      feature: name of the N x 2 (or N x 2 x 1 x 1) blob.
      label: name of the label blob (N values).
      samples: number of rows; None means one batch.

    Returns:
      (features (samples, 2) float64, labels (samples,) int64).
    """
    return evaluate(net, feature, label, None, samples)[:2]


def evaluate(net, feature="feature", label="label", scores="ip2", samples=None):
    """:func:`collect_features` plus the accuracy of ``scores``' argmax (None: no scores).

    Returns:
      (features (samples, 2), labels (samples,), accuracy or None).
    """
    names = [feature, label] + ([scores] if scores else [])
    rows = _forward_rows(net, names, samples)
    feats, labels = rows[feature], rows[label]
    if feats.shape[1] != 2:
        raise ValueError(f"plot-features: blob {feature!r} has {feats.shape[1]} values per sample; "
                         f"expected a 2-D feature (N x 2)")
    if labels.shape[1] != 1:
        raise ValueError(f"plot-features: blob {label!r} has {labels.shape[1]} values per sample; "
                         f"expected one label per sample")
    labels = labels[:, 0].astype(np.int64)
    accuracy = float(np.mean(rows[scores].argmax(axis=1) == labels)) if scores else None
    return feats, labels, accuracy
