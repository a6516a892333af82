"""NumPy cores of the regression layers: smooth L1, expectation over bins, mean-variance.

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net).

* :func:`smooth_l1_forward` / :func:`smooth_l1_backward`: Fast R-CNN's smooth
  L1 loss with inside and outside weights; :class:`SmoothL1`: the same,
  prepared for one shape (what ``SmoothL1Loss`` runs).
* :func:`expectation_forward` / :func:`expectation_backward`: the expected
  value ``E = sum_k p_k v_k`` over K bins, through a softmax or not
  (``Expectation``; DEX's age estimate).
* :func:`mean_variance_forward` / :func:`mean_variance_backward`: softmax
  cross-entropy plus the mean and variance penalties of Pan et al.
  (``MeanVarianceLoss``).
* :func:`bin_values`: the K values ``v_k`` from a ``values`` setting.
"""

import math

import numpy as np

from caffe_losses.core import common

__all__ = ["smooth_l1_forward", "smooth_l1_backward", "SmoothL1", "bin_values",
           "expectation_forward", "expectation_backward",
           "mean_variance_forward", "mean_variance_backward"]

# Bound once: at small sizes a NumPy call costs ~0.4 us, the lookup a tenth.
_subtract, _multiply, _minimum, _maximum, _vdot = (np.subtract, np.multiply, np.minimum, np.maximum,
                                                   np.vdot)


# ---------------------------------------------------------------------------
# Smooth L1
# ---------------------------------------------------------------------------

