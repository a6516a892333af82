"""NumPy core of the weighted sigmoid cross-entropy (``WeightedSigmoidCrossEntropyLoss``).

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net).

* :func:`weighted_sigmoid_cross_entropy_forward` /
  :func:`weighted_sigmoid_cross_entropy_backward`: the loss and its gradient
  with respect to the logits.
* :class:`WeightedSigmoidCrossEntropy`: the same, prepared for one shape
  (parameters checked and arrays allocated once): what the layer runs.
* :func:`check_targets`: targets in [0, 1] or equal to the ignore label.
* :func:`count_targets` and :func:`pos_weight_from_counts`: per-channel
  positive / negative counts and PyTorch-style ``pos_weight = neg / pos``
  (used by ``caffe-losses make-pos-weight``).
"""

import math

import numpy as np

from caffe_losses.core import common

__all__ = ["weighted_sigmoid_cross_entropy_forward", "weighted_sigmoid_cross_entropy_backward",
           "WeightedSigmoidCrossEntropy",
           "check_targets", "channel_shape", "allocate_workspace", "count_targets", "pos_weight_from_counts",
           "BALANCES"]

OWNER = "weighted_sigmoid_cross_entropy"
BALANCES = ("none", "auto")

# Bound once: at small sizes a NumPy call costs ~0.4 us, the module lookup a
# tenth of that (positional ``out``: another tenth).
_add, _subtract, _multiply, _minimum = np.add, np.subtract, np.multiply, np.minimum
_exp, _log1p, _vdot, _dot = np.exp, np.log1p, np.vdot, np.dot
# Up to this many elements the backward ends in a gemv over (2, size): one
# call instead of three, and below OpenBLAS's threading threshold (2 * size <
# 9216), so it never waits on a thread that Caffe's own OpenBLAS keeps busy.
_GEMV_MAX = 4096


def channel_shape(shape):
    """``(N, C, inner)`` of a scores blob: samples, channels (axis 1), the rest.

    A 1-D blob ``(N,)`` has one channel; a 0-d blob is one sample.
    """
    shape = tuple(int(s) for s in shape)
    n = shape[0] if len(shape) >= 1 else 1
    c = shape[1] if len(shape) >= 2 else 1
    inner = math.prod(shape[2:])
    return n, c, inner


def _weight(owner, key, value, channels, dtype):
    """A weight as a Python float or a (1, C, 1) array; checks sign and length."""
    if np.ndim(value) == 0:
        value = float(value)
        if not value >= 0 or not np.isfinite(value):
            raise ValueError(f"{owner}: '{key}' must be a finite number >= 0. Received: {key}={value}")
        return value
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != channels:
        raise ValueError(f"{owner}: '{key}' has {arr.size} weight(s) but bottom 'scores' has "
                         f"{channels} channel(s) along axis 1: expected one weight per channel")
    if not (np.all(np.isfinite(arr)) and np.all(arr >= 0)):
        bad = int(np.flatnonzero(~(np.isfinite(arr) & (arr >= 0)))[0])
        raise ValueError(f"{owner}: '{key}' must hold finite numbers >= 0; item {bad} is "
                         f"{arr[bad]}. Received: {key}={arr.tolist()}")
    return arr.astype(dtype).reshape(1, channels, 1)


def check_targets(owner, target, ignore_label=None, name="target"):
    """Checks that targets lie in [0, 1] or equal ``ignore_label``.

    Args:
      owner: layer/function name for messages.
      target: array of target values (soft targets allowed).
      ignore_label: a value allowed anywhere, meaning "leave this element out";
        None for none.
      name: the bottom's name in messages.

    Returns:
      boolean mask of the ignored elements, or None when none is ignored.

    Raises:
      ValueError naming the first bad value, its index and what was expected
      (NaN and inf are bad values too).
    """
    ignored = None
    if ignore_label is not None:
        ignored = target == ignore_label
        if not ignored.any():
            ignored = None
    if target.size == 0:
        return ignored
    if target.min() >= 0 and target.max() <= 1:     # two fast reductions; False for NaN
        return ignored
    bad = ~((target >= 0) & (target <= 1))          # boolean passes (np.min(where=) is slow)
    if ignored is not None:
        bad &= ~ignored
    if not bad.any():
        return ignored
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    extra = f" or the ignore_label {ignore_label}" if ignore_label is not None else ""
    raise ValueError(f"{owner}: bottom '{name}' holds {float(target[idx])} at index {idx}; "
                     f"expected values in [0, 1]{extra} ({int(bad.sum())} bad value(s))")


