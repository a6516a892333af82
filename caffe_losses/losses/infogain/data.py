"""Data for the infogain templates: imbalanced digits, and a toy segmentation set.

* :func:`imbalanced_digits`: the embedded 8 x 8 digits with a few *minority*
  classes cut down to a handful of training images; the test split stays
  balanced (50 per class), so per-class recall shows what the imbalance does.
* ``prepare_*``: the ``prepare`` functions of the templates (see
  :mod:`caffe_losses.nets.templates`). Each writes ``data/{train,test}.{h5,txt}``
  for Caffe's ``HDF5Data`` layer and the H file the template's net reads.

Training rows are written in a fixed shuffled order and read with
``shuffle: false``: Caffe's HDF5 shuffle uses ``std::random_shuffle``, which
the solver's ``random_seed`` does not seed.
"""

import os

import numpy as np

from caffe_losses.files import hmatrix
from caffe_losses.data import write_splits
from caffe_losses.data.digits import load_digits
from caffe_losses.data.shapes import shapes

__all__ = ["MINORITY", "MINORITY_KEEP", "imbalanced_digits", "digit_distances",
           "segmentation_data", "prepare_source", "prepare_constant", "prepare_segmentation",
           "IGNORE_LABEL"]

MINORITY = (3, 5, 8)     # the classes cut down in the training split
MINORITY_KEEP = 8        # training images kept per minority class (of about 130)
IGNORE_LABEL = 255       # the border pixels of the segmentation set


def imbalanced_digits(*, seed=0, minority=MINORITY, keep=MINORITY_KEEP):
    """The digits with ``keep`` training images per minority class.

    Args:
      seed: seed of the digits split, of the images kept and of the order.
      minority: the classes to cut down.
      keep: training images kept per minority class.

    Returns:
      dict with ``x_train`` (N, 1, 8, 8), ``y_train`` (N,), ``x_test``
      (500, 1, 8, 8), ``y_test`` (500,) (float32; 50 test images per class),
      and ``counts`` (10,) the training images per class.
    """
    x, y = load_digits("train", seed=seed)
    x_test, y_test = load_digits("test", seed=seed)
    rng = np.random.RandomState(seed + 11)
    keep_mask = np.ones(len(y), bool)
    for c in minority:
        idx = np.flatnonzero(y == c)
        keep_mask[idx] = False
        keep_mask[rng.choice(idx, min(keep, len(idx)), replace=False)] = True
    x, y = x[keep_mask], y[keep_mask]
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    counts = np.bincount(y.astype(np.int64), minlength=10)
    return {"x_train": x, "y_train": y, "x_test": x_test, "y_test": y_test, "counts": counts}


def digit_distances(x, y, num_classes=10):
    """A label distance matrix from the data: distances between class-mean images.

    ``D[k, l] = ||mean_k - mean_l|| / median`` over k != l (so a typical pair
    is at distance 1 and ``D[k, k] = 0``): classes whose images look alike
    (3 and 8, 5 and 9, ...) are close.
    """
    flat = x.reshape(len(x), -1).astype(np.float64)
    means = np.stack([flat[y == c].mean(axis=0) for c in range(num_classes)])
    D = np.sqrt(((means[:, None, :] - means[None, :, :]) ** 2).sum(-1))
    off = D[~np.eye(num_classes, dtype=bool)]
    D /= np.median(off)
    np.fill_diagonal(D, 0.0)
    return D


def _write_digits(folder, data, small):
    x, y, xt, yt = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    if small:   # a few batches' worth, every class present
        x, y, xt, yt = x[:200], y[:200], xt[:100], yt[:100]
    return write_splits(folder, {"data": x, "label": y}, {"data": xt, "label": yt})


def prepare_source(folder, *, small=False, seed=0, weighting="inverse"):
    """Template ``infogain_digits_source``: imbalanced digits + ``H.binaryproto``.

    H is diagonal: inverse-frequency class weights of the training split
    (``hmatrix.class_weights``, mean weight over samples 1), the same as
    ``caffe-losses make-h --labels data/train.h5 --weighting inverse``.

    Returns:
      dict with the list files, the row counts, ``counts`` and ``H``.
    """
    data = imbalanced_digits(seed=seed)
    out = _write_digits(folder, data, small)
    H = hmatrix.weights_h(hmatrix.class_weights(data["counts"], weighting=weighting))
    hmatrix.save_h(os.path.join(folder, "H.binaryproto"), H)
    out.update(counts=data["counts"], H=H)
    return out


def prepare_constant(folder, *, small=False, seed=0, temperature=0.25):
    """Template ``infogain_digits_constant``: imbalanced digits + ``H.npy``.

    H combines both uses of the matrix: row k is the inverse-frequency weight
    of class k times the similarity ``exp(-D[k, l] / T)`` of
    :func:`digit_distances` (``caffe-losses make-h --distances D.csv
    --temperature 0.25 --labels ...``). ``D.csv`` is written too.
    """
    data = imbalanced_digits(seed=seed)
    out = _write_digits(folder, data, small)
    D = digit_distances(data["x_train"], data["y_train"])
    np.savetxt(os.path.join(folder, "D.csv"), D, delimiter=",", fmt="%.6f")
    S = hmatrix.similarity_from_distances(D, temperature=temperature)
    w = hmatrix.class_weights(data["counts"], weighting="inverse")
    H = hmatrix.check_h(w[:, None] * S, refuse_underflow=True)
    np.save(os.path.join(folder, "H.npy"), H.astype(np.float32))
    out.update(counts=data["counts"], H=H, D=D)
    return out


def segmentation_data(n, *, size=16, seed=0):
    """Toy per-pixel data: 3 classes (rectangles, dots, the rest), the dots rare, borders ``IGNORE_LABEL`` (:func:`caffe_losses.data.shapes.shapes`)."""
    return shapes(n, size=size, seed=seed, bars=False, ignore_label=IGNORE_LABEL)


def prepare_segmentation(folder, *, small=False, seed=0):
    """Template ``infogain_segmentation``: toy per-pixel data + ``H.binaryproto``.

    H is diagonal, inverse pixel frequency over the non-ignored training
    pixels (``caffe-losses make-h --labels data/train.h5 --ignore-label 255``).
    """
    n_train, n_test = (32, 16) if small else (512, 128)
    x, y = segmentation_data(n_train, seed=seed)
    xt, yt = segmentation_data(n_test, seed=seed + 1)
    out = write_splits(folder, {"data": x, "label": y}, {"data": xt, "label": yt})
    counts = hmatrix.class_counts(y, 3, ignore_label=IGNORE_LABEL)
    H = hmatrix.weights_h(hmatrix.class_weights(counts, weighting="inverse"))
    hmatrix.save_h(os.path.join(folder, "H.binaryproto"), H)
    out.update(counts=counts, H=H)
    return out
