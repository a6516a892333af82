"""NumPy cores of the infogain losses: softmax + infogain fused, and on probabilities.

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net).

References (the specification; docs and tests point here):

* :func:`softmax_infogain_forward` / :func:`softmax_infogain_backward`: the
  fused, exact form on raw scores (``SoftmaxWithInfogainLoss``; what Caffe's
  native ``InfogainLoss`` computes since BVLC/caffe #3855, without its clamp).
* :func:`infogain_forward` / :func:`infogain_backward`: the classic form on
  probabilities, ``log(max(p, eps))`` (``InfogainLoss``; Caffe's layer
  before #3855).

Kernel (same inputs and results, fewer passes; held to the reference by
``tests/test_kernels.py``):

* :func:`softmax_infogain_kernel` / :func:`softmax_infogain_kernel_backward`
  (and :func:`softmax_infogain_kernel_prob`): the fused loss in place in
  reused arrays, with fewer passes; a diagonal H (class weights, or the
  identity) never gathers an L-wide row of H per position.

Helpers, last: :func:`infogain_matrix` validates H (L x L, finite,
non-negative) and precomputes its row sums; the (O, C, I) view and its
checked labels; :func:`check_probabilities`.

Notation: the scores ``x`` are viewed as (O, C, I) = (outer, classes, inner),
Caffe's ``outer_num_``, the class axis and ``inner_num_``; one label per
(o, i) position.  ``norm`` is Caffe's normalizer (``core.common.normalizer``).
The loss is summed by ``common.loss_sum`` (float64).
"""

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from caffe_losses.losses import common

__all__ = ["InfogainMatrix", "infogain_matrix", "square_shape", "check_shapes", "softmax_infogain_forward",
           "softmax_infogain_backward", "softmax_infogain_prob", "softmax_infogain_kernel",
           "softmax_infogain_kernel_backward", "softmax_infogain_kernel_prob", "infogain_forward",
           "infogain_backward", "check_probabilities", "PROB_TOLERANCE"]

# ---------------------------------------------------------------------------
# Reference: softmax + infogain, fused
# ---------------------------------------------------------------------------

@dataclass
class SoftmaxInfogainCache:
    """What the backward of the fused loss needs.

    Attributes:
      prob: (O, C, I) softmax probabilities.
      rowsum: (O, 1, I) ``rowsum(H)[y]``, 0 where ignored.
      rows: (O, C, I) ``H[y, :]``, 0 where ignored.
      norm: the normalizer.
      shape: the scores' shape.
    """

    prob: np.ndarray
    rowsum: np.ndarray
    rows: np.ndarray
    norm: float
    shape: tuple


def softmax_infogain_forward(x, label, H, *, axis=1, ignore_label=None, normalization="VALID",
                             owner="SoftmaxWithInfogainLoss"):
    """Infogain loss on raw scores, with the softmax inside, exact at any scale.

    With ``p = softmax(x)`` along ``axis`` and one label ``y`` per position::

        L = -(1/norm) * sum_i sum_l H[y_i, l] * log p_il

    computed without ever forming ``log p`` from ``p``: with ``m_i = max_l
    x_il``, ``s_il = x_il - m_i <= 0`` and ``Z_i = sum_l exp(s_il) >= 1``,
    ``-log p_il = log Z_i - s_il``, a sum of two non-negative numbers, so::

        L = (1/norm) * sum_i sum_l H[y_i, l] * (log Z_i - s_il)

    a sum of non-negative terms (no cancellation; logits of 1e4 give exact
    values where Caffe's native layer clamps ``log p`` at ``log(1e-20)``).
    With H = identity this is the softmax cross-entropy (``SoftmaxWithLoss``);
    with a diagonal H, a class-weighted one.

    Gradient (BVLC/caffe #3855): ``d log p_il / d x_ik = [l == k] - p_ik``, so::

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

    Returns:
      (loss, cache): a Python float and a :class:`SoftmaxInfogainCache`.

    Shape:
      x: (O, C, I) after canonicalisation on ``axis``; label: O * I values;
      loss: scalar.

    Reference:
      BVLC/caffe PR #3855 (S. Bagon, 2017), ``infogain_loss_layer.cpp``;
      the infogain loss itself: Caffe's original ``InfogainLossLayer``.
    """
    x = _as_real(x)
    pos = _positions(owner, x, label, axis, ignore_label, "scores")
    info = infogain_matrix(H, pos.C, owner=owner, dtype=x.dtype)
    xs = x.reshape(pos.O, pos.C, pos.I)
    with np.errstate(invalid="ignore"):               # a NaN score: reported below
        s = xs - xs.max(axis=1, keepdims=True)        # shifted scores, <= 0
    e = np.exp(s)
    z = e.sum(axis=1, keepdims=True)                  # Z >= 1
    rows = pos.rows(info.matrix)                      # H[y, :], zero rows where ignored
    neg_log_p = np.log(z) - s                         # -log p = log Z - s >= 0
    total = common.loss_sum(rows * neg_log_p)
    if not math.isfinite(total):
        common.raise_non_finite(owner, total, [("bottom 'scores'", x)])
    e /= z                                            # p
    cache = SoftmaxInfogainCache(e, pos.gather(info.rowsum), rows, pos.normalizer(normalization),
                                 x.shape)
    return total / cache.norm, cache


