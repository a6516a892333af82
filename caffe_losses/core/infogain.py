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

* :class:`Workspace`: what one input shape implies (the (O, C, I) view, the
  flat index of every position's class 0, buffers), made once per shape.  A
  layer keeps one across iterations, so a call at a small size costs a few
  vectorised NumPy calls and no shape arithmetic.
* :func:`check_labels`: ``core.common.check_labels`` with a fast path for
  the usual batch (every label a class index); the same errors otherwise.

Notation: the scores ``x`` are viewed as (O, C, I) = (outer, classes, inner),
Caffe's ``outer_num_``, the class axis and ``inner_num_``; one label per
(o, i) position.  ``norm`` is Caffe's normalizer (``core.common.normalizer``).

Cost at small sizes: every NumPy call costs about a microsecond whatever its
size, so the forward and backward of an N x C batch are written as few
vectorised calls as possible: BLAS matrix-vector products for row sums
(``e @ ones``), flat fancy indexes (``base + y * I``) for the labels' entries,
exactly rounded ``math.fsum`` for short float64 sums, and, for a diagonal H,
the label's own score as the softmax shift (see
:func:`softmax_infogain_forward`), which needs no row maximum.
"""

import math

import numpy as np

from caffe_losses.core import common

__all__ = ["InfogainMatrix", "infogain_matrix", "softmax_infogain_forward",
           "softmax_infogain_backward", "softmax_infogain_prob", "infogain_forward",
           "infogain_backward", "Workspace", "check_labels", "PROB_TOLERANCE"]

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
      uniform: the common value (a float) when H is diagonal with equal
        entries, e.g. the identity: no per-sample weight is gathered; else None.
    """

    __slots__ = ("matrix", "rowsum", "diagonal", "uniform")

    def __init__(self, matrix, rowsum, diagonal):
        self.matrix, self.rowsum, self.diagonal = matrix, rowsum, diagonal
        self.uniform = None
        if diagonal is not None and diagonal.size and np.all(diagonal == diagonal[0]):
            self.uniform = float(diagonal[0])

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


# Sums of at most this many terms go through math.fsum (exactly rounded, and
# cheaper than a float64 NumPy reduction of a short array); longer ones
# through np.sum in float64.
_FSUM_MAX = 4096
# The row maxima of an (N, C) array with fewer classes than this are taken as
# the column maxima of its transposed copy: C passes over contiguous N-long
# rows instead of N reductions of length C (6x faster at N=256, C=10).
_TRANSPOSED_MAX_BELOW = 64


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------

# common.check_labels has the fast path for the usual batch (kept under this
# name for the modules that import it from here).
check_labels = common.check_labels


# ---------------------------------------------------------------------------
# Workspace: what one input shape implies
# ---------------------------------------------------------------------------

