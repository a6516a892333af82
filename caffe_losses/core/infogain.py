"""NumPy cores of the infogain losses: softmax + infogain fused, and on probabilities.

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net).

* :func:`softmax_infogain_forward` / :func:`softmax_infogain_backward`: the
  fused, exact form on raw scores (``SoftmaxWithInfogainLoss``; what Caffe's
  native ``InfogainLoss`` computes since BVLC/caffe #3855, without its clamp).
* :func:`infogain_forward` / :func:`infogain_backward`: the classic form on
  probabilities, ``log(max(p, eps))`` (``InfogainLoss``; Caffe's layer
  before #3855).
* :func:`infogain_matrix`: validates H once (L x L, finite, non-negative) and
  precomputes its row sums and whether it is diagonal.  A diagonal H (class
  weights, or the identity) takes a fast path that never gathers an L-wide
  row of H per sample.

Notation: the scores ``x`` are viewed as (O, C, I) = (outer, classes, inner),
Caffe's ``outer_num_``, the class axis and ``inner_num_``; one label per
(o, i) position.  ``norm`` is Caffe's normalizer (``core.common.normalizer``).
"""

import numpy as np

from caffe_losses.core import common

__all__ = ["InfogainMatrix", "infogain_matrix", "softmax_infogain_forward",
           "softmax_infogain_backward", "softmax_infogain_prob", "infogain_forward",
           "infogain_backward", "PROB_TOLERANCE"]

# Probabilities may exceed 1 by rounding (a float32 softmax can give
# 1.0000001); anything beyond this is not a probability.
PROB_TOLERANCE = 1e-4


class InfogainMatrix:
    """A validated H with its row sums and, when diagonal, its diagonal.

    Attributes:
      matrix: (L, L) array, ``H[true class, predicted class]``.
      rowsum: (L,) ``sum_l H[k, l]``, the factor of ``p`` in the gradient.
      diagonal: (L,) ``diag(H)`` when every off-diagonal entry is 0 (the
        fast path: class weights), else None.
    """

    __slots__ = ("matrix", "rowsum", "diagonal")

    def __init__(self, matrix, rowsum, diagonal):
        self.matrix, self.rowsum, self.diagonal = matrix, rowsum, diagonal

    @property
    def num_classes(self):
        return self.matrix.shape[0]

    def astype(self, dtype):
        """The same H in ``dtype`` (itself when already so)."""
        if self.matrix.dtype == dtype:
            return self
        return InfogainMatrix(self.matrix.astype(dtype), self.rowsum.astype(dtype),
                              None if self.diagonal is None else self.diagonal.astype(dtype))


def square_shape(shape):
    """(L, L) when ``shape`` is L x L after dropping leading 1s, else None.

    ``(L, L)`` and Caffe's ``(1, 1, L, L)`` both qualify; ``(L * L,)`` does not.
    """
    shape = tuple(int(s) for s in shape)
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2 and shape[0] == shape[1] and shape[0] > 0:
        return shape
    return None


def infogain_matrix(H, num_classes=None, *, owner="infogain_matrix", name="H", fast=True,
                    dtype=None):
    """Validates ``H`` and precomputes what the losses need.

    Args:
      H: (L, L) or (1, 1, L, L) array, or an :class:`InfogainMatrix`
        (returned as is after the class-count check).
      num_classes: L expected, or None for any.
      owner, name: for messages, e.g. ``"SoftmaxWithInfogainLoss"`` and
        ``"bottom 'H'"`` or ``"'source' file H.binaryproto"``.
      fast: detect a diagonal H (set False to force the general path, for
        tests).
      dtype: cast to this dtype (default: H's own floating dtype).

    Returns:
      InfogainMatrix.

    Raises:
      ValueError naming ``owner`` and ``name`` when H is not L x L, holds a
      non-finite or a negative value, or has the wrong L.
    """
    if isinstance(H, InfogainMatrix):
        info = H if dtype is None else H.astype(dtype)
    else:
        H = np.asarray(H)
        if H.dtype.kind not in "fiub":
            raise ValueError(f"{owner}: {name} must hold real numbers. Received dtype {H.dtype}")
        shape = square_shape(H.shape)
        if shape is None:
            raise ValueError(f"{owner}: {name} must be an L x L matrix (or a 1 x 1 x L x L blob) "
                             f"for L classes. Received shape {tuple(H.shape)}")
        if dtype is None:
            dtype = H.dtype if H.dtype.kind == "f" else np.float64
        M = np.ascontiguousarray(H.reshape(shape), dtype=dtype)
        # min/max catch NaN (comparisons fail) and +-inf in two fast passes.
        lo, hi = M.min(), M.max()
        if not (lo >= 0 and np.isfinite(hi)):
            bad_mask = ~np.isfinite(M) | (M < 0)
            idx = tuple(int(i) for i in np.argwhere(bad_mask)[0])
            what = "a negative" if np.isfinite(M[idx]) else "a non-finite"
            raise ValueError(f"{owner}: {name} holds {what} value {float(M[idx])} at H{list(idx)}; "
                             f"H must be finite and non-negative (it weights -log p: it holds "
                             f"similarities or class weights, not distances)")
        rowsum = M.sum(axis=1)
        diagonal = None
        if fast and np.count_nonzero(M) == np.count_nonzero(np.diagonal(M)):
            diagonal = np.diagonal(M).copy()
        info = InfogainMatrix(M, rowsum, diagonal)
    if num_classes is not None and info.num_classes != num_classes:
        L = info.num_classes
        raise ValueError(f"{owner}: {name} is {L} x {L}, but the predictions have "
                         f"{num_classes} classes: H must be {num_classes} x {num_classes}")
    return info


