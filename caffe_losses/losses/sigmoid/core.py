"""NumPy core of the weighted sigmoid cross-entropy (``WeightedSigmoidCrossEntropyLoss``).

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net).

Reference (the specification; docs and tests point here):

* :func:`weighted_sigmoid_cross_entropy_forward` /
  :func:`weighted_sigmoid_cross_entropy_backward`: the loss and its gradient
  with respect to the logits; the loss is summed by ``common.loss_sum``
  (float64).

Kernel (same inputs and results; held to the reference by
``tests/test_kernels.py``):

* :func:`weighted_sigmoid_cross_entropy_kernel`: the forward in place in
  reused arrays, without a float32 ``log1p``; its cache is the reference's,
  so the reference backward serves it.

Helpers:

* targets in [0, 1] or equal to the ignore label: :func:`caffe_losses.losses.common.check_targets`
  (the layer's check and ``caffe-losses make-pos-weight``'s).
* :func:`check_weight_count`: one ``pos_weight`` per channel (the layer's
  ``reshape`` check too).
* :func:`channel_shape`: a scores blob as (N, C, inner).
"""

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from caffe_losses.losses import common

__all__ = ["weighted_sigmoid_cross_entropy_forward", "weighted_sigmoid_cross_entropy_backward",
           "weighted_sigmoid_cross_entropy_kernel",
           "check_weight_count", "channel_shape", "BALANCES"]

OWNER = "weighted_sigmoid_cross_entropy"
BALANCES = ("none", "auto")


# ---------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------

@dataclass
class SigmoidCache:
    """What the backward needs.

    Attributes:
      prob: (N, C, inner) ``p = sigmoid(x)``.
      pos: ``a = w_p t``, the weight of the positive term (0 where ignored).
      neg: ``b = w_n (1 - t)``, the weight of the negative term (0 where ignored).
      norm: the normalizer.
      shape: the scores' shape.
    """

    prob: np.ndarray
    pos: Union[np.ndarray, float]
    neg: Union[np.ndarray, float]
    norm: float
    shape: tuple