class Workspace:
    """Shape-derived values and buffers of the infogain losses for one input shape.

    Made once per shape (a layer makes it in ``reshape`` when the shape
    changes) and passed as ``workspace=`` to the forwards, so a call does no
    shape arithmetic and allocates only small per-position arrays.

    Attributes:
      shape, axis, dtype: the input it is made for (see :meth:`fits`).
      O, C, I: Caffe's outer_num_, the class count and inner_num_.
      count: O * I, the number of positions (labels), P below.
      xshape, pshape: the input's working view and a per-position array's
        broadcast shape: (O, C) and (O, 1) when I == 1 (N x C scores: plain
        2-D arrays, the cheapest for NumPy), else (O, C, I) and (O, 1, I).
      base: (P,) flat index into the input of class 0 at each position
        ``p = o * I + i``; the labels' entries are at ``base + y * I``.
      e: buffer of shape ``xshape``: ``exp`` of the shifted scores, or
        ``max(p, eps)``.  A forward's cache refers to it: valid until the next
        forward with this workspace.
      ones: (C,) ones: ``a @ ones`` is the row sums of an (O, C) array (BLAS,
        several times faster than ``a.sum(axis=1)`` at any size); also the
        probe of the label range check.

    Raises:
      ValueError naming ``owner`` when ``axis`` is out of range for ``shape``.
    """

    __slots__ = ("shape", "axis", "dtype", "xname", "O", "C", "I", "count", "xshape", "pshape",
                 "base", "e", "ones", "_t", "_norms")

    def __init__(self, shape, axis, dtype, *, owner="SoftmaxWithInfogainLoss", xname="scores"):
        shape = tuple(int(s) for s in shape)
        try:
            O, C, I = common.canonical_shape(shape, axis)
        except ValueError as err:
            raise ValueError(f"{owner}: 'axis' {err} (bottom '{xname}'). Received: axis={axis}") from None
        self.shape, self.axis, self.dtype, self.xname = shape, axis, np.dtype(dtype), xname
        self.O, self.C, self.I = O, C, I
        self.count = O * I
        self.xshape, self.pshape = ((O, C), (O, 1)) if I == 1 else ((O, C, I), (O, 1, I))
        pos = np.arange(O * I, dtype=np.intp)
        self.base = pos * C if I == 1 else (pos // I) * (C * I) + pos % I
        self.e = np.empty(self.xshape, self.dtype)
        self.ones = np.ones(C, self.dtype)
        self._t = None
        self._norms = {}

    @property
    def t(self):
        """A second buffer like ``e`` (general H only), made on first use."""
        if self._t is None:
            self._t = np.empty_like(self.e)
        return self._t

    def fits(self, x, axis):
        """True when this workspace was made for ``x``'s shape and dtype and ``axis``."""
        return x.shape == self.shape and x.dtype == self.dtype and axis == self.axis

    def labels(self, owner, label, ignore_label):
        """Checked labels: ``(y, valid)``, flat (P,) intp (0 where ignored) and mask or None.

        Checked in the label array's own shape, so errors give its own
        indexes.  Call under ``np.errstate(invalid="ignore")``.
        """
        label = np.asarray(label)
        if label.size != self.count:
            raise ValueError(
                f"{owner}: bottom 'label' must hold one label per position of '{self.xname}' "
                f"{self.shape} (axis {self.axis}): expected {self.count} values, got {label.size} "
                f"{tuple(label.shape)}; e.g. scores N x C x H x W need labels N x H x W or N x 1 x H x W")
        y, valid = common.check_labels(owner, label, self.C, ignore_label)   # fast for the usual batch
        return y.reshape(-1), (None if valid is None else valid.reshape(-1))

    def normalizer(self, mode, valid):
        """``common.normalizer`` for this shape; memoised when no label is ignored."""
        if valid is not None:
            return common.normalizer(mode, self.O, self.I, int(np.count_nonzero(valid)))
        norm = self._norms.get(mode)
        if norm is None:
            norm = self._norms[mode] = common.normalizer(mode, self.O, self.I)
        return norm

    def label_index(self, y):
        """Flat indexes of the labels' entries in the input, ``base + y * I``: (P,)."""
        return self.base + y if self.I == 1 else self.base + y * self.I

    def row_sums(self, a):
        """``sum_c a[o, c, i]`` of an array of shape ``xshape``, flat (P,)."""
        if self.I == 1:
            return np.dot(a, self.ones)
        return a.sum(axis=1).reshape(-1)

    def row_max(self, a):
        """``max_c a[o, c, i]`` of an array of shape ``xshape``, shaped ``pshape``."""
        if self.I == 1 and self.C < _TRANSPOSED_MAX_BELOW:
            return a.T.copy().max(axis=0)[:, None]
        return a.max(axis=1, keepdims=True)

    def rows_of(self, M, y, valid):
        """``M[y, :]`` laid out as the input (shape ``xshape``), zero rows where ignored.

        This is the C-wide gather the diagonal fast path avoids.
        """
        My = M[y]                                    # (P, C): fresh copy
        if valid is not None:
            My[~valid] = 0
        if self.I == 1:
            return My
        return np.moveaxis(My.reshape(self.O, self.I, self.C), 2, 1)      # (O, C, I) view


def _workspace(workspace, x, axis, owner, xname):
    """``workspace`` when it fits ``x`` and ``axis``, else a new :class:`Workspace`."""
    if isinstance(workspace, Workspace) and workspace.fits(x, axis):
        return workspace
    return Workspace(x.shape, axis, x.dtype, owner=owner, xname=xname)


def _as_real(x):
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _sum(v):
    """The sum of a 1-D array in float64: exactly rounded when short; NaN for inf - inf."""
    if v.size <= _FSUM_MAX:
        try:
            return math.fsum(v.tolist())
        except (ValueError, OverflowError):     # inf - inf, or an intermediate overflow
            return math.nan
    return float(np.sum(v, dtype=np.float64))


def _row_weights(values, y, valid):
    """``values[y]`` per position, 0 where the label is ignored: flat (P,)."""
    w = values[y]
    if valid is not None:
        w *= valid
    return w


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
    ``-log p_il = log Z_i - s_il``, a sum of two non-negative numbers, so::

        L = (1/norm) * sum_i sum_l H[y_i, l] * (log Z_i - s_il)

    a sum of non-negative terms (no cancellation; logits of 1e4 give exact
    values where Caffe's native layer clamps ``log p`` at ``log(1e-20)``).

    With a diagonal H (weights ``w = diag(H)``) the inner sum keeps only
    ``l = y_i``: the class-weighted softmax loss (H = identity is
    ``SoftmaxWithLoss``).  There the shift is the label's own score instead
    of the row maximum: with ``e_il = exp(x_il - x_i,y_i)`` (so ``e_i,y_i = 1``)
    and ``Z_i = sum_l e_il >= 1``, ``-log p_i,y_i = log Z_i``, so::

        L = (1/norm) * sum_i w[y_i] * log Z_i

    again a sum of non-negative terms, and no row maximum to compute.  When a
    score lies so far above its label's that ``exp`` overflows (about 88 in
    float32, 709 in float64) ``Z`` is inf; the loss is then recomputed with
    the row maximum, as for a general H.

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
      workspace: optional :class:`Workspace` made for ``x``'s shape and dtype
        and ``axis`` (a layer makes one in ``reshape``); its buffer then holds
        the cache's ``exp`` until the next call.  None (or one that does not
        fit) makes a fresh one.

    Returns:
      (loss, cache): a Python float and what the backward needs.

    Shape:
      x: (O, C, I) after canonicalisation on ``axis``; label: O * I values;
      loss: scalar.

    Reference:
      BVLC/caffe PR #3855 (S. Bagon, 2017), ``infogain_loss_layer.cpp``;
      the infogain loss itself: Caffe's original ``InfogainLossLayer``.
    """
    x = _as_real(x)
    ws = _workspace(workspace, x, axis, owner, "scores")
    return _softmax_infogain(ws, x, label, H, ignore_label, normalization, owner)


# a non-finite score makes the loss non-finite: diagnosed, not warned about;
# the cast of a NaN label is caught by the label check
@np.errstate(invalid="ignore", over="ignore")
def _softmax_infogain(ws, x, label, H, ignore_label, normalization, owner):
    y, valid = ws.labels(owner, label, ignore_label)              # flat (P,), P = O * I
    info = infogain_matrix(H, ws.C, owner=owner, dtype=x.dtype)
    norm = ws.normalizer(normalization, valid)
    xs, e, pshape = x.reshape(ws.xshape), ws.e, ws.pshape         # (O, C[, I]), (O, 1[, I])
    if info.diagonal is not None:
        w = info.uniform if valid is None else None               # one weight for all: no gather
        wy = None if w is not None else _row_weights(info.diagonal, y, valid)      # (P,)
        # shift by the label's score: e = exp(x - x_y), e_y = 1, Z >= 1, -log p_y = log Z
        idx = ws.label_index(y)
        np.subtract(xs, x.reshape(-1)[idx].reshape(pshape), out=e)
        np.exp(e, out=e)
        z = ws.row_sums(e)                                        # (P,)
        per_pos = np.log(z)
        e_at_label = 1
        total = w * _sum(per_pos) if wy is None else _sum(np.multiply(wy, per_pos, out=per_pos))
        if not math.isfinite(total):
            # an exp overflowed (or x is not finite): shift by the row maximum
            np.subtract(xs, ws.row_max(xs), out=e)                # s = x - max <= 0
            s_y = e.reshape(-1)[idx]
            np.exp(e, out=e)
            z = ws.row_sums(e)
            per_pos = np.log(z) - s_y                             # -log p_y >= 0
            e_at_label = None
            total = w * _sum(per_pos) if wy is None else _sum(np.multiply(wy, per_pos, out=per_pos))
        cache = {"ws": ws, "shape": x.shape, "e": e, "z": z, "idx": idx, "e_at_label": e_at_label,
                 "w": w, "rs_y": wy, "Hy": None, "norm": norm}
    else:
        t = ws.t
        np.subtract(xs, ws.row_max(xs), out=t)                    # s = x - max <= 0
        Hy = ws.rows_of(info.matrix, y, valid)                    # H[y, :], shaped like x
        rs_y = _row_weights(info.rowsum, y, valid)                # (P,)
        np.exp(t, out=e)
        z = ws.row_sums(e)                                        # Z >= 1
        # -log p = log Z - s: non-negative terms, weighted by H[y] and summed
        np.subtract(np.log(z).reshape(pshape), t, out=t)
        total = _sum(ws.row_sums(np.multiply(Hy, t, out=t)))
        cache = {"ws": ws, "shape": x.shape, "e": e, "z": z, "rs_y": rs_y, "Hy": Hy, "norm": norm}
    if not math.isfinite(total):
        _raise_not_finite(owner, x, "scores")
    return total / norm, cache


def softmax_infogain_backward(cache, *, out=None, scale=1.0):
    """``dL/dx = scale * (p * rowsum(H)[y] - H[y, :]) / norm``.

    Args:
      cache: from :func:`softmax_infogain_forward`.
      out: optional C-contiguous array of ``x``'s count and dtype to write
        into (the layer passes the bottom's diff).
      scale: a factor folded into the gradient (a layer passes its loss
        weight, sparing a pass over the result); 1 gives the plain gradient.

    Returns:
      the gradient, shaped like ``x``; zero at ignored positions.
    """
    ws, e, z, rs_y, Hy = cache["ws"], cache["e"], cache["z"], cache["rs_y"], cache["Hy"]
    g = np.empty_like(e) if out is None else out.reshape(ws.xshape)
    c = scale / cache["norm"]
    if Hy is not None:
        # (p * rowsum[y] - H[y]) * c = (e * (rowsum[y] / Z) - H[y]) * c
        np.multiply(e, np.divide(rs_y, z).reshape(ws.pshape), out=g)
        g -= Hy
        g *= c
        return g.reshape(cache["shape"])
    # diagonal H: H[y, k] is w[y] at k == y and 0 elsewhere; p * w c = e * (w c / Z)
    wc = cache["w"] * c if rs_y is None else np.multiply(rs_y, c)
    coef = np.divide(wc, z)
    np.multiply(e, coef.reshape(ws.pshape), out=g)
    flat = g.reshape(-1)
    if cache["e_at_label"] == 1:
        flat[cache["idx"]] = coef - wc             # e_y = 1: p_y w c - w c
    else:
        flat[cache["idx"]] -= wc
    return g.reshape(cache["shape"])


def softmax_infogain_prob(cache, *, out=None):
    """The softmax probabilities ``p = e / Z``, shaped like ``x``."""
    ws, e, z = cache["ws"], cache["e"], cache["z"]
    p = np.empty_like(e) if out is None else out.reshape(ws.xshape)
    np.divide(e, z.reshape(ws.pshape), out=p)
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
      workspace: optional :class:`Workspace` for ``p``'s shape, dtype and
        ``axis`` (its buffer holds ``max(p, eps)`` for a general H).

    Returns:
      (loss, cache).

    Shape:
      p: (O, C, I) after canonicalisation; label: O * I values; loss: scalar.

    Reference:
      Caffe's ``InfogainLossLayer`` before BVLC/caffe #3855 (2017).
    """
    p = _as_real(p)
    ws = _workspace(workspace, p, axis, owner, "prob")
    return _infogain(ws, p, label, H, ignore_label, normalization, eps, owner)


@np.errstate(invalid="ignore")       # the cast of a NaN label: caught by the label check
def _infogain(ws, p, label, H, ignore_label, normalization, eps, owner):
    y, valid = ws.labels(owner, label, ignore_label)
    check_probabilities(owner, p)     # indexes of p's own shape in messages
    info = infogain_matrix(H, ws.C, owner=owner, dtype=p.dtype)
    norm = ws.normalizer(normalization, valid)
    if info.diagonal is not None:
        w = info.uniform if valid is None else None
        wy = None if w is not None else _row_weights(info.diagonal, y, valid)
        idx = ws.label_index(y)
        q = p.reshape(-1)[idx]                                    # p at the labels, (P,)
        np.maximum(q, eps, out=q)
        logq = np.log(q)
        total = -(w * _sum(logq) if wy is None else _sum(np.multiply(wy, logq, out=logq)))
        cache = {"ws": ws, "shape": p.shape, "q": q, "idx": idx, "w": w, "wy": wy, "Hy": None,
                 "norm": norm}
    else:
        q = ws.e
        np.maximum(p.reshape(ws.xshape), eps, out=q)
        Hy = ws.rows_of(info.matrix, y, valid)
        logq = np.log(q)
        total = -_sum(ws.row_sums(np.multiply(Hy, logq, out=logq)))
        cache = {"ws": ws, "shape": p.shape, "q": q, "Hy": Hy, "norm": norm}
    return total / norm, cache


def infogain_backward(cache, *, out=None, scale=1.0):
    """``dL/dp = -scale * H[y, :] / (max(p, eps) * norm)``; zero where ignored.

    ``out`` and ``scale`` as in :func:`softmax_infogain_backward` (``scale``:
    the loss weight).
    """
    ws, q, Hy = cache["ws"], cache["q"], cache["Hy"]
    c = scale / cache["norm"]
    if Hy is None:
        if out is None:
            g = np.zeros(ws.O * ws.C * ws.I, q.dtype)
        else:
            g = out.reshape(-1)
            g[...] = 0
        wc = cache["w"] * c if cache["wy"] is None else cache["wy"] * c
        g[cache["idx"]] = -wc / q
        return g.reshape(cache["shape"])
    g = np.empty_like(q) if out is None else out.reshape(ws.xshape)
    np.divide(Hy, q, out=g)
    g *= -c
    return g.reshape(cache["shape"])
