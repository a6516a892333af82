"""NumPy cores of the regression layers: smooth L1, expectation over bins, mean-variance.

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net); losses are summed by
``common.loss_sum`` (float64).

* :func:`smooth_l1_forward` / :func:`smooth_l1_backward`: Fast R-CNN's smooth
  L1 loss with inside and outside weights (``SmoothL1Loss``).
* :func:`expectation_forward` / :func:`expectation_backward`: the expected
  value ``E = sum_k p_k v_k`` over K bins, through a softmax or not
  (``Expectation``; DEX's age estimate).
* :func:`mean_variance_forward` / :func:`mean_variance_backward`: softmax
  cross-entropy plus the mean and variance penalties of Pan et al.
  (``MeanVarianceLoss``).
* :func:`bin_values`: the K values ``v_k`` from a ``values`` setting.
"""

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from caffe_losses.losses import common

__all__ = ["smooth_l1_forward", "smooth_l1_backward", "bin_values",
           "expectation_forward", "expectation_backward",
           "mean_variance_forward", "mean_variance_backward"]


# ---------------------------------------------------------------------------
# Smooth L1
# ---------------------------------------------------------------------------

@dataclass
class SmoothL1Cache:
    """What :func:`smooth_l1_backward` needs.

    Attributes:
      clipped: ``c = clip(d, -1/sigma^2, 1/sigma^2)``, shaped like ``pred``
        (``f'(d) = sigma^2 c``).
      inside, outside: the weights shaped like ``pred``, or None.
      s2: ``sigma^2``.
      norm: the normalizer.
    """

    clipped: np.ndarray
    inside: Optional[np.ndarray]
    outside: Optional[np.ndarray]
    s2: float
    norm: float