def weighted_sigmoid_cross_entropy_forward(scores, target, *, pos_weight=1.0, neg_weight=1.0,
                                           balance="none", ignore_label=None,
                                           normalization="BATCH_SIZE", owner=OWNER):
    """Sigmoid cross-entropy with positive / negative weights, from logits.

    Per element, with logit ``x``, target ``t`` in [0, 1], ``p = sigmoid(x)``::

        l = -[w_p t log(p) + w_n (1 - t) log(1 - p)]
          = w_p t softplus(-x) + w_n (1 - t) softplus(x)

    since ``-log(sigmoid(x)) = softplus(-x)`` and ``-log(1 - sigmoid(x)) =
    softplus(x)``.  The loss is ``L = sum(l) / norm``.  With ``w_p = w_n = 1``
    this is exactly Caffe's ``SigmoidCrossEntropyLoss``; with ``w_n = 1`` it
    is PyTorch's ``BCEWithLogitsLoss(pos_weight=w_p)``.

    Stable form: ``softplus(+-x) = max(+-x, 0) + log1p(exp(-|x|))``.  ``exp``
    only sees ``-|x|`` (no overflow), and both softplus terms are sums of
    non-negative parts (no cancellation), so every term of the loss is a
    non-negative product, exact to a few ulps.  Logits of +-1e4 give the
    exact values (e.g. ``1e4 * w_p`` for ``x = -1e4, t = 1``), and a term as
    small as ``softplus(-40) = 4.2e-18`` is kept.

    Weights:
      ``pos_weight`` (``w_p``) is a number or one weight per channel along
      axis 1 (PyTorch's ``pos_weight``: for a channel with 100 positives and
      300 negatives, 3 balances them).  ``neg_weight`` (``w_n``) is a number.
      ``balance="auto"`` multiplies them, per sample ``i``, by HED's class
      balance over the sample's non-ignored elements::

          w_p,i *= |Y-_i| / |Y_i|        w_n,i *= |Y+_i| / |Y_i|

      with ``|Y+_i| = sum t``, ``|Y-_i| = sum (1 - t)`` (counts for 0/1
      targets) and ``|Y_i| = |Y+_i| + |Y-_i|``.  A sample with no positive gets
      ``w_n = 0``: it adds nothing (as in HED).  The weights depend on the
      targets only, so they are constants for the gradient.

    Normalization (Caffe's ``LossParameter``, default BATCH_SIZE as in the
    native layer): FULL divides by the element count, VALID by the number of
    non-ignored elements, BATCH_SIZE by N (``scores.shape[0]``), NONE by 1; at
    least 1.  The divisor counts elements, not weights.

    Args:
      scores: logits ``x``, any shape (N, C, ...).
      target: as many values as ``scores``, in [0, 1] (soft targets allowed)
        or equal to ``ignore_label``.
      pos_weight: number >= 0, or a sequence of C numbers >= 0.
      neg_weight: number >= 0.
      balance: "none" or "auto" (HED's per-sample balance, see above).
      ignore_label: elements whose target equals it add no loss and get a zero
        gradient; None for none.
      normalization: "FULL", "VALID", "BATCH_SIZE" or "NONE".
      owner: the name that error messages start with.

    Returns:
      (loss, cache): a Python float and a :class:`SigmoidCache`.

    Raises:
      ValueError naming ``owner`` for targets outside [0, 1] (other than the
      ignore label), negative weights, a weight list whose length is not C,
      counts that differ, non-finite scores, or a loss that overflows.

    Shape:
      scores: (N, C, *); target: same count (reshaped to ``scores.shape``);
      pos_weight: scalar or (C,); loss: scalar.

    Reference:
      BVLC Caffe ``SigmoidCrossEntropyLossLayer``; PyTorch
      ``BCEWithLogitsLoss`` (``pos_weight``); S. Xie and Z. Tu,
      "Holistically-Nested Edge Detection", ICCV 2015, eq. 2 (class balance).
    """
    x, t, valid, wp, wn, norm = _inputs(owner, scores, target, pos_weight, neg_weight, balance,
                                        ignore_label, normalization)
    pos = wp * t                                     # a = w_p t
    neg = wn * (valid - t)                           # b = w_n (1 - t), 0 where ignored
    if balance == "auto":
        beta_pos, beta_neg = _hed_balance(t, valid - t)
        pos, neg = pos * beta_pos, neg * beta_neg
    # -log p = softplus(-x), -log(1 - p) = softplus(x): both max(+-x, 0) + log1p(exp(-|x|))
    total = common.loss_sum(pos * common.softplus(-x) + neg * common.softplus(x))
    if not math.isfinite(total):
        common.raise_non_finite(owner, total, [("bottom 'scores'", scores)])
    prob = common.sigmoid(x)                         # exactly 0 or 1 at x = -+1e4, never NaN
    return total / norm, SigmoidCache(prob, pos, neg, norm, np.shape(scores))


def weighted_sigmoid_cross_entropy_backward(cache, *, scale=1.0, out=None):
    """Gradient of the loss w.r.t. the logits, times ``scale``.

    Derivation, per element: with ``d/dx softplus(-x) = -(1 - p)`` and
    ``d/dx softplus(x) = p``::

        dl/dx = -w_p t (1 - p) + w_n (1 - t) p
              = (w_p t + w_n (1 - t)) p - w_p t

    so ``dL/dx = ((w_p t + w_n (1 - t)) p - w_p t) / norm``; 0 where the
    target is ignored.  With all weights 1 it is ``(p - t) / norm``, Caffe's.
    ``p`` is exactly 0 or 1 at ``x = -+1e4``, so the gradient there is
    exactly ``-w_p t`` or ``w_n (1 - t)`` (over ``norm``).

    Args:
      cache: from :func:`weighted_sigmoid_cross_entropy_forward`.
      scale: a factor (the layer passes the loss weight from the top diff).
      out: optional C-contiguous array of the scores' count to write into
        (the layer passes the bottom's diff).

    Returns:
      the gradient shaped like the scores, or ``out`` itself when given.
    """
    g = common.out_view(out, cache.prob.shape, cache.prob.dtype)
    np.add(cache.pos, cache.neg, out=g)              # w_p t + w_n (1 - t)
    g *= cache.prob
    g -= cache.pos
    g *= scale / cache.norm
    return out if out is not None else g.reshape(cache.shape)


# ---------------------------------------------------------------------------
# Kernel: the same loss in reused buffers, without a float32 log1p
# ---------------------------------------------------------------------------

