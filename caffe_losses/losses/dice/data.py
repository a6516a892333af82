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
from caffe_losses.data.shapes import shapes

__all__ = ["segmentation_data", "prepare_segmentation", "IGNORE_LABEL", "NUM_CLASSES", "SMALL_CLASSES",
           "CLASS_NAMES"]

IGNORE_LABEL = 255           # the border pixels
NUM_CLASSES = 4
SMALL_CLASSES = (2, 3)       # dots and bars: the purpose metric's classes
CLASS_NAMES = ("background", "rectangle", "dot", "bar")


def segmentation_data(n, *, size=16, seed=0):
    """Toy per-pixel data: 4 classes (rectangles, dots, bars, the rest), dots and bars small, borders ``IGNORE_LABEL`` (:func:`caffe_losses.data.shapes.shapes`)."""
    return shapes(n, size=size, seed=seed, bars=True, ignore_label=IGNORE_LABEL)


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