def _buffers(workspace, shape, dtype, names):
    """Arrays of ``shape``/``dtype`` from ``workspace`` (a dict), made if missing."""
    out = []
    for name in names:
        buf = None if workspace is None else workspace.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            if workspace is not None:
                workspace[name] = buf
        out.append(buf)
    return out


def _zeros(workspace, shape, dtype):
    """A read-only array of zeros from ``workspace``, made if missing."""
    buf = None if workspace is None else workspace.get("zeros")
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.zeros(shape, dtype)
        buf.flags.writeable = False
        if workspace is not None:
            workspace["zeros"] = buf
    return buf


def allocate_workspace(workspace, shape, dtype=np.float32):
    """Fills ``workspace`` (a dict) with the arrays the forward/backward reuse.

    Called by the layer in ``reshape`` so that ``forward`` and ``backward``
    allocate nothing; the arrays are made again only when the shape changes.
    """
    n, c, inner = channel_shape(shape)
    shape = (n, c, inner)
    dtype = np.dtype(dtype)
    _buffers(workspace, shape, dtype, ("m", "r", "e", "u", "a", "tmp"))
    _zeros(workspace, shape, dtype)
    return workspace


def _weights(owner, pos_weight, neg_weight, balance, c, dtype):
    """Checked weights: ``w_p`` (scalar or (C,) array) and ``w_n`` (scalar); checks ``balance`` too."""
    if balance not in BALANCES:
        raise ValueError(f"{owner}: 'balance' must be one of {', '.join(BALANCES)}. "
                         f"Received: balance={balance!r}")
    wp = _weight(owner, "pos_weight", pos_weight, c, dtype)
    wn = _weight(owner, "neg_weight", neg_weight, 1, dtype)
    if not np.ndim(wn) == 0:
        wn = float(wn.reshape(()))
    return wp, wn


