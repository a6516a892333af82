"""Rare-positive data for the weighted sigmoid cross-entropy: edges and multi-label tags.

Generated from fixed seeds (no download), written for Caffe's ``HDF5Data``.

* :func:`make_edges`: 32 x 32 grey images, each with a disk and a rectangle
  of random, sometimes faint, contrast on a noisy background; the target
  marks the pixels on either side of the shapes' boundaries (about 9.6% of
  the pixels): an edge-detection / binary-segmentation task with
  N x 1 x H x W targets.
* :func:`make_multilabel`: feature vectors that are the sum of the prototypes
  of the sample's tags plus noise; 8 tags with prevalences from 2% to 16%:
  N x C targets.

``prepare_edges`` and ``prepare_multilabel`` write the data of the templates
``sigmoid_edges`` and ``sigmoid_multilabel`` (see :mod:`caffe_losses.nets.templates`).
"""

import numpy as np

from caffe_losses.data import write_splits

__all__ = ["make_edges", "make_multilabel", "prepare_edges", "prepare_multilabel",
           "EDGE_SIZE", "NUM_TAGS", "TAG_PREVALENCE", "FEATURE_DIM", "SIZES"]

EDGE_SIZE = 32
NUM_TAGS = 8
TAG_PREVALENCE = np.linspace(0.02, 0.16, NUM_TAGS)
FEATURE_DIM = 24
_PROTOTYPE_SEED = 4242          # the tag prototypes: the same for every split

# (train, test) sample counts, full and small (tests)
SIZES = {"edges": {False: (1024, 256), True: (64, 32)},
         "multilabel": {False: (4096, 2048), True: (256, 128)}}
SPLIT_SEEDS = {"train": 11, "test": 12}


def make_edges(n, *, size=EDGE_SIZE, seed=0, noise=0.2):
    """Noisy shapes and their boundaries.

    Each image: a background level, a disk (radius 3 to 7) and an
    axis-aligned rectangle drawn over it, each region a level that differs
    from what is under it by a random contrast in [0.15, 0.6] (some edges are
    faint), plus Gaussian noise of std ``noise``.  The target is 1 on the
    pixels that have a 4-neighbour in another region (both sides of every
    boundary, two pixels thick), 0 elsewhere.

    Returns:
      (images, edges): float32 arrays (n, 1, size, size); images roughly in
      [-0.5, 1.5], edges in {0, 1}.
    """
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    # disk: centre and radius per image, broadcast over the pixel grid
    cy, cx = rng.uniform(5, size - 5, (2, n, 1, 1))
    r = rng.uniform(3, 7, (n, 1, 1))
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
    # rectangle: corner and size per image
    h, w = rng.randint(4, 10, (2, n, 1, 1))
    y0 = rng.randint(0, size - 10, (n, 1, 1))
    x0 = rng.randint(0, size - 10, (n, 1, 1))
    rect = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
    region = np.where(rect, 2, np.where(disk, 1, 0))
    # levels: each region differs from the one below it by +-[0.15, 0.6]
    base = rng.uniform(0.2, 0.8, (n, 1, 1))
    step = rng.uniform(0.15, 0.6, (2, n, 1, 1)) * rng.choice([-1.0, 1.0], (2, n, 1, 1))
    levels = np.stack([base, base + step[0], base + step[0] + step[1]])   # (3, n, 1, 1)
    image = np.take_along_axis(levels[:, :, 0, 0].T, region.reshape(n, -1), axis=1).reshape(n, size, size)
    image = image + noise * rng.randn(n, size, size)
    # boundary: a pixel with a 4-neighbour in another region (both sides)
    pad = np.pad(region, ((0, 0), (1, 1), (1, 1)), mode="edge")
    neighbours = (pad[:, :-2, 1:-1], pad[:, 2:, 1:-1], pad[:, 1:-1, :-2], pad[:, 1:-1, 2:])
    edges = np.logical_or.reduce([region != nb for nb in neighbours])
    return (image[:, None].astype(np.float32), edges[:, None].astype(np.float32))


def _prototypes(dim=FEATURE_DIM, num_tags=NUM_TAGS):
    rng = np.random.RandomState(_PROTOTYPE_SEED)
    proto = rng.randn(num_tags, dim)
    return proto / np.linalg.norm(proto, axis=1, keepdims=True)


def make_multilabel(n, *, seed=0, noise=1.0, amplitude=1.6):
    """Features that mix the prototypes of the sample's tags, plus noise.

    Tag ``c`` is on with probability ``TAG_PREVALENCE[c]`` (2% to 16%),
    independently; ``features = amplitude * sum_c y_c proto_c + noise * z``
    with unit prototypes (fixed for all splits) and ``z`` standard normal.

    Returns:
      (features, tags): float32 arrays (n, FEATURE_DIM) and (n, NUM_TAGS) in {0, 1}.
    """
    rng = np.random.RandomState(seed)
    tags = (rng.rand(n, NUM_TAGS) < TAG_PREVALENCE).astype(np.float64)
    features = amplitude * tags @ _prototypes() + noise * rng.randn(n, FEATURE_DIM)
    return features.astype(np.float32), tags.astype(np.float32)


def _write(folder, make, sizes):
    splits = {}
    for split, n in zip(("train", "test"), sizes):
        x, y = make(n, seed=SPLIT_SEEDS[split])
        splits[split] = {"data": x, "label": y}
    info = write_splits(folder, splits["train"], splits["test"])
    for split, arrays in splits.items():
        info[f"positive_fraction_{split}"] = float(arrays["label"].mean())
    return info


def prepare_edges(folder, small=False):
    """Writes ``data/train.h5``, ``data/test.h5`` (+ list files) of ``sigmoid_edges``.

    Datasets ``data`` (N x 1 x 32 x 32 images) and ``label`` (N x 1 x 32 x 32
    edge maps in {0, 1}).  Returns the list files, sample counts and positive fractions.
    """
    return _write(folder, make_edges, SIZES["edges"][bool(small)])


def prepare_multilabel(folder, small=False):
    """Writes ``data/train.h5``, ``data/test.h5`` (+ list files) of ``sigmoid_multilabel``.

    Datasets ``data`` (N x 24 features) and ``label`` (N x 8 tags in {0, 1}).
    Returns the list files, sample counts and positive fractions.
    """
    return _write(folder, make_multilabel, SIZES["multilabel"][bool(small)])