def softmax_infogain_backward(cache, *, scale=1.0, out=None):
    """``dL/dx = scale * (p * rowsum(H)[y] - H[y, :]) / norm``; zero where ignored.

    Args:
      cache: from :func:`softmax_infogain_forward`.
      scale: a factor folded into the gradient (a layer passes its loss weight).
      out: optional C-contiguous array of ``x``'s count and dtype to write
        into (a layer passes the bottom's diff).

    Returns:
      the gradient shaped like ``x``, or ``out`` itself when given.
    """
    g = common.out_view(out, cache.prob.shape, cache.prob.dtype)
    np.multiply(cache.prob, cache.rowsum, out=g)
    g -= cache.rows
    g *= scale / cache.norm
    return g.reshape(cache.shape) if out is None else out


def softmax_infogain_prob(cache, *, out=None):
    """The softmax probabilities, shaped like ``x`` (into ``out`` when given)."""
    if out is None:
        return cache.prob.reshape(cache.shape)
    common.out_view(out, cache.prob.shape, cache.prob.dtype)[...] = cache.prob
    return out


# ---------------------------------------------------------------------------
# Reference: infogain on probabilities (Caffe's classic form)
# ---------------------------------------------------------------------------

@dataclass
class InfogainCache:
    """What the backward of the classic form needs: ``q = max(p, eps)``, ``H[y, :]``, norm, shape."""

    clamped: np.ndarray
    rows: np.ndarray
    norm: float
    shape: tuple