def _prepare(owner, x, label, H, axis, ignore_label, xname):
    """Shapes, labels and H of both losses: ``(x3, y, valid, info)``."""
    x = np.asarray(x)
    try:
        O, C, I = common.canonical_shape(x.shape, axis)
    except ValueError as err:
        raise ValueError(f"{owner}: 'axis' {err} (bottom '{xname}'). Received: axis={axis}") from None
    label = np.asarray(label)
    if label.size != O * I:
        raise ValueError(
            f"{owner}: bottom 'label' must hold one label per position of '{xname}' "
            f"{tuple(x.shape)} (axis {axis}): expected {O * I} values, got {label.size} "
            f"{tuple(label.shape)}; e.g. scores N x C x H x W need labels N x H x W or N x 1 x H x W")
    # checked in the label blob's own shape, so errors give its own indexes
    y, valid = common.check_labels(owner, label, C, ignore_label)
    y = y.reshape(O, I)
    valid = None if valid is None else valid.reshape(O, I)
    info = infogain_matrix(H, C, owner=owner, dtype=x.dtype)
    return x.reshape(O, C, I), y, valid, info


def _row_weights(values, y, valid):
    """``values[y]`` per position, 0 where the label is ignored: (O, I)."""
    w = values[y]
    if valid is not None:
        w *= valid
    return w


def _gather_rows(info, y, valid):
    """``H[y, :]`` laid out as the predictions: (O, C, I), zero rows where ignored.

    This is the L-wide gather the diagonal fast path avoids.
    """
    Hy = info.matrix[y]                      # (O, I, C): fresh copy
    if valid is not None:
        Hy[~valid] = 0
    return np.moveaxis(Hy, 2, 1)             # (O, C, I) view


def _count(valid):
    """The number of non-ignored positions, or None when none is ignored."""
    return None if valid is None else int(np.count_nonzero(valid))


def _raise_not_finite(owner, x, xname):
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{owner}: bottom '{xname}' holds a non-finite value {float(x[idx])} at index {idx}")
    raise ValueError(f"{owner}: the loss overflowed {x.dtype} (scores span "
                     f"{float(x.max()) - float(x.min()):.3g}); scale the scores down")


# ---------------------------------------------------------------------------
# Softmax + infogain, fused
# ---------------------------------------------------------------------------

