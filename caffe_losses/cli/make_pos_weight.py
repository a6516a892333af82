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

import math
import os
import sys

import numpy as np

from caffe_losses.losses.common import check_targets
from caffe_losses.losses.sigmoid.core import channel_shape
from caffe_losses.files.hmatrix import read_labels
from caffe_losses.glue.params import FLOAT32_MAX

__all__ = ["add_arguments", "run", "load_labels", "count_targets", "pos_weight_from_counts",
           "format_param_str", "param_str_value"]


MAX_DECIMALS = 17


def add_arguments(parser):
    parser.add_argument("labels", help="label file: .txt/.csv (one sample per row), .npy, "
                                       "or FILE.h5:DATASET")
    parser.add_argument("--ignore-label", type=float, default=None,
                        help="target value left out of the counts (as the layer's ignore_label)")
    parser.add_argument("--max-weight", type=float, default=None,
                        help="cap on each weight, also used for a channel with no positive "
                             "(default: such a channel is an error)")
    parser.add_argument("--decimals", type=int, default=4,
                        help=f"decimals printed, 0 to {MAX_DECIMALS} (default: 4)")
    parser.add_argument("--extra", default="",
                        help="more param_str keys to append, e.g. 'ignore_label: 255'")
    parser.add_argument("--quiet", action="store_true", help="print only the param_str line")


def load_labels(spec):
    """Loads the label array named by ``spec`` (see the module docstring), in its shape.

    ``FILE.h5:DATASET`` names a dataset; the file is read by
    ``hmatrix.read_labels`` (``table=True``), as ``make-h`` reads its labels.

    Raises:
      FileNotFoundError / ValueError with what was expected.
    """
    if os.path.isfile(spec):
        path, dataset = spec, None
    elif ":" in spec and os.path.isfile(spec.rsplit(":", 1)[0]):
        path, dataset = spec.rsplit(":", 1)
    else:
        raise FileNotFoundError(f"label file not found: {spec}")
    if dataset is not None and os.path.splitext(path)[1].lower() not in (".h5", ".hdf5", ".hdf"):
        raise ValueError(f"{spec}: ':{dataset}' names an HDF5 dataset, but {path} is not an "
                         f".h5 file")
    return read_labels(path, dataset=dataset, table=True, what=path)


def _fmt(value, decimals):
    """``value`` with at most ``decimals`` decimals, trailing zeros of the fraction dropped.

    10 stays "10" at any ``decimals`` (only zeros after the decimal point go).
    """
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text != "-0" else "0"


def count_targets(target, *, ignore_label=None, owner="count_targets", describe=None):
    """Positives and negatives per channel (axis 1) of a target array.

    ``pos_c = sum t`` and ``neg_c = sum (1 - t)`` over every axis but 1,
    leaving out elements equal to ``ignore_label`` (counts for 0/1 targets,
    expected counts for soft targets).  A 1-D array is one channel.
    Targets are checked by the layer's own ``check_targets`` (``describe``
    phrases its message, as there).

    Returns:
      (pos, neg): float64 arrays of shape (C,).
    """
    t = np.asarray(target, dtype=np.float64)
    ignored = check_targets(owner, t, ignore_label, name="labels", describe=describe)
    n, c, inner = channel_shape(t.shape)
    t = t.reshape(n, c, inner)
    if ignored is not None:
        valid = ~ignored.reshape(n, c, inner)
        pos = np.where(valid, t, 0).sum(axis=(0, 2))
        neg = np.where(valid, 1 - t, 0).sum(axis=(0, 2))
    else:
        pos = t.sum(axis=(0, 2))
        neg = (1 - t).sum(axis=(0, 2))
    return pos, neg


