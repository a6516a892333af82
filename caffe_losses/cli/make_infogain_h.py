"""Make an infogain H matrix (.binaryproto for InfogainLoss), or --show one.

Writes H as the (1, 1, L, L) BlobProto that Caffe's native InfogainLoss
(infogain_loss_param { source }) and caffe_losses' layers read; an output
ending in .npy is written as an L x L .npy instead (for the layers and
Constant). H[k, l] weights -log p_l for a sample of true class k.

Ways to make H (a base matrix, class weights, or both: H[k, :] = w[k] * base[k, :]):

  --identity L                       plain softmax loss
  --counts 900 90 10                 class weights from class counts
  --labels train.txt|.npy|.h5        ... or counted from a label file
      --weighting inverse | sqrt-inverse | effective-number [--beta 0.999]
      (normalised so the mean weight over the samples is 1)
  --matrix H.npy|H.csv               a full matrix you made
  --distances D.npy|D.csv --temperature T
                                     label distances -> similarities exp(-D/T)

Examples:

  caffe-losses make-h --identity 10 -o H.binaryproto
  caffe-losses make-h --labels data/train.h5 --weighting inverse -o H.binaryproto
  caffe-losses make-h --distances D.csv --temperature 0.5 --counts 900 90 10 -o H.binaryproto
  caffe-losses make-h --show H.binaryproto
"""

import math
import sys

import numpy as np

from caffe_losses.files import hmatrix
from caffe_losses.files.safety import check_output, output_file


def add_arguments(parser):
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="file to write: .binaryproto (1 x 1 x L x L BlobProto, read by "
                             "Caffe's InfogainLoss and by caffe_losses), or .npy (L x L)")
    parser.add_argument("--show", metavar="PATH",
                        help="describe and validate an existing H file (.binaryproto or .npy), "
                             "then exit")
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--identity", type=int, metavar="L",
                      help="H = identity of size L: the plain softmax loss")
    base.add_argument("--matrix", metavar="PATH",
                      help="a full L x L matrix you made (.npy, .csv/.txt, .binaryproto)")
    base.add_argument("--distances", metavar="PATH",
                      help="an L x L label distance matrix (.npy, .csv/.txt; zero diagonal), "
                           "turned into similarities H = exp(-D / T)")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="T of exp(-D / T) for --distances (default 1): small T keeps H near "
                             "the identity, large T spreads the target over near classes")
    freq = parser.add_mutually_exclusive_group()
    freq.add_argument("--counts", type=float, nargs="+", metavar="N",
                      help="training samples per class, class 0 first: class weights on the "
                           "diagonal (or scaling the rows of --matrix/--distances/--identity)")
    freq.add_argument("--labels", metavar="PATH",
                      help="count the classes in a label file: text (numbers, or Caffe list "
                           "lines '<image> <label>'), .npy, or HDF5 (see --dataset)")
    parser.add_argument("--dataset", default="label",
                        help="HDF5 dataset holding the labels for --labels (default: label)")
    parser.add_argument("--num-classes", type=int, metavar="L",
                        help="number of classes for --labels (default: the base matrix's L, "
                             "else the largest label + 1)")
    parser.add_argument("--ignore-label", type=float, metavar="V",
                        help="label value to leave out of the counts (e.g. 255)")
    parser.add_argument("--weighting", choices=hmatrix.WEIGHTINGS, default=None,
                        help="class weights from the counts: inverse (1/n, the default), "
                             "sqrt-inverse (1/sqrt(n)), or effective-number ((1-beta)/(1-beta^n), "
                             "Cui et al. 2019)")
    parser.add_argument("--beta", type=float, default=0.999,
                        help="beta of --weighting effective-number, in [0, 1) (default 0.999)")


def _fail(message):
    message = message[len("make-h: "):] if message.startswith("make-h: ") else message
    print(f"make-h: error: {message}", file=sys.stderr)
    return 2


def show(path):
    """Prints what an H file holds; returns 0 when it is a valid H, else 1."""
    blob = hmatrix.load_blob(path, owner="make-h", key="--show")
    print(f"{path}: blob of shape {tuple(blob.shape)}")
    try:
        M = hmatrix.check_h(blob, owner="make-h", name=f"'{path}'")
    except ValueError as err:
        print(f"NOT a valid H: {err}")
        return 1
    print(hmatrix.describe_h(M))
    print("valid: L x L, finite, non-negative")
    note = hmatrix.zero_row_note(M, name="H")
    if note:
        print(f"note: {note}")
    return 0