def softmax_infogain_forward(x, label, H, *, axis=1, ignore_label=None, normalization="VALID",
                             owner="SoftmaxWithInfogainLoss", workspace=None):
    """Infogain loss on raw scores, with the softmax inside, exact at any scale.

    With ``p = softmax(x)`` along ``axis`` and one label ``y`` per position::

        L = -(1/norm) * sum_i sum_l H[y_i, l] * log p_il

    computed without ever forming ``log p`` from ``p``: with ``m_i = max_l
    x_il``, ``s_il = x_il - m_i <= 0`` and ``Z_i = sum_l exp(s_il) >= 1``,
    ``log p_il = s_il - log Z_i``, so::

        L = (1/norm) * sum_i [ rowsum(H)[y_i] * log Z_i - sum_l H[y_i, l] * s_il ]

    a sum of non-negative terms (no cancellation; logits of 1e4 give exact
    values where Caffe's native layer clamps ``log p`` at ``log(1e-20)``).
    With a diagonal H (weights ``w = diag(H)``) the inner sum keeps only
    ``l = y_i``: ``L = (1/norm) sum_i w[y_i] (log Z_i - s_i,y_i)``, the
    class-weighted softmax loss; H = identity is ``SoftmaxWithLoss``.

    Gradient (Caffe #3855): ``d log p_il / d x_ik = [l == k] - p_ik``, so::

        dL/dx_ik = (1/norm) * sum_l H[y_i, l] (p_ik - [l == k])
                 = (p_ik * rowsum(H)[y_i] - H[y_i, k]) / norm

    zero at ignored positions (see :func:`softmax_infogain_backward`).

    Args:
      x: scores, any shape with classes on ``axis``.
      label: O * I integer labels in [0, C) (or ``ignore_label``), any shape
        with that count (N for N x C scores; N x H x W or N x 1 x H x W for
        N x C x H x W).
      H: (C, C) or (1, 1, C, C) array, or an :class:`InfogainMatrix`.
      axis: the class axis of ``x``.
      ignore_label: label value left out of loss and gradient, or None.
      normalization: "VALID" (non-ignored positions; Caffe's default),
        "FULL", "BATCH_SIZE" or "NONE".
      owner: the name in error messages.
      workspace: optional C-contiguous array of ``x``'s shape and dtype to
        hold ``exp(x - max)`` (the layer allocates it in ``reshape``).

    Returns:
      (loss, cache): a Python float and what the backward needs.

    Shape:
      x: (O, C, I) after canonicalisation on ``axis``; label: O * I values;
      loss: scalar.

    Reference:
      BVLC/caffe PR #3855 (S. Bagon, 2017), ``infogain_loss_layer.cpp``;
      the infogain loss itself: Caffe's original ``InfogainLossLayer``.
    """
    x3, y, valid, info = _prepare(owner, x, label, H, axis, ignore_label, "scores")
    O, C, I = x3.shape
    norm = common.normalizer(normalization, O, I, _count(valid))
    if workspace is None or workspace.size != x3.size or workspace.dtype != x3.dtype:
        workspace = np.empty_like(x3)
    e = workspace.reshape(O, C, I)
    # a non-finite score makes the loss non-finite: diagnosed below, not warned about
    with np.errstate(invalid="ignore", over="ignore"):
        m = x3.max(axis=1, keepdims=True)                       # (O, 1, I)
        np.subtract(x3, m, out=e)                               # s = x - max <= 0
        yy = y[:, None, :]                                      # (O, 1, I)
        if info.diagonal is not None:
            # fast path: only s at the label is needed
            wy = _row_weights(info.diagonal, y, valid)          # (O, I)
            s_y = np.take_along_axis(e, yy, axis=1)[:, 0, :]
            np.exp(e, out=e)
            z = e.sum(axis=1)                                   # Z >= 1
            per_pos = wy * (np.log(z) - s_y)
            Hy = None
            rs_y = wy
        else:
            Hy = _gather_rows(info, y, valid)                   # (O, C, I)
            rs_y = _row_weights(info.rowsum, y, valid)          # (O, I)
            cross = np.einsum("ocj,ocj->oj", Hy, e)             # sum_l H[y,l] s_l <= 0
            np.exp(e, out=e)
            z = e.sum(axis=1)
            per_pos = rs_y * np.log(z) - cross
    loss = float(np.sum(per_pos, dtype=np.float64)) / norm
    if not np.isfinite(loss):
        _raise_not_finite(owner, np.asarray(x), "scores")
    cache = {"shape": np.shape(x), "e": e, "z": z, "y": y, "rs_y": rs_y, "Hy": Hy,
             "norm": norm}
    return loss, cache


def softmax_infogain_backward(cache, *, out=None):
    """``dL/dx = (p * rowsum(H)[y] - H[y, :]) / norm`` (unscaled by the loss weight).

    Args:
      cache: from :func:`softmax_infogain_forward`.
      out: optional array of ``x``'s count and dtype to write into (the
        layer passes the bottom's diff).

    Returns:
      the gradient, shaped like ``x``; zero at ignored positions.
    """
    e, z, y, rs_y, Hy, norm = (cache[k] for k in ("e", "z", "y", "rs_y", "Hy", "norm"))
    O, C, I = e.shape
    g = np.empty_like(e) if out is None else out.reshape(O, C, I)
    # p * rowsum[y] / norm = e * (rowsum[y] / (Z * norm))
    coef = rs_y / (z * norm)
    np.multiply(e, coef[:, None, :], out=g)
    if Hy is None:
        # diagonal H: H[y, k] is w[y] at k == y and 0 elsewhere
        yy = y[:, None, :]
        at_y = np.take_along_axis(g, yy, axis=1) - (rs_y / norm)[:, None, :]
        np.put_along_axis(g, yy, at_y, axis=1)
    else:
        g -= Hy * (1.0 / norm)
    return g.reshape(cache["shape"])


def softmax_infogain_prob(cache, *, out=None):
    """The softmax probabilities ``p = exp(x - max) / Z``, shaped like ``x``."""
    e, z = cache["e"], cache["z"]
    O, C, I = e.shape
    p = np.empty_like(e) if out is None else out.reshape(O, C, I)
    np.divide(e, z[:, None, :], out=p)
    return p.reshape(cache["shape"])


