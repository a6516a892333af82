"""The handwritten digits, embedded in the package (no download, no scikit-learn).

1,797 images of 8 x 8 pixels, 10 classes: the test set of the UCI "Optical
Recognition of Handwritten Digits" data (E. Alpaydin, C. Kaynak, 1998;
CC BY 4.0).  ``digits.csv.gz`` beside this module is the copy that
scikit-learn ships as ``sklearn/datasets/data/digits.csv.gz`` (byte for byte,
sha256 09f66e6d...aa22): 64 pixel counts in 0..16, then the label, per line.
It is read as scikit-learn's ``load_digits`` reads it, so the arrays (and
every result made from them) are the same.  A fixed, stratified split:
1,297 train / 500 test.
"""

import gzip
from importlib import resources

import numpy as np

__all__ = ["load_digits"]

_CACHE = {}


def load_digits(split="train", seed=0):
    """Returns ``(images, labels)``: (N, 1, 8, 8) float32 in [0, 1], (N,) float32.

    Args:
      split: "train" (1,297 images) or "test" (500 images).
      seed: seed of the fixed stratified split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_digits: split must be 'train' or 'test'. Received: split={split!r}")
    key = seed
    if key not in _CACHE:
        with resources.files(__package__).joinpath("digits.csv.gz").open("rb") as raw, \
                gzip.open(raw, "rt") as f:
            table = np.loadtxt(f, delimiter=",")
        x = (table[:, :-1].reshape(-1, 8, 8).astype(np.float32) / 16.0)[:, None, :, :]
        y = table[:, -1].astype(np.int64)
        rng = np.random.RandomState(seed)
        test = np.zeros(len(y), bool)
        for c in range(10):   # 50 test images per class
            idx = np.flatnonzero(y == c)
            test[rng.choice(idx, 50, replace=False)] = True
        order = rng.permutation(len(y))
        x, y, test = x[order], y[order], test[order]
        _CACHE[key] = {"train": (x[~test], y[~test].astype(np.float32)),
                       "test": (x[test], y[test].astype(np.float32))}
    images, labels = _CACHE[key][split]
    return images.copy(), labels.copy()
