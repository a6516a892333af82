"""Center loss (Wen et al., ECCV 2016): pull each feature towards its class center.

Pure NumPy, no caffe import.  Three functions:

* :func:`center_loss_forward` -> ``(loss, cache)``,
* :func:`center_loss_backward` -> the gradient with respect to the features,
* :func:`center_update` -> the paper's center step ``delta_c`` (not a gradient).

Everything works in the dtype it is given: float64 for the exact checks,
float32 inside a Caffe net.
"""

import functools

import numpy as np

from caffe_losses.core.common import normalizer
from caffe_losses.core.common import check_labels

__all__ = ["center_loss_forward", "center_loss_forward_checked", "center_loss_backward",
           "center_update", "apply_center_update"]

_OWNER = "center_loss"
# The float64 sum of squares copies the differences to float64 up to this
# size (exact products, one BLAS dot: cheapest at small sizes); above it,
# per-row dots in the input dtype are summed in float64.
_DOT64_MAX = 1 << 16
# The center update sums each class's rows with a one-hot (C x N) matrix
# product while C * N is at most this (a handful of NumPy calls: the fixed
# cost wins at small sizes), else with a sort and np.add.reduceat.
_ONEHOT_MAX = 1 << 14


def _as_features(x):
    """(N, D, 1, 1) or (N, D, ...) -> (N, D) view: dims after the first are flattened."""
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"{_OWNER}: features must have a sample axis. Received shape {x.shape}")
    return x.reshape(x.shape[0], -1)


def _check_shapes(x, centers):
    if centers.ndim != 2 or centers.shape[1] != x.shape[1]:
        raise ValueError(f"{_OWNER}: centers must be (num_classes, D) with D={x.shape[1]} (the "
                         f"feature size). Received centers of shape {centers.shape}")


