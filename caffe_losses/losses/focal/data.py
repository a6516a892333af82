"""A dense, heavily imbalanced task from the embedded digits: find the rare digit on a grid.

Each image is a ``GRID x GRID`` grid of 8 x 8 tiles (48 x 48 pixels), as a
one-stage detector sees its anchors: most tiles are blank (noise only, the
easy negatives), some hold another digit (the hard negatives), and about
``RARE_FRACTION`` (3%) hold the rare digit ``RARE_DIGIT``, the positives.
The target is one value per tile, ``N x 1 x GRID x GRID`` in {0, 1}: the
per-anchor classification of RetinaNet, in miniature.  Train tiles come
from the digits' train split, test tiles from its test split (no image is
in both).

``prepare_dense`` writes the data of both templates, ``focal_digits_sigmoid``
(the target as a sigmoid target) and ``focal_digits_softmax`` (the same
values as a class label, background 0 or the rare digit 1).
"""

import numpy as np

from caffe_losses.data import write_splits
from caffe_losses.data.digits import load_digits

__all__ = ["make_dense", "prepare_dense", "GRID", "RARE_DIGIT", "RARE_FRACTION", "OTHER_FRACTION", "SIZES"]

GRID = 6
RARE_DIGIT = 8
RARE_FRACTION = 0.03
OTHER_FRACTION = 0.25
# (train, test) images, full and small (tests)
SIZES = {False: (768, 256), True: (32, 16)}
SPLIT_SEEDS = {"train": 31, "test": 32}


def make_dense(n, *, split="train", seed=0, grid=GRID, rare=RARE_DIGIT, rare_fraction=RARE_FRACTION,
               other_fraction=OTHER_FRACTION, noise=0.15):
    """Grids of digit tiles with a rare positive digit.

    Each tile is, independently: the rare digit with probability
    ``rare_fraction``, another digit with probability ``other_fraction``,
    else blank; a digit tile is a random image of its class from the
    digits' ``split``; every pixel gets Gaussian noise of std ``noise``.

    Returns:
      (images (n, 1, 8 grid, 8 grid) float32, targets (n, 1, grid, grid)
      float32 in {0, 1}: 1 on the rare digit's tiles).
    """
    images, labels = load_digits(split)
    rng = np.random.RandomState(seed)
    pick = rng.rand(n, grid, grid)
    kind = np.where(pick < rare_fraction, 2, np.where(pick < rare_fraction + other_fraction, 1, 0))
    rare_pool = np.flatnonzero(labels == rare)
    other_pool = np.flatnonzero(labels != rare)
    index = np.where(kind == 2, rng.choice(rare_pool, kind.shape), rng.choice(other_pool, kind.shape))
    tiles = images[index.reshape(-1), 0].reshape(n, grid, grid, 8, 8) * (kind > 0)[..., None, None]
    canvas = tiles.transpose(0, 1, 3, 2, 4).reshape(n, 1, grid * 8, grid * 8)
    canvas = canvas + noise * rng.randn(*canvas.shape)
    return canvas.astype(np.float32), (kind == 2)[:, None].astype(np.float32)


def prepare_dense(folder, small=False):
    """Writes ``data/train.h5``, ``data/test.h5`` (+ list files): ``data`` N x 1 x 48 x 48, ``label`` N x 1 x 6 x 6.

    Returns the list files, sample counts and the positive fraction of each split.
    """
    splits = {}
    for split, n in zip(("train", "test"), SIZES[bool(small)]):
        x, y = make_dense(n, split=split, seed=SPLIT_SEEDS[split])
        splits[split] = {"data": x, "label": y}
    info = write_splits(folder, splits["train"], splits["test"])
    for split, arrays in splits.items():
        info[f"positive_fraction_{split}"] = float(arrays["label"].mean())
    return info
