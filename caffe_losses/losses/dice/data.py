"""Data of the Dice template: toy segmentation with two small classes.

* :func:`segmentation_data`: 16 x 16 images, 4 classes: background, one large
  rectangle, and two small classes (2 x 2 dots, 1 x 4 bars) of a few
  percent of the pixels each; the one-pixel border is ignored.
* :func:`prepare_segmentation`: the ``prepare`` function of the template
  ``dice_segmentation`` (``data/{train,test}.{h5,txt}`` for ``HDF5Data``).

The idea is the infogain segmentation template's (objects told apart by their
size and shape only, so the net needs spatial context), with a second small
class: the Dice template's purpose is the mean Dice of the small classes.
Training rows are written in a fixed order and read with ``shuffle: false``
(Caffe's HDF5 shuffle is not seeded by the solver).
"""

import numpy as np

from caffe_losses.data import write_splits

__all__ = ["segmentation_data", "prepare_segmentation", "IGNORE_LABEL", "NUM_CLASSES", "SMALL_CLASSES",
           "CLASS_NAMES"]

IGNORE_LABEL = 255           # the border pixels
NUM_CLASSES = 4
SMALL_CLASSES = (2, 3)       # dots and bars: the purpose metric's classes
CLASS_NAMES = ("background", "rectangle", "dot", "bar")


def segmentation_data(n, *, size=16, seed=0):
    """Toy per-pixel data: 4 classes, two of them small, borders ignored.

    Class 1 is one large rectangle per image (5 to 8 pixels a side, about a
    fifth of the pixels), class 2 two or three 2 x 2 dots, class 3 one or two
    1 x 4 bars (horizontal or vertical), class 0 the rest (drawn in that order:
    a later object covers an earlier one).  The image is 1 on every object, 0
    elsewhere, plus Gaussian noise: only size and shape tell the classes
    apart.  The one-pixel border is labelled ``IGNORE_LABEL``.

    Returns:
      (images (n, 1, size, size) float32, labels (n, 1, size, size) float32).
    """
    rng = np.random.RandomState(seed)
    labels = np.zeros((n, size, size), np.float32)
    for i in range(n):   # data generation only, once per prepare
        h, w = rng.randint(5, 9, size=2)
        r, c = rng.randint(1, size - h), rng.randint(1, size - w)
        labels[i, r:r + h, c:c + w] = 1
        for _ in range(rng.randint(2, 4)):
            r, c = rng.randint(1, size - 3, size=2)
            labels[i, r:r + 2, c:c + 2] = 2
        for _ in range(rng.randint(1, 3)):
            h, w = (1, 4) if rng.rand() < 0.5 else (4, 1)
            r, c = rng.randint(1, size - h), rng.randint(1, size - w)
            labels[i, r:r + h, c:c + w] = 3
    images = (labels > 0).astype(np.float32) + 0.35 * rng.randn(n, size, size).astype(np.float32)
    labels[:, 0, :] = labels[:, -1, :] = labels[:, :, 0] = labels[:, :, -1] = IGNORE_LABEL
    return images[:, None], labels[:, None]


def prepare_segmentation(folder, *, small=False, seed=0):
    """Template ``dice_segmentation``: writes the toy data; returns the list files and row counts.

    Also returns ``counts``: the training pixels per class (the ignored border left out).
    """
    n_train, n_test = (32, 16) if small else (512, 128)
    x, y = segmentation_data(n_train, seed=seed)
    xt, yt = segmentation_data(n_test, seed=seed + 1)
    out = write_splits(folder, {"data": x, "label": y}, {"data": xt, "label": yt})
    kept = y[y != IGNORE_LABEL].astype(np.int64)
    out.update(counts=np.bincount(kept, minlength=NUM_CLASSES))
    return out