def infogain_forward(p, label, H, *, axis=1, ignore_label=None, normalization="VALID", eps=1e-20,
                     owner="InfogainLoss"):
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
    rule of ``log``; composed with a Softmax layer's backward it gives
    ``(p * rowsum(H)[y] - H[y]) / norm`` again.

    Args:
      p: probabilities in [0, 1], any shape with classes on ``axis``.
      label, H, axis, ignore_label, normalization, owner: as in
        :func:`softmax_infogain_forward`.
      eps: the clamp, > 0.

    Returns:
      (loss, cache): a Python float and an :class:`InfogainCache`.

    Shape:
      p: (O, C, I) after canonicalisation; label: O * I values; loss: scalar.

    Reference:
      Caffe's ``InfogainLossLayer`` before BVLC/caffe #3855 (2017).
    """
    p = _as_real(p)
    pos = _positions(owner, p, label, axis, ignore_label, "prob")
    check_probabilities(owner, p)                     # indexes of p's own shape in messages
    info = infogain_matrix(H, pos.C, owner=owner, dtype=p.dtype)
    q = np.maximum(p.reshape(pos.O, pos.C, pos.I), eps)
    rows = pos.rows(info.matrix)
    total = -common.loss_sum(rows * np.log(q))
    cache = InfogainCache(q, rows, pos.normalizer(normalization), p.shape)
    return total / cache.norm, cache


def infogain_backward(cache, *, scale=1.0, out=None):
    """``dL/dp = -scale * H[y, :] / (max(p, eps) * norm)``; zero where ignored.

    ``scale`` and ``out`` as in :func:`softmax_infogain_backward`.
    """
    g = common.out_view(out, cache.clamped.shape, cache.clamped.dtype)
    np.divide(cache.rows, cache.clamped, out=g)
    g *= -scale / cache.norm
    return g.reshape(cache.shape) if out is None else out


# ---------------------------------------------------------------------------
# Kernel: in place; no rows of a diagonal H
# ---------------------------------------------------------------------------

@dataclass
class InfogainKernelCache:
    """What :func:`softmax_infogain_kernel_backward` needs (arrays in the kernel's workspace).

    Attributes:
      exp: (O, C, I) ``e``, ``exp(x - x_y)`` (diagonal H) or ``exp(x - max)``;
        the probabilities are ``e / Z``.
      z: (O, 1, I) ``Z = sum_l e``.
      rowsum: (O, 1, I) ``rowsum(H)[y]`` (``w[y]`` for a diagonal H), 0 where ignored.
      rows: (O, C, I) ``H[y, :]``, 0 where ignored; None on the diagonal path.
      at_label: (O, I) flat indexes of the labels' entries (:func:`_label_index`),
        or None off the diagonal path.
      norm, shape: as :class:`SoftmaxInfogainCache`.
    """

    exp: np.ndarray
    z: np.ndarray
    rowsum: np.ndarray
    rows: Optional[np.ndarray]
    at_label: Optional[np.ndarray]
    norm: float
    shape: tuple


def softmax_infogain_kernel(x, label, H, *, axis=1, ignore_label=None, normalization="VALID",
                            owner="SoftmaxWithInfogainLoss", workspace=None):
    """Kernel: :func:`softmax_infogain_forward` with fewer passes over the (O, C, I) arrays.

    The same inputs, checks and loss, computed in place in arrays reused
    across calls (a ``common.Workspace``).  The probabilities are never
    formed: the backward folds ``1/Z``, the loss weight and the normalizer
    into one factor per position.  Two paths, each kept because
    ``bench/run.py`` shows it pays (``docs/DEVELOPING.md``, kernels):

    * a diagonal H (``w = diag(H)``: class weights, the identity): only
      ``l = y_i`` is left of the inner sum, and shifting the scores by the
      label's own instead of the row maximum makes ``s_i,y_i = 0``::

          L = (1/norm) * sum_i w[y_i] * log Z_i,     Z_i = sum_l exp(x_il - x_i,y_i) >= 1

      so no row maximum is taken and no (O, C, I) array of H's rows is
      gathered, multiplied or summed; the backward subtracts ``w[y]`` at the
      label only.  A score more than ~88 (float32) above its label's
      overflows ``exp``: such a batch takes the general path.
    * any other H: the reference's passes, in place.

    The cache lives in the workspace: valid until the next call.
    """
    x = _as_real(x)
    pos = _positions(owner, x, label, axis, ignore_label, "scores")
    info = infogain_matrix(H, pos.C, owner=owner, dtype=x.dtype)
    ws = common.Workspace() if workspace is None else workspace
    shape = (pos.O, pos.C, pos.I)
    xs = x.reshape(shape)
    e = ws.array("exp", shape, x.dtype)
    norm = pos.normalizer(normalization)
    if info.diagonal is not None:
        at_label = _label_index(pos, ws)
        rowsum = pos.gather(info.diagonal)            # w[y]
        with np.errstate(over="ignore", invalid="ignore"):
            np.subtract(xs, xs.reshape(-1)[at_label][:, None, :], out=e)   # x - x_y, 0 at y
            np.exp(e, out=e)
            z = e.sum(axis=1, keepdims=True)          # Z >= 1
            total = common.loss_sum(rowsum * np.log(z))
        if math.isfinite(total):
            return total / norm, InfogainKernelCache(e, z, rowsum, None, at_label, norm, x.shape)
    s = ws.array("shifted", shape, x.dtype)
    with np.errstate(invalid="ignore"):               # a NaN score: reported below
        np.subtract(xs, xs.max(axis=1, keepdims=True), out=s)              # s = x - max <= 0
    np.exp(s, out=e)
    z = e.sum(axis=1, keepdims=True)                  # Z >= 1
    rows = pos.rows(info.matrix, ws)
    np.subtract(np.log(z), s, out=s)                  # -log p = log Z - s >= 0
    s *= rows
    total = common.loss_sum(s)
    if not math.isfinite(total):
        common.raise_non_finite(owner, total, [("bottom 'scores'", x)])
    return total / norm, InfogainKernelCache(e, z, pos.gather(info.rowsum), rows, None, norm, x.shape)


def _label_index(pos, workspace):
    """Flat indexes of the labels' entries in an (O, C, I) array: ``o C I + i + y I``, (O, I)."""
    base = workspace.memo("base", (pos.O, pos.C, pos.I),
                          lambda: np.arange(pos.O)[:, None] * (pos.C * pos.I) + np.arange(pos.I))
    return base + pos.labels if pos.I == 1 else base + pos.labels * pos.I


def softmax_infogain_kernel_backward(cache, *, scale=1.0, out=None):
    """Kernel: :func:`softmax_infogain_backward` for a :func:`softmax_infogain_kernel` cache.

    ``(p * rowsum(H)[y] - H[y, :]) k`` with ``p = e / Z`` and ``k = scale /
    norm``; on the diagonal path that is one pass, ``e * (w[y] k / Z)``, and
    at ``k = y``, where ``e = 1``, ``w[y] k / Z - w[y] k`` written directly.
    """
    k = scale / cache.norm
    g = common.out_view(out, cache.exp.shape, cache.exp.dtype)
    if cache.rows is None:
        np.multiply(cache.exp, cache.rowsum * k / cache.z, out=g)
        wk = cache.rowsum[:, 0, :] * k                 # e_y = 1: p_y w k - w k, written at once
        g.reshape(-1)[cache.at_label] = wk / cache.z[:, 0, :] - wk
    else:
        np.multiply(cache.exp, cache.rowsum / cache.z, out=g)
        g -= cache.rows
        g *= k
    return g.reshape(cache.shape) if out is None else out


def softmax_infogain_kernel_prob(cache, *, out=None):
    """The softmax probabilities ``e / Z`` of a :func:`softmax_infogain_kernel` cache, shaped like ``x``."""
    p = common.out_view(out, cache.exp.shape, cache.exp.dtype)
    np.divide(cache.exp, cache.z, out=p)
    return p.reshape(cache.shape) if out is None else out


# ---------------------------------------------------------------------------
# Helpers: H, the (O, C, I) view and the labels, the checks
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class InfogainMatrix:
    """A validated H with its row sums.

    Attributes:
      matrix: (L, L) array, ``H[true class, predicted class]``.
      rowsum: (L,) ``sum_l H[k, l]``, the factor of ``p`` in the gradient.
      diagonal: (L,) ``diag(H)`` when every off-diagonal entry is 0 (class
        weights, or the identity), else None.
    """

    matrix: np.ndarray
    rowsum: np.ndarray
    diagonal: Optional[np.ndarray]

    @property
    def num_classes(self):
        return self.matrix.shape[0]


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


def infogain_matrix(H, num_classes=None, *, owner="infogain_matrix", name="H", dtype=None):
    """Validates ``H`` and precomputes what the losses need.

    Args:
      H: (L, L) or (1, 1, L, L) array, or an :class:`InfogainMatrix`
        (returned as is, or cast to ``dtype``, after the class-count check).
      num_classes: L expected, or None for any.
      owner, name: for messages, e.g. ``"SoftmaxWithInfogainLoss"`` and
        ``"bottom 'H'"`` or ``"'source' file H.binaryproto"``.
      dtype: cast to this dtype (default: H's own floating dtype).

    Returns:
      InfogainMatrix.

    Raises:
      ValueError naming ``owner`` and ``name`` when H is not L x L, holds a
      non-finite or a negative value, or has the wrong L.
    """
    if isinstance(H, InfogainMatrix):
        info = H
        if dtype is not None and H.matrix.dtype != dtype:
            info = InfogainMatrix(*(None if a is None else a.astype(dtype)
                                    for a in (H.matrix, H.rowsum, H.diagonal)))
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
        bad = ~np.isfinite(M) | (M < 0)
        if bad.any():
            idx = common.first_bad_index(bad)
            what = "a negative" if np.isfinite(M[idx]) else "a non-finite"
            raise ValueError(f"{owner}: {name} holds {what} value {float(M[idx])} at H{list(idx)}; "
                             f"H must be finite and non-negative (it weights -log p: it holds "
                             f"similarities or class weights, not distances)")
        diagonal = np.diagonal(M).copy()
        is_diagonal = np.count_nonzero(M) == np.count_nonzero(diagonal)
        info = InfogainMatrix(M, M.sum(axis=1), diagonal if is_diagonal else None)
    if num_classes is not None and info.num_classes != num_classes:
        L = info.num_classes
        raise ValueError(f"{owner}: {name} is {L} x {L}, but the predictions have "
                         f"{num_classes} classes: H must be {num_classes} x {num_classes}")
    return info


@dataclass(frozen=True)
class Positions:
    """The checked labels of one call: what the class axis and the labels imply.

    Attributes:
      O, C, I: Caffe's outer_num_, the class count and inner_num_.
      labels: (O, I) int64 labels, 0 where ignored.
      valid: (O, I) boolean mask of the non-ignored positions, or None when
        none is ignored.
    """

    O: int
    C: int
    I: int
    labels: np.ndarray
    valid: Optional[np.ndarray]

    def normalizer(self, mode):
        count = None if self.valid is None else int(np.count_nonzero(self.valid))
        return common.normalizer(mode, self.O, self.I, count)

    def gather(self, values):
        """``values[y]`` per position, 0 where ignored: (O, 1, I), to broadcast against (O, C, I)."""
        out = values[self.labels]
        if self.valid is not None:
            out = out * self.valid
        return out[:, None, :]

    def rows(self, M, workspace=None):
        """``M[y, :]`` per position, laid out as the scores (O, C, I); zero rows where ignored.

        With I > 1 the rows are gathered from ``M.T`` so that the inner
        (spatial) axis stays contiguous, like the scores'.  With a
        ``workspace``, into its array ``"rows"``.
        """
        if self.I == 1:
            shape, source, index, axis = (self.O, self.C), M, self.labels[:, 0], 0
        else:
            shape, source, index, axis = (self.C, self.O, self.I), M.T, self.labels, 1
        out = None if workspace is None else workspace.array("rows", shape, M.dtype)
        rows = np.take(source, index, axis=axis, out=out)
        rows = rows[:, :, None] if self.I == 1 else rows.transpose(1, 0, 2)     # (O, C, I)
        if self.valid is not None:
            rows *= self.valid[:, None, :]
        return rows


def check_shapes(owner, shape, label_shape, axis=1, xname="scores", *, h_bottom=None, h_source=None):
    """The (O, C, I) of predictions of ``shape``, checked against the labels and H: the one shape check.

    The layers call it in ``reshape``; the cores through :func:`_positions`.

    Args:
      owner: the name that messages start with.
      shape, label_shape: the predictions' and the labels' shapes.
      axis: the class axis; xname: the predictions' bottom name.
      h_bottom: the shape of an H bottom, which must be C x C (or 1 x 1 x C x C).
      h_source: ``(what, L)`` of an H read from a file, e.g. ``("'source' file 'H.npy'", 4)``.

    Returns:
      (O, C, I).
    """
    shape = tuple(int(s) for s in shape)
    O, C, I = common.check_positions(owner, shape, label_shape, axis, xname)
    if h_source is not None and h_source[1] != C:
        what, L = h_source
        raise ValueError(f"{owner}: {what} holds a {L} x {L} H, but bottom '{xname}' {shape} has "
                         f"{C} classes on axis {axis}: H must be {C} x {C}")
    if h_bottom is not None and square_shape(h_bottom) != (C, C):
        raise ValueError(f"{owner}: bottom 'H' must be a {C} x {C} matrix (or 1 x 1 x {C} x {C}) "
                         f"for the {C} classes of '{xname}' {shape}. Received shape {tuple(h_bottom)}")
    return O, C, I


def _positions(owner, x, label, axis, ignore_label, xname):
    """The (O, C, I) view of ``x`` and its checked labels (errors name ``owner``)."""
    label = np.asarray(label)
    O, C, I = check_shapes(owner, x.shape, label.shape, axis, xname)
    y, valid = common.check_labels(owner, label, C, ignore_label)   # indexes of the label's own shape
    return Positions(O, C, I, y.reshape(O, I), None if valid is None else valid.reshape(O, I))


def _as_real(x):
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


# Probabilities may exceed 1 by rounding (a float32 softmax can give
# 1.0000001); anything beyond this is not a probability.
PROB_TOLERANCE = 1e-4


def check_probabilities(owner, p, name="prob"):
    """Raises ValueError unless every value of ``p`` is in [0, 1] (NaN fails)."""
    bad = ~((p >= 0) & (p <= 1 + PROB_TOLERANCE))
    if not bad.any():
        return
    idx = common.first_bad_index(bad)
    raise ValueError(
        f"{owner}: bottom '{name}' holds {float(p[idx])} at index {idx}; expected probabilities in "
        f"[0, 1], the output of a Softmax layer ({int(bad.sum())} bad value(s)). To feed raw "
        f"scores, use SoftmaxWithInfogainLoss, which applies the softmax itself and is exact "
        f"where Softmax followed by InfogainLoss is not")