def build(args):
    """The H that ``args`` asks for, and a one-line account of how it was made."""
    base, how = None, []
    if args.identity is not None:
        base = hmatrix.identity_h(args.identity)
        how.append(f"identity({args.identity})")
    elif args.matrix:
        base = hmatrix.read_matrix(args.matrix)
        how.append(f"matrix {args.matrix}")
    elif args.distances:
        if not (math.isfinite(args.temperature) and args.temperature > 0):
            raise ValueError(f"--temperature must be a finite number > 0. Received: {args.temperature:g}")
        D = hmatrix.read_matrix(args.distances)
        base = hmatrix.similarity_from_distances(D, temperature=args.temperature)
        how.append(f"exp(-D / {args.temperature:g}) of {args.distances}")
    counts = None
    if args.counts is not None:
        counts = np.asarray(args.counts, dtype=np.float64)
    elif args.labels:
        L = args.num_classes if args.num_classes is not None else (
            base.shape[0] if base is not None else None)
        if L is not None:
            hmatrix.check_classes(L, owner="make-h")
        labels = hmatrix.read_labels(args.labels, dataset=args.dataset)
        try:
            counts = hmatrix.class_counts(labels, L, ignore_label=args.ignore_label)
        except ValueError as err:
            raise ValueError(f"{args.labels}: {err}") from None
        how.append(f"class counts of {args.labels}: {counts.tolist()}")
    elif args.weighting is not None:
        raise ValueError("--weighting needs class frequencies: give --counts or --labels")
    if base is None and counts is None:
        raise ValueError("nothing to make: give --identity, --matrix, --distances, --counts or "
                         "--labels (or --show FILE)")
    if counts is None:
        return base, ", ".join(how)
    weighting = args.weighting or "inverse"
    if base is None:
        hmatrix.check_classes(counts.size, owner="make-h")
    w = hmatrix.class_weights(counts, weighting=weighting, beta=args.beta)
    extra = f", beta {args.beta:g}" if weighting == "effective-number" else ""
    how.append(f"{weighting} class weights{extra} (mean over samples 1)")
    if base is None:
        return hmatrix.weights_h(w), ", ".join(how)
    if base.shape[0] != w.size:
        raise ValueError(f"the base matrix is {base.shape[0]} x {base.shape[0]} but there are "
                         f"{w.size} class counts")
    return w[:, None] * base, ", ".join(how) + ", scaling the rows"


def write(path, H, inputs=()):
    """Validates H as the float32 that is written, and writes it: .npy (L x L) or .binaryproto.

    Never over one of ``inputs`` (``{option: path}``), never a folder; atomically.
    Returns the matrix written (float32 values, as float64) and a description.
    """
    if path.lower().endswith(".npy"):
        M = hmatrix.check_h(H, owner="make-h", refuse_underflow=True).astype(np.float32)
        with output_file(path, inputs, option="-o/--output", tool="make-h") as tmp:
            np.save(tmp, M)
        return M.astype(np.float64), f"{M.shape[0]} x {M.shape[0]} float32 .npy"
    M = hmatrix.save_h(path, H, inputs=inputs, owner="make-h")
    L = M.shape[0]
    return M, f"1 x 1 x {L} x {L} BlobProto"


def _inputs(args):
    return {option: path for option, path in (("--labels", args.labels), ("--matrix", args.matrix),
                                             ("--distances", args.distances)) if path}


def run(args):
    try:
        if args.show:
            return show(args.show)
        if not args.output:
            return _fail("give -o/--output PATH (or --show FILE)")
        check_output(args.output, _inputs(args), option="-o/--output", tool="make-h")
        if args.identity is not None:
            hmatrix.check_classes(args.identity, owner="make-h")
        H, how = build(args)
        M, kind = write(args.output, H, _inputs(args))
    except (ValueError, OSError) as err:
        return _fail(str(err))
    except MemoryError:
        return _fail("out of memory while making H: use fewer classes")
    print(f"wrote {args.output}: {kind}; H from {how}")
    print(hmatrix.describe_h(M))
    note = hmatrix.zero_row_note(M, name="H")
    if note:
        print(f"note: {note}")
    return 0
