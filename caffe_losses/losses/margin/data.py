"""Data for the margin template: open-set verification on the embedded 8 x 8 digits.

``prepare_margin(folder)`` writes ``folder/data/train.h5`` with the images of
the training classes 0..6 (the digits' train split) and ``folder/data/test.h5``
with every image of the held-out classes 7, 8 and 9 (both splits of the
digits: classes the net never sees in training), each with the list file the
template's ``HDF5Data`` layers read.  Datasets ``data`` (N, 1, 8, 8) in
[0, 1] and ``label`` (N,): 0..6 in train, 7..9 in test.  The test labels only
say which test pairs are genuine (same digit) for the verification metric;
no layer of the TEST phase reads them as classes.

The training rows are in a fixed shuffled order (seeded), read with
``shuffle: false`` (Caffe's HDF5 shuffle is not seeded by the solver).
"""

import numpy as np

from caffe_losses.data import write_splits
from caffe_losses.data.digits import load_digits

__all__ = ["prepare_margin", "TRAIN_CLASSES", "HELD_OUT", "SMALL_TRAIN", "SMALL_TEST"]

TRAIN_CLASSES = 7            # classes 0..6 train the net
HELD_OUT = (7, 8, 9)         # verified by cosine similarity, never trained on
SMALL_TRAIN = 256            # rows written with small=True (tests)
SMALL_TEST = 120


def prepare_margin(folder, *, small=False, seed=0):
    """Writes ``folder/data/{train,test}.{h5,txt}`` for ``HDF5Data``.

    Returns:
      dict with the list-file paths ``train`` and ``test`` and the row counts
      ``n_train`` and ``n_test``.
    """
    x_train, y_train = load_digits("train", seed=seed)
    x_test, y_test = load_digits("test", seed=seed)
    seen = y_train < TRAIN_CLASSES
    x_open = np.concatenate([x_train[~seen], x_test[y_test >= TRAIN_CLASSES]])
    y_open = np.concatenate([y_train[~seen], y_test[y_test >= TRAIN_CLASSES]])
    x_train, y_train = x_train[seen], y_train[seen]
    order = np.random.RandomState(seed + 1).permutation(len(y_train))
    x_train, y_train = x_train[order], y_train[order]
    mix = np.random.RandomState(seed + 2).permutation(len(y_open))   # every test batch mixes classes
    x_open, y_open = x_open[mix], y_open[mix]
    if small:
        x_train, y_train = x_train[:SMALL_TRAIN], y_train[:SMALL_TRAIN]
        x_open, y_open = x_open[:SMALL_TEST], y_open[:SMALL_TEST]
    return write_splits(folder, {"data": x_train, "label": y_train}, {"data": x_open, "label": y_open})