def weighted_sigmoid_cross_entropy_forward(scores, target, *, pos_weight=1.0, neg_weight=1.0,
                                           balance="none", ignore_label=None,
                                           normalization="BATCH_SIZE", owner=OWNER,
                                           workspace=None):
    """Sigmoid cross-entropy with positive / negative weights, from logits.

    Per element, with logit ``x``, target ``t`` in [0, 1], ``p = sigmoid(x)``::

        l = -[w_p t log(p) + w_n (1 - t) log(1 - p)]
          = w_p t softplus(-x) + w_n (1 - t) softplus(x)
          = w_n (1 - t) x + (w_p t + w_n (1 - t)) softplus(-x)

    since ``-log(sigmoid(x)) = softplus(-x)`` and ``-log(1 - sigmoid(x)) =
    softplus(x) = x + softplus(-x)``.  The loss is ``L = sum(l) / norm``.
    With ``w_p = w_n = 1`` this is exactly Caffe's ``SigmoidCrossEntropyLoss``;
    with ``w_n = 1`` it is PyTorch's ``BCEWithLogitsLoss(pos_weight=w_p)``.

    Stable form: ``softplus(+-x) = relu(+-x) + log1p(exp(-|x|))``.  ``exp``
    only sees ``-|x|`` (no overflow), both softplus terms are sums of
    non-negative parts (no cancellation), and the loss is two dot products of
    non-negative terms, ``w_n (1-t).softplus(x) + w_p t.softplus(-x)``.  Logits
    of +-1e4 give the exact values (e.g. ``1e4 * w_p`` for ``x = -1e4, t = 1``).
    One ``exp`` and one ``log1p`` per element; the sigmoid for the gradient
    comes from ``exp(-softplus(-x))``, already at hand.

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
      workspace: optional dict of reusable arrays (the layer keeps one and
        fills it in ``reshape``); None allocates.

    Returns:
      (loss, cache): a Python float and what the backward needs.  The arrays
      in ``cache`` live in ``workspace``: valid until the next call.

    Raises:
      ValueError naming ``owner`` for targets outside [0, 1] (other than the
      ignore label), negative weights, a weight list whose length is not C,
      counts that differ, or non-finite scores.

    Shape:
      scores: (N, C, *); target: same count (reshaped to ``scores.shape``);
      pos_weight: scalar or (C,); loss: scalar.

    Reference:
      BVLC Caffe ``SigmoidCrossEntropyLossLayer``; PyTorch
      ``BCEWithLogitsLoss`` (``pos_weight``); S. Xie and Z. Tu,
      "Holistically-Nested Edge Detection", ICCV 2015, eq. 2 (class balance).
    """
    x = np.asarray(scores)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    dtype = x.dtype
    common.check_same_count(owner, "scores", x.shape, "target", np.shape(target))
    t = np.asarray(target)
    if t.dtype != dtype:
        t = t.astype(dtype)
    x_in, t_in = x, t                               # error messages index these shapes
    n, c, inner = channel_shape(x.shape)
    shape = (n, c, inner)
    x = x.reshape(shape)
    t = t.reshape(shape)
    wp, wn = _weights(owner, pos_weight, neg_weight, balance, c, dtype)
    ignored = check_targets(owner, t_in, ignore_label)
    if ignored is not None:
        ignored = ignored.reshape(shape)

    # Algorithm (one exp, one log1p, the rest adds and dot products):
    #   m = min(x, 0), r = max(x, 0), e = exp(m - r) = exp(-|x|)
    #   lg = log1p(e); P = r + lg = softplus(x); Q = m - lg = -softplus(-x)
    #   L = w_n (1-t).P - w_p t.Q        (both dot products over >= 0 terms)
    M, R, E, U = _buffers(workspace, shape, dtype, ("m", "r", "e", "u"))
    zeros = _zeros(workspace, shape, dtype)        # np.minimum(x, array): 3x faster than (x, 0)
    np.minimum(x, zeros, out=M)                     # m = min(x, 0)
    np.subtract(x, M, out=R)                        # r = max(x, 0), exact
    np.subtract(M, R, out=E)                        # -|x|, exact (one of m, r is 0)
    np.exp(E, out=E)                                # e = exp(-|x|) in (0, 1]
    np.log1p(E, out=E)                              # lg = log(1 + exp(-|x|)) in [0, log 2]
    np.add(R, E, out=R)                             # P = softplus(x)
    np.subtract(M, E, out=M)                        # Q = -softplus(-x) = log(sigmoid(x))
    P, Q = R, M

    if ignored is not None:
        valid = ~ignored
        valid_count = int(np.count_nonzero(valid))
        T = E                                       # e is no longer needed
        np.multiply(t, valid, out=T)                # t, 0 where ignored
        np.subtract(valid, T, out=U)                # 1 - t, 0 where ignored
    else:
        valid_count = n * c * inner
        T = t
        np.subtract(1, t, out=U)                    # 1 - t

    norm = common.normalizer(normalization, n, c * inner, valid_count)
    if balance == "auto":
        # HED: per sample, positives weighted |Y-|/|Y|, negatives |Y+|/|Y|.
        pos = T.reshape(n, -1).sum(axis=1).astype(np.float64)     # pairwise sums: exact
        neg = U.reshape(n, -1).sum(axis=1).astype(np.float64)     # counts below 2^24
        tot = pos + neg
        safe = np.where(tot > 0, tot, 1.0)
        bp = np.where(tot > 0, neg / safe, 0.0).astype(dtype).reshape(n, 1, 1)
        bn = np.where(tot > 0, pos / safe, 0.0).astype(dtype).reshape(n, 1, 1)
        wp = bp * wp
        wn = bn * wn

    if ignored is None and np.ndim(wp) == 0 and np.ndim(wn) == 0:
        # Scalar weights, nothing ignored: the weights come out of the dot products.
        total = wn * float(np.dot(U.reshape(-1), P.reshape(-1))) \
            - wp * float(np.dot(T.reshape(-1), Q.reshape(-1)))
        cache = {"q": Q, "t": T, "u": U, "wp": wp, "wn": wn, "norm": norm, "shape": shape,
                 "out_shape": np.shape(scores), "dtype": dtype, "workspace": workspace}
    else:
        # Weight arrays (per channel and/or per sample, 0 where ignored):
        # a = w_p t, b = w_n (1 - t).
        A = _buffers(workspace, shape, dtype, ("a",))[0]
        np.multiply(T, wp, out=A)
        np.multiply(U, wn, out=U)
        total = float(np.dot(U.reshape(-1), P.reshape(-1))) - float(np.dot(A.reshape(-1), Q.reshape(-1)))
        cache = {"q": Q, "a": A, "b": U, "norm": norm, "shape": shape,
                 "out_shape": np.shape(scores), "dtype": dtype, "workspace": workspace}
    if not np.isfinite(total):
        common.check_finite(owner, "scores", x_in)
        raise ValueError(f"{owner}: the loss overflowed ({total}); the weights are too large")
    return total / norm, cache