def weighted_sigmoid_cross_entropy_kernel(scores, target, *, pos_weight=1.0, neg_weight=1.0,
                                          balance="none", ignore_label=None,
                                          normalization="BATCH_SIZE", owner=OWNER, workspace=None):
    """Kernel: :func:`weighted_sigmoid_cross_entropy_forward` with fewer passes, in reused arrays.

    The same inputs, checks, loss and :class:`SigmoidCache` (so the same
    backward), computed in place in the arrays of a ``common.Workspace`` (the
    settings are checked once per shape there), from the exact pieces ``r = max(x, 0)``, ``m = min(x, 0) = x - r``
    and ``-|x| = m - r``::

        lg = log(1 + exp(-|x|))          (:func:`_log1p_unit`: NumPy's float32
                                          log1p has no SIMD loop without AVX-512)
        softplus(x) = r + lg,   log p = -softplus(-x) = m - lg,   p = exp(log p)
        l = w_n (1 - t) softplus(x) - w_p t log p

    The cache lives in the workspace: valid until the next call.
    """
    ws = common.Workspace() if workspace is None else workspace
    x, t, valid, wp, wn, norm = _inputs(owner, scores, target, pos_weight, neg_weight, balance,
                                        ignore_label, normalization, ws)

    def buf(name):
        return ws.array(name, x.shape, x.dtype)

    pos = np.multiply(t, wp, out=buf("pos"))                 # a = w_p t
    neg = np.subtract(valid, t, out=buf("neg"))              # 1 - t, 0 where ignored
    if balance == "auto":
        beta_pos, beta_neg = _hed_balance(t, neg)
        pos *= beta_pos
        neg *= beta_neg
    if wn != 1:
        neg *= wn                                            # b = w_n (1 - t)
    r = np.maximum(x, ws.zeros(x.shape, x.dtype), out=buf("r"))    # max(x, 0)
    m = np.subtract(x, r, out=buf("m"))                      # min(x, 0), exact
    lg = np.subtract(m, r, out=buf("lg"))                    # -|x|, exact
    np.exp(lg, out=lg)
    _log1p_unit(lg, tmp=buf("prob"), tmp2=buf("tmp"))        # log(1 + exp(-|x|)), in place
    r += lg                                                  # -log(1 - p) = softplus(x)
    m -= lg                                                  # log p = -softplus(-x)
    prob = np.exp(m, out=buf("prob"))                        # p: 0, not NaN, at x = -1e4
    r *= neg
    m *= pos
    r -= m                                                   # the terms
    total = common.loss_sum(r)
    if not math.isfinite(total):
        common.raise_non_finite(owner, total, [("bottom 'scores'", scores)])
    return total / norm, SigmoidCache(prob, pos, neg, norm, np.shape(scores))


def _log1p_unit(e, *, tmp, tmp2):
    """``e <- log(1 + e)`` for ``e`` in [0, 1], to an ulp or so, from ``np.log``.

    ``u = 1 + e`` is rounded; its error ``d = (u - 1) - e`` is exact (Fast2Sum,
    ``1 >= e``), and ``log(1 + e) = log(u - d) = log(u) - d / u`` up to
    ``d^2``.  Dropping the ``/ u`` (``u`` in [1, 2]) costs at most ``d e``:
    below an ulp of the result, and a term as small as ``e = 1e-30`` is kept.
    """
    u = np.add(e, 1, out=tmp)
    d = np.subtract(u, 1, out=tmp2)
    d -= e                                                   # d = (u - 1) - e, exact
    np.log(u, out=e)
    e -= d
    return e


# ---------------------------------------------------------------------------
# Helpers: checked inputs and weights, HED's balance, the target check
# ---------------------------------------------------------------------------

def _inputs(owner, scores, target, pos_weight, neg_weight, balance, ignore_label, normalization,
            workspace=None):
    """Checked inputs as (N, C, inner) views: ``x, t, valid, w_p, w_n, norm``.

    ``t`` is 0 and ``valid`` False where the target is ignored; ``valid`` is
    the number 1 when nothing is ignored.  With a ``workspace``, the settings
    (weights, normalizer) are checked once per shape and kept there.
    """
    x = np.asarray(scores)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    common.check_same_count(owner, "scores", x.shape, "target", np.shape(target))
    t = np.asarray(target, dtype=x.dtype)
    n, c, inner = channel_shape(x.shape)

    def settings():
        wp, wn = _weights(owner, pos_weight, neg_weight, balance, x.shape, x.dtype)
        return wp, wn, common.normalizer(normalization, n, c * inner)

    if workspace is None:
        wp, wn, norm = settings()
    else:
        key = (x.shape, x.dtype, owner, pos_weight if np.ndim(pos_weight) == 0 else tuple(pos_weight),
               neg_weight, balance, normalization)
        wp, wn, norm = workspace.memo("settings", key, settings)
    ignored = common.check_targets(owner, t, ignore_label)  # indexes of the target's own shape
    x, t = x.reshape(n, c, inner), t.reshape(n, c, inner)
    if ignored is None:
        return x, t, 1, wp, wn, norm
    valid = ~ignored.reshape(n, c, inner)
    norm = common.normalizer(normalization, n, c * inner, int(np.count_nonzero(valid)))
    return x, t * valid, valid, wp, wn, norm