# ---------------------------------------------------------------------------
# Infogain on probabilities
# ---------------------------------------------------------------------------

def check_probabilities(owner, p, name="prob"):
    """Raises ValueError unless every value of ``p`` is in [0, 1] (NaN fails)."""
    lo, hi = p.min(), p.max()
    if lo >= 0 and hi <= 1 + PROB_TOLERANCE:
        return
    bad = ~((p >= 0) & (p <= 1 + PROB_TOLERANCE))
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
        f"{owner}: bottom '{name}' holds {float(p[idx])} at index {idx}; expected probabilities in "
        f"[0, 1], the output of a Softmax layer ({int(bad.sum())} bad value(s)). To feed raw "
        f"scores, use SoftmaxWithInfogainLoss, which applies the softmax itself and is exact "
        f"where Softmax followed by InfogainLoss is not")


def infogain_forward(p, label, H, *, axis=1, ignore_label=None, normalization="VALID", eps=1e-20,
                     owner="InfogainLoss", workspace=None):
    """Infogain loss on probabilities, Caffe's classic form::

        L = -(1/norm) * sum_i sum_l H[y_i, l] * log(max(p_il, eps))

    ``eps`` (1e-20, Caffe's ``kLOG_THRESHOLD``) keeps ``log`` finite at
    ``p = 0``; the loss is then ``H * 46.05`` per term, not the exact
    infinity.  Prefer :func:`softmax_infogain_forward` on raw scores.

    Gradient, with ``q = max(p, eps)``::

        dL/dp_ik = -H[y_i, k] / (q_ik * norm)

    the derivative of ``-H log p`` for ``p >= eps`` and, as in Caffe, the
    same formula with ``q = eps`` below it (where the clamped loss is flat):
    a finite push back up, never 0 or inf.  Dividing by ``p`` is the chain
    rule of ``log`` (seed question 001); composed with a Softmax layer's
    backward it gives ``(p * rowsum(H)[y] - H[y]) / norm`` again.

    Args:
      p: probabilities in [0, 1], any shape with classes on ``axis``.
      label, H, axis, ignore_label, normalization, owner: as in
        :func:`softmax_infogain_forward`.
      eps: the clamp, > 0.
      workspace: optional array of ``p``'s shape and dtype for ``max(p, eps)``.

    Returns:
      (loss, cache).

    Shape:
      p: (O, C, I) after canonicalisation; label: O * I values; loss: scalar.

    Reference:
      Caffe's ``InfogainLossLayer`` before BVLC/caffe #3855 (2017).
    """
    p3, y, valid, info = _prepare(owner, p, label, H, axis, ignore_label, "prob")
    check_probabilities(owner, np.asarray(p))     # indexes of p's own shape in messages
    O, C, I = p3.shape
    norm = common.normalizer(normalization, O, I, _count(valid))
    yy = y[:, None, :]
    if info.diagonal is not None:
        wy = _row_weights(info.diagonal, y, valid)
        q_y = np.maximum(np.take_along_axis(p3, yy, axis=1)[:, 0, :], eps)
        per_pos = -wy * np.log(q_y)
        q, Hy = q_y, None
    else:
        if workspace is None or workspace.size != p3.size or workspace.dtype != p3.dtype:
            workspace = np.empty_like(p3)
        q = workspace.reshape(O, C, I)
        np.maximum(p3, eps, out=q)
        Hy = _gather_rows(info, y, valid)
        per_pos = -np.einsum("ocj,ocj->oj", Hy, np.log(q))
        wy = None
    loss = float(np.sum(per_pos, dtype=np.float64)) / norm
    cache = {"shape": np.shape(p), "C": C, "q": q, "y": y, "wy": wy, "Hy": Hy, "norm": norm}
    return loss, cache


def infogain_backward(cache, *, out=None):
    """``dL/dp = -H[y, :] / (max(p, eps) * norm)`` (unscaled); zero where ignored."""
    q, y, wy, Hy, norm = (cache[k] for k in ("q", "y", "wy", "Hy", "norm"))
    if Hy is None:
        O, I = y.shape
        C = cache["C"]
        g = np.empty((O, C, I), q.dtype) if out is None else out.reshape(O, C, I)
        g[...] = 0
        np.put_along_axis(g, y[:, None, :], (-wy / (q * norm))[:, None, :], axis=1)
    else:
        g = np.empty_like(q) if out is None else out.reshape(q.shape)
        np.divide(Hy, q, out=g)
        g *= -1.0 / norm
    return g.reshape(cache["shape"])