def weighted_sigmoid_cross_entropy_backward(cache, *, scale=1.0, out=None):
    """Gradient of the loss w.r.t. the logits, times ``scale``.

    Derivation, per element: with ``d/dx softplus(-x) = -(1 - sigmoid(x))`` and
    ``d/dx softplus(x) = sigmoid(x)``::

        dl/dx = -w_p t (1 - p) + w_n (1 - t) p
              = (w_p t + w_n (1 - t)) p - w_p t

    so ``dL/dx = ((w_p t + w_n (1 - t)) p - w_p t) / norm``; 0 where the
    target is ignored.  With all weights 1 it is ``(p - t) / norm``, Caffe's.
    ``p = exp(-softplus(-x))``: in (0, 1], exact to a few ulps, 0 (not NaN)
    for ``x = -1e4``; so the gradient at +-1e4 is exactly ``-w_p t`` or
    ``w_n (1 - t)`` (over ``norm``).

    Args:
      cache: from :func:`weighted_sigmoid_cross_entropy_forward`.
      scale: a factor (the layer passes the loss weight from the top diff).
      out: array of the scores' shape to write into (the layer passes the
        bottom's diff); None uses the workspace or allocates.

    Returns:
      the gradient, shaped like the scores.

    Shape:
      out: the scores' shape.
    """
    shape, dtype, workspace = cache["shape"], cache["dtype"], cache["workspace"]
    if out is None:
        result = _buffers(workspace, shape, dtype, ("grad",))[0].reshape(cache["out_shape"])
    else:
        result = out
    g = result.reshape(shape)                       # a view: writes land in result
    k = float(scale) / cache["norm"]
    np.exp(cache["q"], out=g)                       # p = exp(log(sigmoid(x))) = sigmoid(x)
    if "a" in cache:
        a, b = cache["a"], cache["b"]
        tmp = _buffers(workspace, shape, dtype, ("tmp",))[0]
        np.add(a, b, out=tmp)                       # w_p t + w_n (1 - t)
        np.multiply(g, tmp, out=g)
        np.subtract(g, a, out=g)                    # (w_p t + w_n (1 - t)) p - w_p t
        np.multiply(g, k, out=g)
    else:
        t, wp, wn = cache["t"], cache["wp"], cache["wn"]
        if wp == wn:
            np.subtract(g, t, out=g)                # p - t
            np.multiply(g, wp * k, out=g)
        else:
            tmp = _buffers(workspace, shape, dtype, ("tmp",))[0]
            np.multiply(t, (wp - wn) * k, out=tmp)
            np.add(tmp, wn * k, out=tmp)            # (w_n + (w_p - w_n) t) k
            np.multiply(g, tmp, out=g)
            np.multiply(t, wp * k, out=tmp)
            np.subtract(g, tmp, out=g)              # ((w_p t + w_n (1 - t)) p - w_p t) k
    return result