def smooth_l1_forward(pred, target, inside_weights=None, outside_weights=None, *, sigma=1.0,
                      normalization="BATCH_SIZE", workspace=None):
    """Smooth L1 loss of Fast R-CNN, with optional inside and outside weights.

    Per element, with ``d = w_in * (pred - target)``::

        f(d) = 0.5 * (sigma * d)^2          if |d| < 1 / sigma^2
               |d| - 0.5 / sigma^2          otherwise

    reduced as ``L = sum(w_out * f(d)) / norm``.  ``f`` is quadratic near 0
    (like the Euclidean loss, times ``sigma^2``) and linear beyond
    ``1/sigma^2`` (like L1), so outliers pull with a bounded force.

    Computed in one fused form: with ``c = clip(d, -1/sigma^2, 1/sigma^2)``,
    ``f(d) = sigma^2 * (c * d - c^2 / 2)`` in both regions (inside, ``c = d``
    gives ``0.5 sigma^2 d^2``; outside, ``c = sign(d) / sigma^2`` gives
    ``|d| - 0.5 / sigma^2``), and ``f'(d) = sigma^2 * c = clip(sigma^2 d, -1, 1)``.
    Without outside weights the loss is two dot products,
    ``sigma^2 * (c.d - c.c / 2)``: no temporary, no branch.  ``f`` never squares
    a ``|d|`` beyond ``1/sigma^2``, so huge inputs give finite values.

    Args:
      pred: predictions, any shape (N, ...).
      target: as many values as ``pred`` (reshaped to ``pred.shape``).
      inside_weights: ``w_in``, as many values as ``pred``, or None (all 1).
      outside_weights: ``w_out``, as many values as ``pred``, or None (all 1).
      sigma: > 0; the quadratic region is ``|d| < 1/sigma^2``.  PyTorch's
        ``smooth_l1_loss(beta)`` is the same ``f`` with ``beta = 1/sigma^2``.
      normalization: "BATCH_SIZE" (N = ``pred.shape[0]``, Caffe's
        EuclideanLoss and Fast R-CNN), "FULL" and "VALID" (the number of
        elements: nothing is ignored) or "NONE".
      workspace: optional pair of C-contiguous arrays of ``pred``'s shape and
        dtype, reused for ``d`` and ``c`` (the layer allocates them in
        ``reshape``); None allocates.

    Returns:
      (loss, cache): a Python float, and what :func:`smooth_l1_backward` needs.

    Shape:
      pred: (N, *); target, inside_weights, outside_weights: same count;
      loss: scalar.

    Reference:
      R. Girshick, "Fast R-CNN", ICCV 2015, eq. 3; the inside/outside weights
      and ``sigma`` of ``rbgirshick/caffe-fast-rcnn`` (smooth_L1_loss_layer).
    """
    if not sigma > 0:
        raise ValueError(f"smooth_l1_forward: 'sigma' must be > 0. Received: sigma={sigma}")
    pred = np.asarray(pred)
    dtype = np.result_type(pred.dtype, np.float32)
    common.check_same_count("smooth_l1_forward", "pred", pred.shape, "target", np.shape(target))
    target = np.reshape(target, pred.shape)
    if workspace is None:
        d = np.empty(pred.shape, dtype)
        c = np.empty(pred.shape, dtype)
    else:
        d, c = workspace
    s2 = float(sigma) * float(sigma)
    np.subtract(pred, target, out=d)                   # d = pred - target
    w_in = w_out = None
    if inside_weights is not None:
        common.check_same_count("smooth_l1_forward", "pred", pred.shape, "inside_weights",
                                np.shape(inside_weights))
        w_in = np.reshape(inside_weights, pred.shape)
        np.multiply(d, w_in, out=d)                    # d = w_in * (pred - target)
    if outside_weights is not None:
        common.check_same_count("smooth_l1_forward", "pred", pred.shape, "outside_weights",
                                np.shape(outside_weights))
        w_out = np.reshape(outside_weights, pred.shape)
    bound = 1.0 / s2
    np.clip(d, -bound, bound, out=c)                   # c = clip(d, -1/s2, 1/s2)
    dv, cv = d.reshape(-1), c.reshape(-1)
    if w_out is None:
        # sum f = s2 * (c.d - c.c / 2): two BLAS dot products.
        total = s2 * (float(np.dot(cv, dv)) - 0.5 * float(np.dot(cv, cv)))
    else:
        f = c * d
        f -= 0.5 * c * c
        total = s2 * float(np.dot(np.reshape(w_out, -1).astype(dtype, copy=False), f.reshape(-1)))
    n = pred.shape[0] if pred.ndim else 1
    norm = common.normalizer(normalization, n, pred.size // n if n else 0)
    cache = {"c": c, "s2": s2, "norm": norm, "inside_weights": w_in, "outside_weights": w_out}
    return total / norm, cache


def smooth_l1_backward(cache, *, scale=1.0, out=None):
    """Gradient of :func:`smooth_l1_forward`'s loss w.r.t. ``pred``, times ``scale``.

    ``dL/dpred = w_out * w_in * f'(d) / norm`` with
    ``f'(d) = clip(sigma^2 d, -1, 1) = sigma^2 * c``.  The gradient w.r.t.
    ``target`` is its negative (``d`` depends on ``pred - target``).

    Args:
      cache: from :func:`smooth_l1_forward`.
      scale: a factor folded in (the layer passes the loss weight, so the
        diff is written in one pass).
      out: optional array of ``pred``'s shape to write into.

    Returns:
      the gradient, shaped like ``pred``.
    """
    g = np.multiply(cache["c"], scale * cache["s2"] / cache["norm"], out=out)
    if cache["inside_weights"] is not None:
        g *= cache["inside_weights"]
    if cache["outside_weights"] is not None:
        g *= cache["outside_weights"]
    return g


class SmoothL1:
    """Smooth L1 prepared for one ``pred`` shape: what ``SmoothL1Loss`` runs.

    The loss and gradient of :func:`smooth_l1_forward` /
    :func:`smooth_l1_backward`, with ``sigma`` checked, the normalizer computed
    and the two arrays allocated once, here (the layer builds one in
    ``reshape`` when the shape changes).  Without weights a forward is four
    NumPy calls (``d = pred - target``, ``c = clip(d)``, two dot products)
    and a backward one per diff; with inside or outside weights it calls
    :func:`smooth_l1_forward`.

    Args:
      shape: ``pred``'s shape (N, *).
      dtype: the working dtype (``pred``'s, at least float32).
      sigma, normalization: as :func:`smooth_l1_forward`; checked here.

    Raises:
      ValueError for ``sigma <= 0`` or an unknown normalization.
    """

    def __init__(self, shape, dtype=np.float32, *, sigma=1.0, normalization="BATCH_SIZE"):
        if not sigma > 0:
            raise ValueError(f"smooth_l1_forward: 'sigma' must be > 0. Received: sigma={sigma}")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype = np.result_type(dtype, np.float32)
        self.size = size = math.prod(self.shape)
        n = self.shape[0] if self.shape else 1
        self._norm = common.normalizer(normalization, n, size // n if n else 0)
        self._sigma, self._normalization = sigma, normalization
        self._s2 = s2 = float(sigma) * float(sigma)
        self._d = np.empty(self.shape, dtype)
        self._c = np.empty(self.shape, dtype)
        # c = clip(d): up to 4096 elements as np.minimum / np.maximum with
        # bound arrays (np.clip's wrapper costs 1 us more per call); beyond,
        # np.clip with 0-d bounds, one vectorized pass (minimum/maximum with
        # a scalar are not vectorized, and bound arrays cost memory traffic).
        small = size <= 4096
        hi = np.full(size if small else (), 1.0 / s2, dtype)
        lo = np.full(size if small else (), -1.0 / s2, dtype)
        hi.flags.writeable = lo.flags.writeable = False
        self._fwd = (self._d.reshape(-1), self._c.reshape(-1), hi, lo, small)
        self._cache = None            # smooth_l1_forward's cache (with weights); None: fast path
        self._ready = False

    def forward(self, pred, target, inside_weights=None, outside_weights=None):
        """The loss (a Python float) for ``pred`` of the prepared shape and ``target``.

        The weights, if given, as in :func:`smooth_l1_forward`.
        """
        if pred.size != self.size:
            raise ValueError(f"smooth_l1_forward: 'pred' {tuple(pred.shape)} does not have the "
                             f"{self.size} values of the prepared shape {self.shape}")
        self._ready = True
        if inside_weights is not None or outside_weights is not None or target.size != self.size:
            value, self._cache = smooth_l1_forward(
                pred.reshape(self.shape), target, inside_weights, outside_weights, sigma=self._sigma,
                normalization=self._normalization, workspace=(self._d, self._c))
            return value
        self._cache = None
        d, c, hi, lo, small = self._fwd
        _subtract(pred.ravel(), target.ravel(), d)      # d = pred - target
        if small:
            _minimum(d, hi, out=c)
            _maximum(c, lo, out=c)                      # c = clip(d, -1/s2, 1/s2)
        else:
            np.clip(d, lo, hi, out=c)
        return self._s2 * (float(_vdot(c, d)) - 0.5 * float(_vdot(c, c))) / self._norm

    def backward(self, scale=1.0, out=None):
        """``scale`` times the gradient w.r.t. ``pred`` of the last forward (its
        negative is the gradient w.r.t. ``target``), into ``out`` if given."""
        if not self._ready:
            raise RuntimeError("smooth_l1_forward: backward before forward")
        if self._cache is not None:
            return smooth_l1_backward(self._cache, scale=scale, out=out)
        k = scale * self._s2 / self._norm
        if out is None:
            return np.multiply(self._c, k)
        if out.dtype != self.dtype or not out.flags.c_contiguous:
            out[...] = np.multiply(self._c, k).reshape(out.shape)
            return out
        _multiply(self._fwd[1], k, out.ravel())         # f'(d) k = clip(s2 d, -1, 1) k
        return out


# ---------------------------------------------------------------------------
# Expectation over bins
# ---------------------------------------------------------------------------

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


def expectation_forward(scores, values=None, *, softmax=True):
    """Expected value over K bins: ``E_n = sum_k p_nk v_k``.

    ``p = softmax(scores)`` along the bin axis (max-shifted, so logits of
    +-1e4 are exact), or ``p = scores`` with ``softmax=False`` (the bottom
    already holds probabilities; they are not renormalised, so the layer is
    then a fixed linear map ``E = scores . v``).

    This is what DEX computes at test time, and what the seed's fixed
    ``Convolution`` with kernel ``0..99`` computes on top of a ``Softmax``.

    Args:
      scores: (N, K) or (N, K, 1, 1).
      values: the bin values, see :func:`bin_values` (default 0..K-1).
      softmax: apply the softmax first.

    Returns:
      (E, cache): E of shape (N, 1), and what :func:`expectation_backward` needs.

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
    return e.reshape(n, 1), {"p": p, "v": v, "e": e, "softmax": softmax, "shape": scores.shape}


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
    p, v, e = cache["p"], cache["v"], cache["e"]
    g = np.reshape(top_diff, (-1, 1)).astype(p.dtype, copy=False)
    if cache["softmax"]:
        grad = v[None, :] - e[:, None]      # (N, K): v_k - E_n
        grad *= p
        grad *= g
    else:
        grad = g * v[None, :]
    return grad.reshape(cache["shape"])


# ---------------------------------------------------------------------------
# Mean-variance loss
# ---------------------------------------------------------------------------

def mean_variance_forward(scores, labels, values=None, *, lambda_mean=0.2, lambda_var=0.05):
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
    y, _ = common.check_labels("MeanVarianceLoss", np.reshape(labels, -1), k)
    if y.size != n:
        raise ValueError(f"MeanVarianceLoss: bottom 'label' must hold one label per sample: "
                         f"expected {n}, got {y.size}")
    v = bin_values(values, k, dtype, owner="MeanVarianceLoss")
    logp = common.log_softmax(x, axis=1)
    p = np.exp(logp)
    rows = np.arange(n)
    m = p @ v
    dev = v[None, :] - m[:, None]                 # (N, K): v_k - m_n
    s = np.einsum("nk,nk->n", p, dev * dev)
    t = v[y]
    per = -logp[rows, y] + lambda_mean * 0.5 * (m - t) ** 2 + lambda_var * s
    loss = float(np.sum(per, dtype=np.float64)) / max(1, n)
    cache = {"p": p, "dev": dev, "m": m, "s": s, "t": t, "y": y, "n": n,
             "lambda_mean": lambda_mean, "lambda_var": lambda_var, "shape": scores.shape}
    return loss, cache


def mean_variance_backward(cache):
    """Gradient of :func:`mean_variance_forward`'s loss w.r.t. the scores (see there)."""
    p, dev, n = cache["p"], cache["dev"], cache["n"]
    coef = cache["lambda_mean"] * (cache["m"] - cache["t"])[:, None] * dev
    coef += cache["lambda_var"] * (dev * dev - cache["s"][:, None])
    coef += 1.0
    grad = p * coef                               # p_k (1 + lm (m-t)(v_k-m) + lv ((v_k-m)^2 - s))
    grad[np.arange(n), cache["y"]] -= 1.0
    grad /= max(1, n)
    return grad.reshape(cache["shape"])
