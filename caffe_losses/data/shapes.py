"""Toy per-pixel segmentation data: rectangles, dots and bars on a noisy image.

Shared by the templates that train a per-pixel loss (the infogain and Dice
families'): one generator, drawn from a fixed seed, so both are the same
kind of task.
"""

import numpy as np

__all__ = ["shapes"]


def shapes(n, *, size=16, seed=0, bars=False, ignore_label=255):
    """``n`` images of one rectangle (class 1), 2 x 2 dots (class 2) and, with ``bars``, 1 x 4 bars (class 3).

    Class 1 is one large rectangle per image (5 to 8 pixels a side, about a
    fifth of the pixels), class 2 two or three 2 x 2 dots, class 3 one or
    two 1 x 4 bars (horizontal or vertical), class 0 the rest (drawn in that
    order: a later object covers an earlier one).  The image is 1 on every
    object, 0 elsewhere, plus Gaussian noise (sd 0.35): only size and shape
    tell the classes apart.  The one-pixel border is labelled
    ``ignore_label``.

    Returns:
      (images (n, 1, size, size) float32, labels (n, 1, size, size) float32).
    """
    rng = np.random.RandomState(seed)
    labels = np.zeros((n, size, size), np.float32)
    for i in range(n):
        h, w = rng.randint(5, 9, size=2)
        r, c = rng.randint(1, size - h), rng.randint(1, size - w)
        labels[i, r:r + h, c:c + w] = 1
        for _ in range(rng.randint(2, 4)):
            r, c = rng.randint(1, size - 3, size=2)
            labels[i, r:r + 2, c:c + 2] = 2
        for _ in range(rng.randint(1, 3) if bars else 0):
            h, w = (1, 4) if rng.rand() < 0.5 else (4, 1)
            r, c = rng.randint(1, size - h), rng.randint(1, size - w)
            labels[i, r:r + h, c:c + w] = 3
    images = (labels > 0).astype(np.float32) + 0.35 * rng.randn(n, size, size).astype(np.float32)
    labels[:, 0, :] = labels[:, -1, :] = labels[:, :, 0] = labels[:, :, -1] = ignore_label
    return images[:, None], labels[:, None]
