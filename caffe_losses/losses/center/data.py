"""Data for the center-loss template: the embedded 8 x 8 digits as HDF5.

``prepare_center_loss(folder)`` writes ``folder/data/train.h5`` (1,297 images)
and ``folder/data/test.h5`` (500 images, 50 per class), each with the list
file that the template's ``HDF5Data`` layers read (``data/train.txt``,
``data/test.txt``).  Datasets ``data`` (N, 1, 8, 8) in [0, 1] and ``label``
(N,) in 0..9.

The training rows are written in a fixed shuffled order (seeded), so the
template can read them with ``shuffle: false``: Caffe's HDF5 shuffle uses
``std::random_shuffle``, which the solver's ``random_seed`` does not seed, and
the order would depend on whatever ran before in the same process.
"""

import numpy as np

from caffe_losses.data import write_splits
from caffe_losses.data.digits import load_digits

__all__ = ["prepare_center_loss", "SMALL_TRAIN", "SMALL_TEST"]

SMALL_TRAIN = 256   # rows written with small=True (tests)
SMALL_TEST = 100


def prepare_center_loss(folder, *, small=False, seed=0):
    """Writes ``folder/data/{train,test}.{h5,txt}`` for ``HDF5Data``.

    Args:
      folder: the template folder (a copy of ``prototxt_templates/center_loss_lenetpp``).
      small: write only the first 256 training and 100 test rows (test runs).
      seed: seed of the digits split and of the training order.

    Returns:
      dict with the list-file paths ``train`` and ``test`` and the row counts
      ``n_train`` and ``n_test``.
    """
    x_train, y_train = load_digits("train", seed=seed)
    x_test, y_test = load_digits("test", seed=seed)
    order = np.random.RandomState(seed + 1).permutation(len(y_train))
    x_train, y_train = x_train[order], y_train[order]
    if small:
        x_train, y_train = x_train[:SMALL_TRAIN], y_train[:SMALL_TRAIN]
        x_test, y_test = x_test[:SMALL_TEST], y_test[:SMALL_TEST]
    return write_splits(folder, {"data": x_train, "label": y_train}, {"data": x_test, "label": y_test})
