"""Center loss (Wen et al., ECCV 2016): pull each feature towards its class center.

Pure NumPy, no caffe import.  Three functions:

* :func:`center_loss_forward` -> ``(loss, cache)``,
* :func:`center_loss_backward` -> the gradient with respect to the features,
* :func:`center_update` -> the paper's center step ``delta_c`` (not a gradient).

Everything works in the dtype it is given: float64 for the exact checks,
float32 inside a Caffe net; the loss is summed by ``common.loss_sum`` (float64).
"""

from dataclasses import dataclass

import numpy as np

from caffe_losses.losses import common

__all__ = ["center_loss_forward", "center_loss_backward", "center_update", "apply_center_update"]


@dataclass
class CenterCache:
    """What the backward and the center update need.

    Attributes:
      diff: (N, D) ``x_i - c_{y_i}``, with the centers of the forward.
      labels: (N,) int labels.
      num_classes: C, the rows of the centers.
      norm: the normalizer.
      shape: the features' shape.
    """

    diff: np.ndarray
    labels: np.ndarray
    num_classes: int
    norm: float
    shape: tuple


def center_loss_forward(x, labels, centers, *, normalization="BATCH_SIZE", owner="center_loss"):
    """Center loss ``L = (1/2) sum_i ||x_i - c_{y_i}||^2 / norm``.

    Formula, for N features ``x_i`` in R^D with labels ``y_i`` in [0, C) and
    centers ``c_j`` (the rows of ``centers``)::

        d_i = x_i - c_{y_i}
        L   = sum_i (1/2) ||d_i||^2 / norm

    ``norm`` is Caffe's normalizer with one position per sample: N for FULL,
    VALID and BATCH_SIZE (no label is ignored), 1 for NONE.

    Args:
      x: features, (N, D) or (N, D, 1, 1) (dims after the first are flattened).
      labels: N integer class indices (any shape with N values; float is fine
        if the values are integers).
      centers: (C, D) class centers; C is the number of classes.
      normalization: "FULL", "VALID", "BATCH_SIZE" (default) or "NONE".
      owner: the name that error messages start with.

    Returns:
      (loss, cache): the loss as a Python float and a :class:`CenterCache`.

    Raises:
      ValueError on labels outside [0, C) or not integers (naming the index in
      the labels' own shape), a label count different from N, or centers whose
      shape does not match.

    Shape:
      x: (N, D) or (N, D, 1, 1); labels: (N,) or (N, 1, 1, 1); centers: (C, D);
      loss: scalar.

    Reference:
      Y. Wen, K. Zhang, Z. Li, Y. Qiao, "A Discriminative Feature Learning
      Approach for Deep Face Recognition", ECCV 2016, eq. (2).
    """
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"{owner}: features must have a sample axis. Received shape {x.shape}")
    features = x.reshape(x.shape[0], -1)
    centers = np.asarray(centers)
    if centers.ndim != 2 or centers.shape[1] != features.shape[1]:
        raise ValueError(f"{owner}: centers must be (num_classes, D) with D={features.shape[1]} (the "
                         f"feature size). Received centers of shape {centers.shape}")
    labels = np.asarray(labels)
    common.check_label_count(owner, features.shape[0], labels.shape, "features", x.shape)
    y, _ = common.check_labels(owner, labels, centers.shape[0])
    y = y.reshape(-1)
    diff = features - centers[y]                          # (N, D): x_i - c_{y_i}
    norm = common.normalizer(normalization, features.shape[0], 1)
    with np.errstate(over="ignore"):                      # beyond float32: the caller reports it
        loss = 0.5 * common.loss_sum(diff * diff) / norm
    return loss, CenterCache(diff, y, centers.shape[0], norm, x.shape)


def center_loss_backward(cache, *, scale=1.0, out=None):
    """Gradient of :func:`center_loss_forward` with respect to the features, times ``scale``.

    Derivation: ``L = sum_i (1/2) ||x_i - c_{y_i}||^2 / norm`` depends on
    ``x_i`` only through its own term, whose gradient is
    ``(x_i - c_{y_i}) / norm``.  The centers are held fixed (they are not
    learned by this gradient but by :func:`center_update`).  A layer passes
    the loss weight (the paper's lambda) as ``scale`` and the bottom's diff as
    ``out`` (a C-contiguous array of the features' count).

    Returns:
      the gradient shaped like the features, or ``out`` itself when given.
    """
    g = common.out_view(out, cache.diff.shape, cache.diff.dtype)
    np.multiply(cache.diff, scale / cache.norm, out=g)
    return g.reshape(cache.shape) if out is None else out


def center_update(cache, out=None, *, scale=1.0):
    """The paper's per-class center step ``delta_c`` for one mini-batch.

    Formula (Wen et al. 2016, eq. (4))::

        delta_c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)
                  = -(sum_{i: y_i = j} d_i) / (1 + n_j)

    with ``n_j`` the number of samples of class j in the batch and
    ``d_i = x_i - c_{y_i}`` computed with the centers *before* the update.
    Classes absent from the batch get ``delta_c_j = 0``.  The ``1 +`` keeps the
    step below the full distance to the batch mean, so with ``alpha`` in
    (0, 1] the new center lies between the old one and the batch mean of its
    class.  This is not the gradient of the loss (that would be
    ``-sum_{i: y_i = j} d_i / norm``); it is a damped moving average.

    Args:
      cache: from :func:`center_loss_forward`.
      out: optional (C, D) buffer for the result.
      scale: a factor folded into the result (a layer passes ``alpha``).

    Returns:
      (C, D) array ``scale * delta_c`` in the features' dtype; the caller
      applies ``c <- c - alpha * delta_c`` (see :func:`apply_center_update`).
    """
    diff, y = cache.diff, cache.labels
    sums = np.zeros((cache.num_classes, diff.shape[1]), diff.dtype)
    np.add.at(sums, y, diff)                              # sum_{i: y_i = j} d_i
    counts = np.bincount(y, minlength=cache.num_classes)  # n_j
    factor = (-scale / (1.0 + counts)).astype(diff.dtype)
    return np.multiply(sums, factor[:, None], out=out)


def apply_center_update(centers, delta, alpha):
    """``centers <- centers - alpha * delta``, in place; returns ``centers``."""
    centers -= centers.dtype.type(alpha) * delta
    return centers