def pos_weight_from_counts(pos, neg, *, max_weight=None):
    """PyTorch's ``pos_weight = neg / pos`` per channel.

    Args:
      pos, neg: per-channel counts (from :func:`count_targets`).
      max_weight: cap on each weight, also used for a channel with no
        positive; None: such a channel is an error.

    Returns:
      float64 array (C,).

    Raises:
      ValueError naming the channels with no positive when ``max_weight`` is None.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    empty = pos <= 0
    if empty.any() and max_weight is None:
        chans = ", ".join(str(int(i)) for i in np.flatnonzero(empty)[:10])
        raise ValueError(f"channel(s) {chans} have no positive target: neg/pos is infinite; "
                         f"give a max_weight to use for them")
    w = np.divide(neg, np.where(empty, 1.0, pos))
    if max_weight is not None:
        w = np.where(empty, max_weight, np.minimum(w, max_weight))
    return w


def _bad_target(spec, labels, ignore_label):
    """How the tool words the first bad target (``check_targets``' ``describe``): file, index, option."""
    def describe(value, idx, count):
        where = f" at index {idx}" if labels.ndim > 1 else f" at position {idx[0]}" if idx else ""
        extra = f" or the --ignore-label {ignore_label:g}" if ignore_label is not None else \
            " (give --ignore-label V to leave a value out)"
        return f"{spec} holds {value:g}{where}; expected targets in [0, 1]{extra}; {count} bad value(s)"
    return describe


def weights_from_counts(pos, neg, max_weight):
    """negatives / positives per channel, capped at ``max_weight`` (also for channels with no positive)."""
    empty = np.flatnonzero(np.asarray(pos) <= 0)
    if empty.size and max_weight is None:      # said with the option's name
        chans = ", ".join(str(int(i)) for i in empty[:10])
        raise ValueError(f"channel(s) {chans} have no positive target, so negatives / positives "
                         f"is infinite: give --max-weight W to use W for them")
    weights = pos_weight_from_counts(pos, neg, max_weight=max_weight)
    big = np.flatnonzero(~(weights <= FLOAT32_MAX))
    if big.size:      # e.g. a soft positive of 1e-40: the layer refuses a weight beyond float32
        c = int(big[0])
        raise ValueError(f"channel {c}'s pos_weight would be {float(neg[c]):g} negatives / "
                         f"{float(pos[c]):g} positives = {float(weights[c]):.3g}, beyond float32 "
                         f"(at most {FLOAT32_MAX:.4g}), which the layer refuses: give --max-weight W "
                         f"to cap it")
    return weights


def check_options(args):
    if not 0 <= args.decimals <= MAX_DECIMALS:
        raise ValueError(f"--decimals must be in [0, {MAX_DECIMALS}]. Received: {args.decimals}")
    if args.max_weight is not None and not (math.isfinite(args.max_weight) and
                                            0 < args.max_weight <= FLOAT32_MAX):
        raise ValueError(f"--max-weight must be a finite number > 0 (a weight the layer accepts). "
                         f"Received: {args.max_weight:g}")
    if args.ignore_label is not None and not math.isfinite(args.ignore_label):
        raise ValueError(f"--ignore-label must be a finite number. Received: {args.ignore_label:g}")


def check_printed(weights, decimals):
    """A positive weight must not print as 0 (that would drop the channel's positives)."""
    for c, w in enumerate(weights):
        if w > 0 and float(_fmt(float(w), decimals)) == 0:
            raise ValueError(f"channel {c}'s weight {w:.3g} prints as 0 with --decimals {decimals}: "
                             f"give more decimals")


def check_param_str(text):
    """The printed param_str must load in the layer (it checks --extra too)."""
    from caffe_losses.glue.params import parse_params
    from caffe_losses.losses.sigmoid.layer import WeightedSigmoidCrossEntropyLoss as layer
    parse_params(layer.__name__, layer.PARAMS, text)


def param_str_value(weights, *, decimals=4, extra=""):
    """The ``param_str`` text for ``weights`` (one number, or a list), as the layer reads it."""
    weights = np.atleast_1d(weights)
    if weights.size == 1:
        body = f"pos_weight: {_fmt(float(weights[0]), decimals)}"
    else:
        body = "pos_weight: [" + ", ".join(_fmt(float(w), decimals) for w in weights) + "]"
    if extra.strip():
        body += ", " + extra.strip().strip("{}").strip()
    return f"{{{body}}}"


def prototxt_string(text):
    """``text`` as a double-quoted prototxt string, escaped as protobuf's text format writes it."""
    from google.protobuf import text_encoding
    return f'"{text_encoding.CEscape(text, as_utf8=True)}"'


def format_param_str(weights, *, decimals=4, extra=""):
    """The ``param_str`` line for ``weights`` (one number, or a list): valid prototxt, the value
    escaped as Caffe's text parser reads it (``--extra 'normalization: "NONE"'`` prints
    ``\\"NONE\\"``)."""
    return f"param_str: {prototxt_string(param_str_value(weights, decimals=decimals, extra=extra))}"


def run(args):
    try:
        check_options(args)
        labels = load_labels(args.labels)
        if labels.size == 0:
            raise ValueError(f"{args.labels}: holds no targets")
        pos, neg = count_targets(labels, ignore_label=args.ignore_label, owner="make-pos-weight",
                                 describe=_bad_target(args.labels, labels, args.ignore_label))
        weights = weights_from_counts(pos, neg, args.max_weight)
        check_printed(weights, args.decimals)
        line = format_param_str(weights, decimals=args.decimals, extra=args.extra)
        try:
            check_param_str(param_str_value(weights, decimals=args.decimals, extra=args.extra))
        except ValueError as err:
            if not args.extra.strip():
                raise
            raise ValueError(f"--extra {args.extra.strip()[:60]!r} makes a param_str the layer "
                             f"refuses: {err}") from None
    except (OSError, ValueError) as err:
        print(f"make-pos-weight: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"make-pos-weight: error: {args.labels} is too large for the memory available",
              file=sys.stderr)
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
    print(line)
    return 0