def _hed_balance(t, not_t):
    """HED's per-sample factors, (N, 1, 1) each: ``|Y-|/|Y|`` for positives, ``|Y+|/|Y|`` for negatives."""
    n = t.shape[0]
    count_pos = t.reshape(n, -1).sum(axis=1, dtype=np.float64)       # exact below 2^53
    count_neg = np.broadcast_to(not_t, t.shape).reshape(n, -1).sum(axis=1, dtype=np.float64)
    count = count_pos + count_neg
    safe = np.where(count > 0, count, 1.0)
    beta_pos = np.where(count > 0, count_neg / safe, 0.0).astype(t.dtype).reshape(n, 1, 1)
    beta_neg = np.where(count > 0, count_pos / safe, 0.0).astype(t.dtype).reshape(n, 1, 1)
    return beta_pos, beta_neg


def _weights(owner, pos_weight, neg_weight, balance, shape, dtype):
    """Checked weights: ``w_p`` (scalar or (1, C, 1) array) and ``w_n`` (scalar); checks ``balance`` too."""
    if balance not in BALANCES:
        raise ValueError(f"{owner}: 'balance' must be one of {', '.join(BALANCES)}. "
                         f"Received: balance={balance!r}")
    wp = _weight(owner, "pos_weight", pos_weight, shape, dtype)
    wn = _weight(owner, "neg_weight", neg_weight, shape, dtype, channels=1)
    if not isinstance(wn, float):
        wn = float(wn.reshape(()))
    return wp, wn


def _weight(owner, key, value, shape, dtype, channels=None):
    """A weight as a Python float or a (1, C, 1) array; checks sign and length.

    ``shape`` is the scores' (C = ``channels``, default its axis 1).
    """
    if not isinstance(value, (list, tuple, np.ndarray)) or np.ndim(value) == 0:
        value = float(value)
        if not value >= 0 or not np.isfinite(value):
            raise ValueError(f"{owner}: '{key}' must be a finite number >= 0. Received: {key}={value}")
        return value
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    channels = check_weight_count(owner, key, arr.size, shape, channels)
    if not (np.all(np.isfinite(arr)) and np.all(arr >= 0)):
        bad = common.first_bad_index(~(np.isfinite(arr) & (arr >= 0)))[0]
        raise ValueError(f"{owner}: '{key}' must hold finite numbers >= 0; item {bad} is "
                         f"{arr[bad]}. Received: {key}={arr.tolist()}")
    return arr.astype(dtype).reshape(1, channels, 1)


def check_weight_count(owner, key, count, shape, channels=None):
    """Raises unless a list ``key`` of ``count`` weights has one weight per channel of scores ``shape``.

    The one check of the length (the layer calls it in ``reshape``, the core on
    every call).  ``channels``: the count expected, default axis 1 of ``shape``.
    Returns the channel count.
    """
    if channels is None:
        channels = channel_shape(shape)[1]
    if count != channels:
        raise ValueError(f"{owner}: '{key}' has {count} weight(s) but bottom 'scores' "
                         f"{tuple(shape)} has {channels} channel(s) along axis 1: expected one "
                         f"weight per channel")
    return channels


def channel_shape(shape):
    """``(N, C, inner)`` of a scores blob: samples, channels (axis 1), the rest.

    A 1-D blob ``(N,)`` has one channel; a 0-d blob is one sample.
    """
    shape = tuple(int(s) for s in shape)
    n = shape[0] if len(shape) >= 1 else 1
    c = shape[1] if len(shape) >= 2 else 1
    inner = math.prod(shape[2:])
    return n, c, inner