class WeightedSigmoidCrossEntropy:
    """The weighted sigmoid cross-entropy prepared for one scores shape: what the layer runs.

    The same loss, gradient, checks and messages as
    :func:`weighted_sigmoid_cross_entropy_forward` and
    :func:`weighted_sigmoid_cross_entropy_backward`, with the per-call work cut
    to the arithmetic: the parameters are checked, the normalizer computed and
    every array allocated once, in the constructor (the layer builds one in
    ``reshape`` when the shape changes).  A forward is then ten NumPy calls on
    preallocated arrays and a backward three (five beyond 4096 elements).  At
    small sizes (N=32, C=10) the ~0.4 us each NumPy call costs, not the
    arithmetic, is the time.

    Fast path (``balance`` none, ``pos_weight`` a number or one per channel,
    no target equal to ``ignore_label``).  The weights are written
    ``w_p = F a``, ``w_n = F b`` with ``F = w_n`` and ``b = 1`` (``w_n = 0``:
    ``b = 0``), and rows are stacked so that one call covers both::

        tu = [a t, b (1 - t)]                 one multiply (a copy if a = 1), one
                                              subtract; a < 1, per-channel a and
                                              b = 0 are applied after the check
        min(tu) >= 0                          the range check: one argmin (it
                                              stops at a NaN, which fails too);
                                              a > 1 keeps every sign: exact
        m = min(x, 0), nr = m - x = -max(x, 0), e = m + nr = -|x|   (all exact)
        lg = log1p(exp(e))                    the only transcendentals
        [lp, lq] = [m, nr] - lg = [log p, log(1 - p)]       both <= 0
        L = -F tu.[lp, lq] / norm             one dot product of terms >= 0:
                                              -(w_p t log p + w_n (1 - t) log(1 - p))

    and the backward, with ``k = scale / norm``, up to 4096 elements::

        h = exp([lp, lq]) * [b (1 - t), a t] = [b (1 - t) p, a t (1 - p)]
        g = [F k, -F k] . h                   one gemv: k (w_n (1 - t) p - w_p t (1 - p))

    and beyond (one exp per element, not two, and no BLAS: OpenBLAS threads a
    gemv that large, and in a Caffe process its threads wait for milliseconds
    on those of Caffe's own OpenBLAS)::

        g = F k ((a t + b (1 - t)) exp(lp) - a t)     = k ((w_p t + w_n (1 - t)) p - w_p t)

    An ``ignore_label`` outside [0, 1] fails the range check wherever it
    occurs, so the fast path never sees it: such a call, ``balance: auto``,
    an ``ignore_label`` of 0 or 1, and every bad input go to the general
    functions (with a kept workspace), which raise the detailed errors.

    Args:
      shape: the scores' shape (N, C, *); the target must hold as many values.
      dtype: the scores' dtype (float32 in a net, float64 for exact checks).
      pos_weight, neg_weight, balance, ignore_label, normalization, owner: as
        :func:`weighted_sigmoid_cross_entropy_forward`; checked here.

    Raises:
      ValueError naming ``owner`` for bad weights, balance or normalization.
    """

    def __init__(self, shape, dtype=np.float32, *, pos_weight=1.0, neg_weight=1.0, balance="none",
                 ignore_label=None, normalization="BATCH_SIZE", owner=OWNER):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype = np.dtype(dtype)
        self.owner = owner
        n, c, inner = channel_shape(self.shape)
        self.size = size = n * c * inner
        wp, wn = _weights(owner, pos_weight, neg_weight, balance, c, dtype)
        self._norm = common.normalizer(normalization, n, c * inner, size)   # nothing ignored
        self._params = {"pos_weight": pos_weight, "neg_weight": neg_weight, "balance": balance,
                        "ignore_label": ignore_label, "normalization": normalization}
        self._workspace = {}          # the general path's arrays
        self._cache = None            # the general path's cache; None after a fast forward
        self._ready = False           # a forward has run
        self._fast = (balance == "none" and size > 0
                      and (ignore_label is None or not 0 <= ignore_label <= 1))
        if not self._fast:
            return
        # w_p = F a, w_n = F b, F = w_n when > 0 (then b = 1).  a_in (> 1 or
        # None) scales t as it is copied: that cannot turn a negative target
        # into -0 or a NaN into a number, so the check still sees every bad
        # value.  a_post / b_post (None: 1) are applied after the check.
        factor = wn if wn > 0 else (float(wp) if np.ndim(wp) == 0 and wp > 0 else 1.0)
        a = wp / factor
        if not np.all(a <= float(np.finfo(dtype).max)):     # w_p / w_n beyond the dtype: general path
            self._fast = False
            return
        b_post = None if wn > 0 else np.zeros((), dtype)
        a_in = a_post = None
        if np.ndim(a) > 0:
            a_post = a.astype(dtype)                     # per channel, (1, C, 1)
        elif a > 1:
            a_in = np.full((), a, dtype)                 # 0-d arrays: cheaper than Python floats
        elif a < 1:
            a_post = np.full((), a, dtype)
        # Rows [b (1 - t), a t, b (1 - t)]: the forward dots [a t, b (1 - t)]
        # with [log p, log(1 - p)], the backward multiplies [b (1 - t), a t]
        # by [p, 1 - p]; both contiguous (a reversed view costs 2x the call).
        utu = np.empty((3, size), dtype)
        lpq = np.empty((2, size), dtype)                 # [log p, log(1 - p)]
        small = size <= _GEMV_MAX
        # np.minimum(x, array) is 3x faster than np.minimum(x, 0); beyond the
        # gemv size one sample's row of zeros, broadcast (it stays in cache).
        row = size if small else size // n
        zeros = np.zeros(row, dtype)
        zeros.flags.writeable = False
        u0, t, u = utu
        # Unpacked in one go by the calls (attribute lookups add up at small sizes).
        self._fwd = (t, u, u0 if small else None, utu[1:].reshape(-1), lpq, lpq.reshape(-1),
                     np.ones((), dtype), zeros, (size // row, row), np.empty(size, dtype), a_in, a_post,
                     t.reshape(n, c, inner), b_post, factor)
        self._bwd = (t, u, utu[:2], lpq, np.empty((2, size), dtype), np.empty(2, dtype), factor, small)
        self._grad = None

    def forward(self, scores, target):
        """The loss (a Python float) for ``scores`` of the prepared shape and ``target``.

        Raises:
          ValueError as :func:`weighted_sigmoid_cross_entropy_forward`.
        """
        if scores.size != self.size:
            raise ValueError(f"{self.owner}: bottom 'scores' {tuple(scores.shape)} does not have the "
                             f"{self.size} values of the prepared shape {self.shape}")
        if target.size != self.size:
            common.check_same_count(self.owner, "scores", scores.shape, "target", target.shape)
        self._ready = True
        if self._fast:
            t, u, u0, tu, lpq, lpq_flat, one, zeros, rows, e, a_in, a_post, t3, b_post, factor = self._fwd
            tf = target.ravel()
            if a_in is None:
                t[...] = tf
            else:
                _multiply(tf, a_in, t)                  # a t, a > 1: signs (and NaN) kept
            _subtract(one, tf, u)                       # 1 - t
            if tu[tu.argmin()] >= 0:                    # False for NaN: argmin stops at the first
                self._cache = None
                if a_post is not None:
                    _multiply(t3, a_post, t3)           # a t (per channel, or a < 1)
                if b_post is not None:
                    _multiply(u, b_post, u)             # b (1 - t), b = 0
                if u0 is not None:
                    u0[...] = u                         # the gemv backward's copy
                x = scores.ravel()
                if x.dtype != self.dtype:
                    x = x.astype(self.dtype)
                lp, lq = lpq
                if u0 is not None:
                    _minimum(x, zeros, out=lp)          # m = min(x, 0)
                else:
                    _minimum(x.reshape(rows), zeros, out=lp.reshape(rows))
                _subtract(lp, x, lq)                    # -r = m - x = -max(x, 0), exact
                _add(lp, lq, e)                         # -|x| = m - r, exact (one of them is 0)
                _exp(e, e)                              # exp(-|x|) in (0, 1]: no overflow
                _log1p(e, e)                            # lg = log(1 + exp(-|x|)) in [0, log 2]
                _subtract(lpq, e, lpq)                  # [m - lg, -r - lg] = [log p, log(1 - p)]
                total = -factor * float(_vdot(tu, lpq_flat)) + 0.0      # + 0.0: no -0.0
                if not math.isfinite(total):
                    common.check_finite(self.owner, "scores", scores)
                    raise ValueError(f"{self.owner}: the loss overflowed ({total}); the weights "
                                     f"are too large")
                return total / self._norm
            if self._params["ignore_label"] is None:
                check_targets(self.owner, target)       # raises, naming the value and index
        value, self._cache = weighted_sigmoid_cross_entropy_forward(
            scores, target, owner=self.owner, workspace=self._workspace, **self._params)
        return value

    def backward(self, scale=1.0, out=None):
        """The gradient w.r.t. the scores of the last forward, times ``scale``.

        Args:
          scale: a factor (the layer passes the loss weight from the top diff).
          out: an array of the prepared size to write into (the layer passes
            the bottom's diff); None: an array kept here.

        Returns:
          the gradient, ``out`` or shaped like the scores.
        """
        if self._cache is not None:
            return weighted_sigmoid_cross_entropy_backward(self._cache, scale=scale, out=out)
        if not self._ready:
            raise RuntimeError(f"{self.owner}: backward before forward")
        if out is None:
            if self._grad is None:
                self._grad = np.empty(self.shape, self.dtype)
            out = self._grad
        if out.dtype != self.dtype or not out.flags.c_contiguous:
            out[...] = self.backward(scale).reshape(out.shape)
            return out
        at, bu, ut, lpq, h, coef, factor, small = self._bwd
        g = out.ravel()                                 # a view (C-contiguous): writes land in out
        fk = factor * float(scale) / self._norm
        if small:
            coef[0] = fk
            coef[1] = -fk
            _exp(lpq, h)                                # [p, 1 - p]: 0, not NaN, at +-1e4
            _multiply(h, ut, h)                         # [b (1 - t) p, a t (1 - p)]
            _dot(coef, h, out=g)                        # F k (b (1 - t) p - a t (1 - p))
            return out
        h0 = h[0]
        _exp(lpq[0], g)                                 # p = exp(log p)
        _add(at, bu, h0)                                # a t + b (1 - t)
        _multiply(g, h0, g)
        _subtract(g, at, g)                             # (a t + b (1 - t)) p - a t
        _multiply(g, fk, g)
        return out


def count_targets(target, *, ignore_label=None, owner="count_targets"):
    """Positives and negatives per channel (axis 1) of a target array.

    ``pos_c = sum t`` and ``neg_c = sum (1 - t)`` over every axis but 1,
    leaving out elements equal to ``ignore_label`` (counts for 0/1 targets,
    expected counts for soft targets).  A 1-D array is one channel.

    Returns:
      (pos, neg): float64 arrays of shape (C,).
    """
    t = np.asarray(target, dtype=np.float64)
    ignored = check_targets(owner, t, ignore_label, name="labels")
    n, c, inner = channel_shape(t.shape)
    t = t.reshape(n, c, inner)
    if ignored is not None:
        ignored = ignored.reshape(n, c, inner)
    if ignored is not None:
        valid = ~ignored
        pos = np.where(valid, t, 0).sum(axis=(0, 2))
        neg = np.where(valid, 1 - t, 0).sum(axis=(0, 2))
    else:
        pos = t.sum(axis=(0, 2))
        neg = (1 - t).sum(axis=(0, 2))
    return pos, neg


def pos_weight_from_counts(pos, neg, *, max_weight=None):
    """PyTorch's ``pos_weight = neg / pos`` per channel.

    Args:
      pos, neg: per-channel counts (from :func:`count_targets`).
      max_weight: cap on each weight, also used for a channel with no
        positive; None: such a channel is an error.

    Returns:
      float64 array (C,).

    Raises:
      ValueError naming the channels with no positive when ``max_weight`` is None.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    empty = pos <= 0
    if empty.any() and max_weight is None:
        chans = ", ".join(str(int(i)) for i in np.flatnonzero(empty)[:10])
        raise ValueError(f"channel(s) {chans} have no positive target: neg/pos is infinite; "
                         f"give a max_weight to use for them")
    w = np.divide(neg, np.where(empty, 1.0, pos))
    if max_weight is not None:
        w = np.where(empty, max_weight, np.minimum(w, max_weight))
    return w
