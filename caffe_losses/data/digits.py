"""The handwritten digits that ship inside scikit-learn (no download).

1,797 images of 8 x 8 pixels, 10 classes (UCI optdigits test set).  A fixed,
stratified split: 1,297 train / 500 test.
"""

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
        try:
            from sklearn.datasets import load_digits as sk_load
        except ImportError as err:  # pragma: no cover
            raise ImportError("the digits data needs scikit-learn: pip install 'caffe-losses[demo]'") from err
        data = sk_load()
        x = (data.images.astype(np.float32) / 16.0)[:, None, :, :]
        y = data.target.astype(np.int64)
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