def center_loss_forward(x, labels, centers, *, normalization="BATCH_SIZE", out=None):
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
      out: optional (N, D) buffer for ``x - c_y`` (a layer allocates it in
        ``reshape`` and reuses it every iteration); kept in the cache.

    Returns:
      (loss, cache): the loss as a Python float (accumulated in float64 so a
      float32 net sees no round-off from a long sum), and what
      :func:`center_loss_backward` and :func:`center_update` need.

    Raises:
      ValueError on labels outside [0, C) or not integers, a label count
      different from N, or centers whose shape does not match.

    Shape:
      x: (N, D) or (N, D, 1, 1); labels: (N,) or (N, 1, 1, 1); centers: (C, D);
      loss: scalar.

    Reference:
      Y. Wen, K. Zhang, Z. Li, Y. Qiao, "A Discriminative Feature Learning
      Approach for Deep Face Recognition", ECCV 2016, eq. (2).
    """
    x2 = _as_features(x)
    centers = np.asarray(centers)
    _check_shapes(x2, centers)
    labels = np.asarray(labels)
    if labels.size != x2.shape[0]:
        raise ValueError(f"{_OWNER}: expected one label per feature row ({x2.shape[0]}), "
                         f"got {labels.size} labels of shape {labels.shape}")
    y, _ = check_labels(_OWNER, labels.reshape(-1), centers.shape[0])
    return center_loss_forward_checked(x2, y, centers, normalizer(normalization, x2.shape[0], 1),
                                       out=out, shape=np.shape(x))


def center_loss_forward_checked(x2, y, centers, norm, *, out=None, shape=None):
    """:func:`center_loss_forward` on inputs already checked: no validation.

    For a layer that checks shapes once per reshape and labels itself.

    Args:
      x2: (N, D) features; y: (N,) integer labels in [0, C); centers: (C, D);
      norm: the normalizer (a float >= 1); out: as in
      :func:`center_loss_forward`; shape: the features' own shape, for the
      gradient (default: ``x2``'s).

    Returns:
      (loss, cache), as :func:`center_loss_forward`.
    """
    # (N, D): x_i - c_{y_i}, into the layer's buffer when given
    diff = np.subtract(x2, centers[y], out=out)
    loss = 0.5 * _sum_of_squares(diff) / norm
    cache = {"diff": diff, "labels": y, "norm": norm, "shape": x2.shape if shape is None else shape,
             "num_classes": centers.shape[0]}
    return loss, cache


def _sum_of_squares(diff):
    """``sum(diff ** 2)`` accumulated in float64, as a Python float."""
    flat = diff.reshape(-1)
    if flat.size <= _DOT64_MAX:
        # float32 products are exact in float64; one BLAS dot sums them
        flat = flat.astype(np.float64, copy=False)
        return float(np.dot(flat, flat))
    # per-row dot products in the features' dtype (BLAS-fast), summed in float64
    return float(np.einsum("ij,ij->i", diff, diff).sum(dtype=np.float64))


def center_loss_backward(cache, *, out=None, scale=1.0):
    """Gradient of :func:`center_loss_forward` with respect to the features.

    Derivation: ``L = sum_i (1/2) ||x_i - c_{y_i}||^2 / norm`` depends on
    ``x_i`` only through its own term, whose gradient is
    ``(x_i - c_{y_i}) / norm``.  The centers are held fixed (they are not
    learned by this gradient but by :func:`center_update`).  Unscaled by
    default: the Caffe adapter passes the loss weight (the paper's lambda) as
    ``scale``, and the bottom's diff as ``out``.

    Returns:
      array of the features' shape and dtype.
    """
    diff = cache["diff"]
    factor = diff.dtype.type(scale / cache["norm"])
    if out is None:
        return (diff * factor).reshape(cache["shape"])
    np.multiply(diff, factor, out=out.reshape(diff.shape))
    return out


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

    The per-class sums take no loop over samples or classes: for a small
    batch (C * N up to 16384) one product of the one-hot (C x N) matrix of
    the labels with the differences; otherwise one stable sort of the labels
    and one ``np.add.reduceat`` over the sorted rows (about 20x faster than
    the ``np.add.at`` scatter at N=256, D=1000).

    Args:
      cache: from :func:`center_loss_forward`.
      out: optional (C, D) buffer for the result.
      scale: a factor folded into the result (a layer passes ``alpha``).

    Returns:
      (C, D) array ``scale * delta_c`` in the features' dtype; the caller
      applies ``c <- c - alpha * delta_c`` (see :func:`apply_center_update`).
    """
    diff, y, C = cache["diff"], cache["labels"], cache["num_classes"]
    dtype = diff.dtype
    if out is None:
        out = np.empty((C, diff.shape[1]), dtype=dtype)
    # -scale / (1 + n_j), looked up by the class counts n_j
    factor = _step_factors(y.size, float(scale), dtype)[np.bincount(y, minlength=C)]
    if C * y.size <= _ONEHOT_MAX:
        onehot = np.empty((C, y.size), dtype)
        np.equal(y, _class_column(C), out=onehot)          # (C, N): [y_i == j]
        np.matmul(onehot, diff, out=out)                   # sum_{y_i=j} d_i, 0 for absent classes
        out *= factor[:, None]
        return out
    out[...] = 0
    order = np.argsort(y, kind="stable")
    ys = y[order]
    starts = np.flatnonzero(np.concatenate(([True], ys[1:] != ys[:-1])))   # first row of each class
    sums = np.add.reduceat(diff[order], starts, axis=0)    # (K, D): sum_{y_i=j} d_i, present classes
    present = ys[starts]
    out[present] = sums * factor[present][:, None]
    return out


@functools.lru_cache(maxsize=8)
def _step_factors(batch_size, scale, dtype):
    """``-scale / (1 + n)`` for every class count n in [0, N], made once per (N, scale, dtype)."""
    factors = (-scale / (1.0 + np.arange(batch_size + 1))).astype(dtype)
    factors.flags.writeable = False
    return factors


@functools.lru_cache(maxsize=8)
def _class_column(num_classes):
    """``arange(C)[:, None]``, made once per C (read-only)."""
    column = np.arange(num_classes)[:, None]
    column.flags.writeable = False
    return column


def apply_center_update(centers, delta, alpha):
    """``centers <- centers - alpha * delta``, in place; returns ``centers``."""
    centers -= centers.dtype.type(alpha) * delta
    return centers