def smooth_l1_forward(pred, target, inside_weights=None, outside_weights=None, *, sigma=1.0,
                      normalization="BATCH_SIZE", owner="smooth_l1_forward"):
    """Smooth L1 loss of Fast R-CNN, with optional inside and outside weights.

    Per element, with ``d = w_in * (pred - target)``::

        f(d) = 0.5 * (sigma * d)^2          if |d| < 1 / sigma^2
               |d| - 0.5 / sigma^2          otherwise

    reduced as ``L = sum(w_out * f(d)) / norm``.  ``f`` is quadratic near 0
    (like the Euclidean loss, times ``sigma^2``) and linear beyond
    ``1/sigma^2`` (like L1), so outliers pull with a bounded force.

    Computed in one form for both regions: with ``c = clip(d, -1/sigma^2,
    1/sigma^2)``, ``f(d) = sigma^2 * c * (d - c / 2)`` (inside, ``c = d`` gives
    ``0.5 sigma^2 d^2``; outside, ``c = sign(d) / sigma^2`` gives ``|d| - 0.5 /
    sigma^2``), and ``f'(d) = sigma^2 * c = clip(sigma^2 d, -1, 1)``.  ``f``
    never squares a ``|d|`` beyond ``1/sigma^2``, so huge inputs give finite
    values.

    The weights may be any finite numbers, as in rbgirshick/caffe-fast-rcnn
    (whose layer test fills both from a Gaussian): a negative inside weight
    flips the sign of ``d`` and leaves ``f(d) >= 0``; a negative outside
    weight gives that element a negative term (the fork sums ``w_out * f``
    with a dot product, signed), so the net is pushed to make that error
    larger.  NaN and inf are refused.

    Args:
      pred: predictions, any shape (N, ...).
      target: as many values as ``pred`` (any shape with that count).
      inside_weights: ``w_in``, as many values as ``pred``, or None (all 1).
      outside_weights: ``w_out``, as many values as ``pred``, or None (all 1).
      sigma: > 0; the quadratic region is ``|d| < 1/sigma^2``.  PyTorch's
        ``smooth_l1_loss(beta)`` is the same ``f`` with ``beta = 1/sigma^2``.
      normalization: "BATCH_SIZE" (N = ``pred.shape[0]``, Caffe's
        EuclideanLoss and Fast R-CNN), "FULL" and "VALID" (the number of
        elements: nothing is ignored) or "NONE".
      owner: the name that error messages start with.

    Returns:
      (loss, cache): a Python float and a :class:`SmoothL1Cache`.

    Raises:
      ValueError naming ``owner`` for ``sigma <= 0``, counts that differ, or a
      non-finite weight (with its bottom, index and value).

    Shape:
      pred: (N, *); target, inside_weights, outside_weights: same count;
      loss: scalar.

    Reference:
      R. Girshick, "Fast R-CNN", ICCV 2015, eq. 3; the inside/outside weights
      and ``sigma`` of ``rbgirshick/caffe-fast-rcnn`` (smooth_L1_loss_layer).
    """
    if not sigma > 0:
        raise ValueError(f"{owner}: 'sigma' must be > 0. Received: sigma={sigma}")
    pred = np.asarray(pred)
    if pred.dtype.kind != "f":
        pred = pred.astype(np.float64)
    s2 = float(sigma) * float(sigma)
    target = _same_count(owner, pred, "target", target)
    w_in = _weights(owner, pred, "inside_weights", inside_weights)
    w_out = _weights(owner, pred, "outside_weights", outside_weights)
    d = pred - target
    if w_in is not None:
        d *= w_in                                    # d = w_in (pred - target)
    c = np.clip(d, -1.0 / s2, 1.0 / s2)
    f = c * (d - 0.5 * c)                            # f(d) / sigma^2
    if w_out is not None:
        f *= w_out
    n = pred.shape[0] if pred.ndim else 1
    norm = common.normalizer(normalization, n, pred.size // n if n else 0)
    return s2 * common.loss_sum(f) / norm, SmoothL1Cache(c, w_in, w_out, s2, norm)


def smooth_l1_backward(cache, *, scale=1.0, out=None):
    """Gradient of :func:`smooth_l1_forward`'s loss w.r.t. ``pred``, times ``scale``.

    ``dL/dpred = w_out * w_in * f'(d) / norm`` with
    ``f'(d) = clip(sigma^2 d, -1, 1) = sigma^2 * c``.  The gradient w.r.t.
    ``target`` is its negative: pass ``-scale`` (and the target's diff as
    ``out``).

    Args:
      cache: from :func:`smooth_l1_forward`.
      scale: a factor folded in (the layer passes the loss weight).
      out: optional C-contiguous array of ``pred``'s count (any shape) to
        write into.

    Returns:
      the gradient shaped like ``pred``, or ``out`` itself when given.
    """
    g = common.out_view(out, cache.clipped.shape, cache.clipped.dtype)
    np.multiply(cache.clipped, scale * cache.s2 / cache.norm, out=g)
    if cache.inside is not None:
        g *= cache.inside
    if cache.outside is not None:
        g *= cache.outside
    return g if out is None else out


# ---------------------------------------------------------------------------
# Expectation over bins
# ---------------------------------------------------------------------------

@dataclass
class ExpectationCache:
    """What :func:`expectation_backward` needs: ``p`` (N, K), ``v`` (K,), ``E`` (N,), the mode, the shape."""

    prob: np.ndarray
    values: np.ndarray
    expectation: np.ndarray
    softmax: bool
    shape: tuple


def expectation_forward(scores, values=None, *, softmax=True):
    """Expected value over K bins: ``E_n = sum_k p_nk v_k``.

    ``p = softmax(scores)`` along the bin axis (max-shifted, so logits of
    +-1e4 are exact), or ``p = scores`` with ``softmax=False`` (the bottom
    already holds probabilities; they are not renormalised, so the layer is
    then a fixed linear map ``E = scores . v``).

    This is what DEX computes at test time, and what a fixed ``Convolution``
    with kernel ``0..99`` (set by net surgery) computes on top of a ``Softmax``.

    Args:
      scores: (N, K) or (N, K, 1, 1).
      values: the bin values, see :func:`bin_values` (default 0..K-1).
      softmax: apply the softmax first.

    Returns:
      (E, cache): E of shape (N, 1), and an :class:`ExpectationCache`.

    Shape:
      scores: (N, K, 1, ...); E: (N, 1).

    Reference:
      R. Rothe, R. Timofte, L. Van Gool, "DEX: Deep EXpectation of apparent
      age from a single image", ICCV Workshops 2015.
    """
    scores = np.asarray(scores)
    dtype = np.result_type(scores.dtype, np.float32)
    n = scores.shape[0]
    k = math.prod(scores.shape[1:])
    x = scores.reshape(n, k)
    v = bin_values(values, k, dtype)
    p = common.softmax(x.astype(dtype, copy=False), axis=1) if softmax else x
    e = p @ v
    return e.reshape(n, 1), ExpectationCache(p, v, e, softmax, scores.shape)


def expectation_backward(cache, top_diff):
    """Gradient of ``sum_n g_n E_n`` w.r.t. the scores, for a top diff ``g``.

    With the softmax, ``dp_j/dx_k = p_j (delta_jk - p_k)``, so::

        dE/dx_k = sum_j v_j p_j (delta_jk - p_k) = p_k v_k - p_k E = p_k (v_k - E)

    Without it, ``dE/dp_k = v_k``.

    Args:
      cache: from :func:`expectation_forward`.
      top_diff: (N, 1) or (N,), the gradient reaching E.

    Returns:
      the gradient, shaped like the scores.
    """
    p, v, e = cache.prob, cache.values, cache.expectation
    g = np.reshape(top_diff, (-1, 1)).astype(p.dtype, copy=False)
    if cache.softmax:
        grad = v[None, :] - e[:, None]      # (N, K): v_k - E_n
        grad *= p
        grad *= g
    else:
        grad = g * v[None, :]
    return grad.reshape(cache.shape)


# ---------------------------------------------------------------------------
# Mean-variance loss
# ---------------------------------------------------------------------------

@dataclass
class MeanVarianceCache:
    """What :func:`mean_variance_backward` needs (per sample n, bin k).

    Attributes:
      prob: (N, K) ``p``; dev: (N, K) ``v_k - m_n``; mean: (N,) ``m``;
      var: (N,) ``s``; target: (N,) ``t = v_y``; labels: (N,) ``y``;
      lambda_mean, lambda_var: the weights; shape: the scores' shape.
    """

    prob: np.ndarray
    dev: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    target: np.ndarray
    labels: np.ndarray
    lambda_mean: float
    lambda_var: float
    shape: tuple


def mean_variance_forward(scores, labels, values=None, *, lambda_mean=0.2, lambda_var=0.05,
                          owner="MeanVarianceLoss"):
    """Softmax cross-entropy plus the mean and variance penalties of Pan et al.

    With ``p = softmax(scores)`` over K bins of values ``v_k``, the label
    ``y_n`` (a bin index) and its value ``t_n = v_{y_n}``::

        m_n = sum_k p_nk v_k                       (the predicted age)
        s_n = sum_k p_nk (v_k - m_n)^2             (its variance)
        L = mean_n [ -log p_{n,y_n} + lambda_mean (m_n - t_n)^2 / 2 + lambda_var s_n ]

    Gradient w.r.t. the scores, from ``dp_j/dx_k = p_j (delta_jk - p_k)``::

        dm/dx_k = p_k (v_k - m)
        ds/dx_k = p_k ((v_k - m)^2 - s)      (the m-terms cancel: sum_j p_j (v_j - m) = 0)
        dL/dx_k = [ p_k - 1{k = y} + lambda_mean (m - t) p_k (v_k - m)
                    + lambda_var p_k ((v_k - m)^2 - s) ] / N

    Args:
      scores: (N, K) raw scores.
      labels: N bin indices in [0, K) (checked).
      values: bin values as in :func:`bin_values` (default 0..K-1).
      lambda_mean, lambda_var: weights of the two penalties (the paper's 0.2
        and 0.05).

    Returns:
      (loss, cache).

    Shape:
      scores: (N, K, 1, ...); labels: N values; loss: scalar.

    Reference:
      H. Pan, H. Han, S. Shan, X. Chen, "Mean-Variance Loss for Deep Age
      Estimation from a Face", CVPR 2018, eqs. 3-7.
    """
    scores = np.asarray(scores)
    dtype = np.result_type(scores.dtype, np.float32)
    n = scores.shape[0]
    k = math.prod(scores.shape[1:])
    x = scores.reshape(n, k).astype(dtype, copy=False)
    y, _ = common.check_labels(owner, labels, k)      # indexes of the label's own shape
    common.check_label_count(owner, n, np.shape(labels), "scores", scores.shape)
    y = y.reshape(-1)
    v = bin_values(values, k, dtype, owner=owner)
    with np.errstate(invalid="ignore"):           # a non-finite score: reported below
        logp = common.log_softmax(x, axis=1)
    p = np.exp(logp)
    m = p @ v
    dev = v[None, :] - m[:, None]                 # (N, K): v_k - m_n
    s = np.einsum("nk,nk->n", p, dev * dev)
    t = v[y]
    per = -logp[np.arange(n), y] + lambda_mean * 0.5 * (m - t) ** 2 + lambda_var * s
    total = common.loss_sum(per)
    if not math.isfinite(total):
        common.raise_non_finite(owner, total, [("bottom 'scores'", scores)])
    loss = total / max(1, n)
    return loss, MeanVarianceCache(p, dev, m, s, t, y, lambda_mean, lambda_var, scores.shape)


def mean_variance_backward(cache, *, scale=1.0, out=None):
    """Gradient of :func:`mean_variance_forward`'s loss w.r.t. the scores (see there), times ``scale``.

    ``out``: optional C-contiguous array of the scores' count to write into.
    Returns the gradient shaped like the scores, or ``out`` itself when given.
    """
    p, dev = cache.prob, cache.dev
    n = p.shape[0]
    coef = cache.lambda_mean * (cache.mean - cache.target)[:, None] * dev
    coef += cache.lambda_var * (dev * dev - cache.var[:, None])
    coef += 1.0
    g = common.out_view(out, p.shape, p.dtype)
    np.multiply(p, coef, out=g)                   # p_k (1 + lm (m-t)(v_k-m) + lv ((v_k-m)^2 - s))
    g[np.arange(n), cache.labels] -= 1.0
    g *= scale / max(1, n)
    return g.reshape(cache.shape) if out is None else out


# ---------------------------------------------------------------------------
# Helpers: the checked weights and values, the bin values
# ---------------------------------------------------------------------------

def _same_count(owner, pred, name, values):
    """``values`` as an array shaped like ``pred`` (any shape with its count)."""
    values = np.asarray(values)
    common.check_same_count(owner, "pred", pred.shape, name, values.shape)
    return values.reshape(pred.shape)


def _weights(owner, pred, name, weights):
    """Checked weights shaped like ``pred``, or None: finite (any sign), as many as ``pred``."""
    if weights is None:
        return None
    weights = np.asarray(weights)
    common.check_same_count(owner, "pred", pred.shape, name, weights.shape)
    if weights.size and not np.isfinite(weights.min() + weights.max()):   # NaN or inf somewhere
        bad = ~np.isfinite(weights)
        idx = common.first_bad_index(bad)
        raise ValueError(f"{owner}: bottom '{name}' holds {float(weights[idx])} at index {idx}; "
                         f"expected finite weights ({int(bad.sum())} bad value(s))")
    return weights.reshape(pred.shape)


def bin_values(values, k, dtype=np.float64, owner="Expectation"):
    """The K bin values ``v_k`` from a ``values`` setting.

    Args:
      values: None (``0, 1, ..., K-1``), a mapping ``{start, step}`` (each
        optional: start 0, step 1; ``v_k = start + k * step``), or a sequence
        of exactly K numbers.
      k: the number of bins K.

    Raises:
      ValueError naming ``owner`` and 'values' when a list has the wrong length.
    """
    if isinstance(values, np.ndarray) and values.shape == (k,) and values.dtype == dtype:
        return values                 # already made (the layers pass theirs on every call)
    if values is None:
        values = {}
    if isinstance(values, dict):
        start = float(values.get("start", 0.0))
        step = float(values.get("step", 1.0))
        return (start + step * np.arange(k, dtype=np.float64)).astype(dtype)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size != k:
        raise ValueError(f"{owner}: 'values' must hold one number per bin: expected {k} "
                         f"(the scores' axis 1), got {values.size}")
    return values.astype(dtype)
