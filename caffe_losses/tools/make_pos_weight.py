"""Per-channel pos_weight (negatives / positives) from a label file, printed as a param_str.

Reads targets in [0, 1] (N x C, N x C x H x W, or N for one channel) from a
text file (one sample per row), a .npy file, or an HDF5 dataset written as
FILE.h5:DATASET; counts per channel along axis 1 the positives (sum t) and
negatives (sum (1 - t)), leaving out the ignore label; and prints the
WeightedSigmoidCrossEntropyLoss setting that balances them, PyTorch's
pos_weight = negatives / positives (100 positives and 300 negatives give 3):

  caffe-losses make-pos-weight data/train.h5:label
  param_str: "{pos_weight: [44.01, 23.09, 14.11]}"

One channel prints a number (it works for any shape).  Per-channel counts go
to stderr.
"""

import os
import sys

import numpy as np

from caffe_losses.core.sigmoid import count_targets, pos_weight_from_counts

__all__ = ["add_arguments", "run", "load_labels", "format_param_str"]


def add_arguments(parser):
    parser.add_argument("labels", help="label file: .txt/.csv (one sample per row), .npy, "
                                       "or FILE.h5:DATASET")
    parser.add_argument("--ignore-label", type=float, default=None,
                        help="target value left out of the counts (as the layer's ignore_label)")
    parser.add_argument("--max-weight", type=float, default=None,
                        help="cap on each weight, also used for a channel with no positive "
                             "(default: such a channel is an error)")
    parser.add_argument("--decimals", type=int, default=4, help="decimals printed (default: 4)")
    parser.add_argument("--extra", default="",
                        help="more param_str keys to append, e.g. 'ignore_label: 255'")
    parser.add_argument("--quiet", action="store_true", help="print only the param_str line")


def load_labels(spec):
    """Loads the label array named by ``spec`` (see the module docstring).

    Raises:
      FileNotFoundError / ValueError with what was expected.
    """
    if os.path.isfile(spec):
        path, dataset = spec, None
    elif ":" in spec and os.path.isfile(spec.rsplit(":", 1)[0]):
        path, dataset = spec.rsplit(":", 1)
    else:
        raise FileNotFoundError(f"label file not found: {spec}")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".h5", ".hdf5", ".hdf"):
        import h5py
        with h5py.File(path, "r") as f:
            names = []
            f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
            if dataset is None:
                raise ValueError(f"{path}: name the dataset as {path}:DATASET; it holds "
                                 f"{', '.join(names) or 'no dataset'}")
            if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
                raise ValueError(f"{path}: no dataset '{dataset}'; it holds "
                                 f"{', '.join(names) or 'no dataset'}")
            return np.asarray(f[dataset][...], dtype=np.float64)
    if dataset is not None:
        raise ValueError(f"{spec}: ':{dataset}' names an HDF5 dataset, but {path} is not an "
                         f".h5 file")
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: not a plain numeric .npy array ({err})") from None
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise ValueError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
        return arr.astype(np.float64)
    try:
        return np.loadtxt(path, ndmin=2, delimiter="," if ext == ".csv" else None, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: not a numeric text table, one sample per row ({err})") from None


def _fmt(value, decimals):
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def format_param_str(weights, *, decimals=4, extra=""):
    """The ``param_str`` line for ``weights`` (one number, or a list)."""
    weights = np.atleast_1d(weights)
    if weights.size == 1:
        body = f"pos_weight: {_fmt(float(weights[0]), decimals)}"
    else:
        body = "pos_weight: [" + ", ".join(_fmt(float(w), decimals) for w in weights) + "]"
    if extra.strip():
        body += ", " + extra.strip().strip("{}").strip()
    return f'param_str: "{{{body}}}"'


def run(args):
    try:
        labels = load_labels(args.labels)
        pos, neg = count_targets(labels, ignore_label=args.ignore_label, owner="make-pos-weight")
        weights = pos_weight_from_counts(pos, neg, max_weight=args.max_weight)
    except (OSError, ValueError) as err:
        print(f"make-pos-weight: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{args.labels}: {labels.shape[0] if labels.ndim else 1} sample(s), "
              f"{len(weights)} channel(s) along axis 1", file=sys.stderr)
        for c, (p, n, w) in enumerate(zip(pos, neg, weights)):
            print(f"  channel {c}: {p:g} positive, {n:g} negative -> pos_weight {w:.4g}",
                  file=sys.stderr)
        for c in np.flatnonzero(weights == 0):
            print(f"  warning: channel {c} has no negative: pos_weight 0 drops its positives",
                  file=sys.stderr)
    print(format_param_str(weights, decimals=args.decimals, extra=args.extra))
    return 0
