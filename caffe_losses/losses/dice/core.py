"""NumPy core of the Dice loss (``DiceLoss``): soft Dice of softmax or sigmoid probabilities.

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net); the sums are taken in float64.

Reference (the specification; docs and tests point here):

* :func:`dice_forward` / :func:`dice_backward`: the loss and its gradient
  with respect to the logits.

Kernel (same inputs and results; held to the reference by ``tests/test_dice_kernel.py``):

* :func:`dice_softmax_kernel` / :func:`dice_softmax_kernel_backward`: the
  softmax form without the one-hot array, in workspace arrays.
* :func:`dice_sigmoid_kernel` / :func:`dice_sigmoid_kernel_backward`: the
  sigmoid form in workspace arrays.

Helpers (the layer's ``reshape`` calls them too):

* :func:`check_shapes`: the scores / label shapes and the settings that
  depend on them (C >= 2 for softmax, one weight per class, a class left
  when the background is dropped).
* :func:`spatial_shape`: a scores blob as (N, C, M).

Notation.  Scores ``x`` (N, C, M) (M: the positions, the product of the
spatial axes), probabilities ``p`` (softmax over the classes, or a sigmoid
per element), one-hot ground truth ``g`` (softmax: ``g_ncm = [y_nm == c]``;
sigmoid: the label itself, 0 or 1), valid mask ``v`` (0 where the label is
``ignore_label``: such positions leave every sum, ``p`` included), ``k = 2``
when ``squared`` else 1.  Per sample ``n`` and class ``c``::

    I_nc = sum_m v p g          P_nc = sum_m v p^k          G_nc = sum_m v g^k (= sum g)

``batch: true`` sums these over ``n`` too (one row instead of N);
``include_background: false`` drops class 0.  With ``s = smooth`` > 0:

* ``weights: none`` (MONAI ``DiceLoss``): a Dice per row and class, then the
  mean over the K = rows x classes terms::

      D_nc = (2 I_nc + s) / (P_nc + G_nc + s)        L = 1 - mean_{n,c} D_nc

* ``weights: generalized`` (Sudre et al. 2017, MONAI ``GeneralizedDiceLoss``)
  or a list of C weights: one ratio per row, pooled over the classes, then
  the mean over the rows::

      R_n = (2 sum_c w_nc I_nc + s) / (sum_c w_nc (P_nc + G_nc) + s)      L = 1 - mean_n R_n

  generalized: ``w_nc = 1 / G_nc^2``; a class absent from the row (``G_nc =
  0``) gets the largest weight of the row's present classes, as MONAI does
  (not inf); a row without any class present gets all weights 0 (then ``R =
  s / s = 1``).  The weights depend on the labels only: constants for the
  gradient.  A list: the same fixed ``w_c`` in every row.

Gradient.  Write a ratio as ``A / B`` (``A = 2 I + s`` or ``2 sum w I + s``,
``B = P + G + s`` or ``sum w (P + G) + s``).  Since ``dI/dp_m = v g_m`` and
``dP/dp_m = v k p_m^(k-1)``::

    d(A/B)/dp_ncm = w_nc (2 g_ncm B - A k p_ncm^(k-1)) / B^2
                  = (w_nc / B) (2 g_ncm - (A/B) k p_ncm^(k-1)) v

(``w = 1``, ``A, B`` per (n, c) for ``weights: none``; per row otherwise),
and ``L = 1 - (1/K) sum ratio``, so with ``alpha = w / (K B)`` and ``ratio =
A/B``::

    q_ncm = dL/dp_ncm = -alpha_nc (2 g_ncm - ratio_nc k p_ncm^(k-1)) v_ncm

(0 for a dropped class and at ignored positions).  Through the activation:

* softmax over c: ``dL/dx_ncm = p_ncm (q_ncm - sum_c' p_nc'm q_nc'm)``;
* sigmoid: ``dL/dx = q p (1 - p)``, with ``1 - p = sigmoid(-x)`` (exact, no
  cancellation);
* none (``scores`` are probabilities already, e.g. the top of a Softmax layer,
  as in V-Net's nets; values outside [0, 1] are refused): ``p = x``,
  ``dL/dx = q``, and Caffe's Softmax layer carries it on.

Stability.  ``B >= s > 0`` (``smooth`` must be > 0), so no ratio divides by
zero, and a class absent from a sample gives ``D = s / (P + s)`` and a finite
gradient.  The softmax is max-shifted and the sigmoid written with
``exp(-|x|)``: logits of +-1e4 give probabilities of exactly 0 or 1, finite
sums, ratios in [0, 1] and finite gradients (a saturated probability has
``p (1 - p) = 0``, or a softmax Jacobian of 0).  There is no ``log`` and no
power below 1.

Reference: F. Milletari, N. Navab, S.-A. Ahmadi, "V-Net", 3DV 2016 (the
squared denominator); C. H. Sudre et al., "Generalised Dice overlap as a deep
learning loss function for highly unbalanced segmentations", DLMIA 2017;
MONAI ``monai.losses.DiceLoss`` / ``GeneralizedDiceLoss`` (smooth, batch,
include_background, the weight of an absent class).
"""

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from caffe_losses.losses import common

__all__ = ["dice_forward", "dice_backward", "dice_softmax_kernel", "dice_softmax_kernel_backward",
           "dice_sigmoid_kernel", "dice_sigmoid_kernel_backward",
           "check_shapes", "spatial_shape", "ACTIVATIONS",
           "WEIGHTINGS"]

OWNER = "dice"
ACTIVATIONS = ("softmax", "sigmoid", "none")
WEIGHTINGS = ("none", "generalized")


# ---------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------

@dataclass
class DiceCache:
    """What the backward needs.

    Attributes:
      prob: (N, C, M) probabilities.
      gt: (N, C, M) one-hot ground truth (0 at ignored positions).
      valid: (N, 1, M) or (N, C, M) mask, or the number 1 when nothing is ignored.
      alpha: ``w / (K B)``, (rows, C, 1) (0 for a dropped class), in the input dtype.
      ratio: ``A / B``, (rows, C, 1) or (rows, 1, 1), in the input dtype.
      power: ``k``, 1 or 2.
      activation: "softmax", "sigmoid" or "none".
      scores: the logits (N, C, M), for ``1 - p = sigmoid(-x)``.
      shape: the scores' shape.
    """

    prob: np.ndarray
    gt: np.ndarray
    valid: Union[np.ndarray, int]
    alpha: np.ndarray
    ratio: np.ndarray
    power: int
    activation: str
    scores: np.ndarray
    shape: tuple


def dice_forward(scores, label, *, activation="softmax", smooth=1e-5, squared=False, weights="none",
                 batch=False, include_background=True, ignore_label=None, owner=OWNER):
    """Soft Dice loss from logits (formulas: the module docstring).

    Args:
      scores: logits (N, C, *spatial).
      label: softmax: N * prod(spatial) class indices in [0, C) or
        ``ignore_label`` (e.g. (N, 1, *spatial)); sigmoid: the scores' count,
        values 0 or 1 or ``ignore_label``.
      activation: "softmax" (over axis 1, C >= 2), "sigmoid" (per element) or "none"
        (``scores`` are already probabilities, e.g. a Softmax layer's top: C >= 2,
        labels as for softmax, values in [0, 1]).
      smooth: ``s`` > 0, added to every numerator and denominator.
      squared: V-Net's ``sum p^2 + sum g^2`` denominator.
      weights: "none", "generalized" or a list of C weights >= 0.
      batch: pool the sums over the samples (one Dice per class).
      include_background: False drops class 0 (C >= 2 needed).
      ignore_label: label value left out of every sum, or None.
      owner: the name that error messages start with.

    Returns:
      (loss, cache): a Python float in [0, 1] and a :class:`DiceCache`.

    Shape:
      scores (N, C, *); label as above; weights (C,); loss scalar.
    """
    x, g, valid, n, c, wlist = _inputs(owner, scores, label, activation, weights, include_background,
                                       ignore_label)
    if activation == "softmax":
        p = common.softmax(x, axis=1)
    elif activation == "sigmoid":
        p = common.sigmoid(x)
    else:
        p = _check_probabilities(owner, x, scores)
    k = 2 if squared else 1
    pv = p * valid if isinstance(valid, np.ndarray) else p
    inter = np.einsum("ncm,ncm->nc", pv, g, dtype=np.float64)          # I = sum v p g
    psum = (np.einsum("ncm,ncm->nc", pv, p, dtype=np.float64) if k == 2
            else pv.sum(axis=2, dtype=np.float64))                    # P = sum v p^k
    gsum = g.sum(axis=2, dtype=np.float64)                            # G = sum g (g is 0/1)
    loss, alpha, ratio = _ratios(owner, scores, inter, psum, gsum, smooth=smooth, weights=weights,
                                 wlist=wlist, batch=batch, include_background=include_background)
    return loss, DiceCache(p, g, valid, alpha.astype(x.dtype), ratio.astype(x.dtype), k, activation,
                           x, np.shape(scores))


def dice_backward(cache, *, scale=1.0, out=None):
    """Gradient of the loss w.r.t. the logits, times ``scale`` (derivation: the module docstring).

    Args:
      cache: from :func:`dice_forward`.
      scale: a factor (the layer passes the loss weight from the top diff).
      out: optional C-contiguous array of the scores' count to write into.

    Returns:
      the gradient shaped like the scores, or ``out`` itself when given.
    """
    p, k = cache.prob, cache.power
    pk = cache.ratio * (2 * p if k == 2 else 1)                       # ratio k p^(k-1)
    q = (pk - 2 * cache.gt) * cache.alpha * scale                     # dL/dp, scaled
    if isinstance(cache.valid, np.ndarray):
        q *= cache.valid
    g = common.out_view(out, p.shape, p.dtype)
    if cache.activation == "softmax":
        np.subtract(q, (p * q).sum(axis=1, keepdims=True), out=g)
        g *= p
    elif cache.activation == "none":
        g[...] = q
    else:
        np.multiply(q, p, out=g)
        g *= common.sigmoid(-cache.scores)                            # 1 - p, exact
    return out if out is not None else g.reshape(cache.shape)


# ---------------------------------------------------------------------------
# Kernels: the softmax form in fewer passes, without the one-hot array; the sigmoid form in place
# ---------------------------------------------------------------------------

@dataclass
class DiceSoftmaxKernelCache:
    """What :func:`dice_softmax_kernel_backward` needs (arrays of the workspace: valid until the next call).

    Attributes:
      prob: (N, C, M) softmax probabilities.
      label: (N, 1, M) int64 labels (0 where ignored).
      valid: (N, 1, M) mask in the input dtype, or None when nothing is ignored.
      alpha, ratio: as :class:`DiceCache`'s, (rows, C, 1).
      power: ``k``.
      shape: the scores' shape.
    """

    prob: np.ndarray
    label: np.ndarray
    valid: Union[np.ndarray, None]
    alpha: np.ndarray
    ratio: np.ndarray
    power: int
    shape: tuple


def dice_softmax_kernel(scores, label, *, activation="softmax", smooth=1e-5, squared=False,
                        weights="none", batch=False, include_background=True, ignore_label=None,
                        owner=OWNER, workspace=None):
    """Kernel: :func:`dice_forward` for ``activation: softmax`` with fewer passes over (N, C, M).

    The same inputs, checks and loss.  The sums need no one-hot array: with
    ``p_y`` the probability of each position's own class (a gather),
    ``I_nc = sum_{m: y = c} v p_y`` and ``G_nc = |{m: y = c, v}|`` are
    bincounts over (n, y), and ``P = sum v p^k`` one reduction.  The softmax
    is written in place in a workspace array.
    """
    if activation != "softmax":
        raise ValueError(f"{owner}: dice_softmax_kernel computes activation softmax only. "
                         f"Received: activation={activation!r}")
    ws = common.Workspace() if workspace is None else workspace
    x, y, valid, n, c, m, wlist = _kernel_inputs(owner, scores, label, weights, include_background,
                                                 ignore_label)
    p = ws.array("prob", x.shape, x.dtype)
    np.subtract(x, x.max(axis=1, keepdims=True), out=p)
    np.exp(p, out=p)
    p *= 1 / p.sum(axis=1, keepdims=True)                             # softmax, max-shifted
    p_y = np.take_along_axis(p, y, axis=1)                            # (N, 1, M)
    index = (np.arange(n).reshape(n, 1, 1) * c + y).reshape(-1)       # (n, y) as one index
    k = 2 if squared else 1
    if valid is None:
        inter = np.bincount(index, weights=p_y.reshape(-1), minlength=n * c)
        gsum = np.bincount(index, minlength=n * c).astype(np.float64)
        psum = (np.einsum("ncm,ncm->nc", p, p, dtype=np.float64) if k == 2
                else p.sum(axis=2, dtype=np.float64))
    else:
        kept = valid.reshape(-1) > 0
        inter = np.bincount(index[kept], weights=p_y.reshape(-1)[kept], minlength=n * c)
        gsum = np.bincount(index[kept], minlength=n * c).astype(np.float64)
        psum = (np.einsum("ncm,ncm,nim->nc", p, p, valid, dtype=np.float64) if k == 2
                else np.einsum("ncm,nim->nc", p, valid, dtype=np.float64))
    loss, alpha, ratio = _ratios(owner, scores, inter.reshape(n, c), psum, gsum.reshape(n, c),
                                 smooth=smooth, weights=weights, wlist=wlist, batch=batch,
                                 include_background=include_background)
    return loss, DiceSoftmaxKernelCache(p, y, valid, alpha.astype(x.dtype), ratio.astype(x.dtype), k,
                                        np.shape(scores))


def dice_softmax_kernel_backward(cache, *, scale=1.0, out=None, workspace=None):
    """Gradient of :func:`dice_softmax_kernel`'s loss w.r.t. the logits, times ``scale``.

    ``q = alpha (ratio k p^(k-1) - 2 g)`` is formed without ``g``: the class
    term everywhere, then ``-2 alpha_y`` at each position's own class (a
    scatter over (N, 1, M)); masked at ignored positions; then the softmax
    Jacobian ``p (q - sum_c p q)`` (the reference's formula, fewer passes).
    """
    ws = common.Workspace() if workspace is None else workspace
    p, y, k = cache.prob, cache.label, cache.power
    q = ws.array("q", p.shape, p.dtype)
    ar = cache.alpha * cache.ratio * (scale * k)                      # (rows, C, 1)
    if k == 2:
        np.multiply(p, ar, out=q)                                     # alpha ratio 2 p
    else:
        q[...] = ar
    alpha = np.broadcast_to(cache.alpha * (2 * scale), (p.shape[0],) + cache.alpha.shape[1:])
    q_y = np.take_along_axis(q, y, axis=1)
    q_y -= _gather_classes(np.ascontiguousarray(alpha), y)
    np.put_along_axis(q, y, q_y, axis=1)                              # - 2 alpha_y at the label's class
    if cache.valid is not None:
        q *= cache.valid
    g = common.out_view(out, p.shape, p.dtype)
    s = np.einsum("ncm,ncm->nm", p, q)[:, None, :]                    # sum_c p q
    np.subtract(q, s, out=g)
    g *= p
    return out if out is not None else g.reshape(cache.shape)


@dataclass
class DiceSigmoidKernelCache:
    """What :func:`dice_sigmoid_kernel_backward` needs (arrays of the workspace: valid until the next call).

    Attributes:
      prob: (N, C, M) ``p = sigmoid(x)``.
      small, big: ``sigmoid(-|x|)`` and ``sigmoid(|x|)``: ``p (1 - p)`` is their product.
      target: (N, C, M) labels, 0 where ignored.
      valid: (N, C, M) mask in the input dtype, or None when nothing is ignored.
      alpha, ratio, power, shape: as :class:`DiceSoftmaxKernelCache`'s.
    """

    prob: np.ndarray
    small: np.ndarray
    big: np.ndarray
    target: np.ndarray
    valid: Union[np.ndarray, None]
    alpha: np.ndarray
    ratio: np.ndarray
    power: int
    shape: tuple


def dice_sigmoid_kernel(scores, label, *, activation="sigmoid", smooth=1e-5, squared=False,
                        weights="none", batch=False, include_background=True, ignore_label=None,
                        owner=OWNER, workspace=None):
    """Kernel: :func:`dice_forward` for ``activation: sigmoid``, in workspace arrays.

    The same inputs, checks and loss.  ``e = exp(-|x|)``, ``big = 1 / (1 + e)
    = sigmoid(|x|)``, ``small = e big = sigmoid(-|x|)``: ``p`` is ``big`` where
    ``x >= 0`` and ``small`` elsewhere, and ``p (1 - p) = small big`` for the
    backward, whatever the sign.  No fresh full-size array per call (the
    reference's temporaries cost page faults every iteration).
    """
    if activation != "sigmoid":
        raise ValueError(f"{owner}: dice_sigmoid_kernel computes activation sigmoid only. "
                         f"Received: activation={activation!r}")
    ws = common.Workspace() if workspace is None else workspace
    wlist = _weight_list(owner, weights)
    x = np.asarray(scores)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    label = np.asarray(label)
    n, c, m = check_shapes(owner, x.shape, label.shape, activation="sigmoid",
                           weights=weights if wlist is None else wlist,
                           include_background=include_background)
    x = x.reshape(n, c, m)
    t = label.reshape(n, c, m)
    valid = None
    if ignore_label is not None:
        ignored = np.equal(t, ignore_label, out=ws.array("ignored", t.shape, np.dtype(bool)))
        if ignored.any():
            valid = np.logical_not(ignored, out=ws.array("valid", t.shape, x.dtype))
            t = np.where(ignored, 0, t)
    if not (t.min() >= 0 and t.max() <= 1 and np.count_nonzero(t) == np.count_nonzero(t == 1)):
        _inputs(owner, scores, label, "sigmoid", weights, include_background, ignore_label)  # raises
    if t.dtype != x.dtype:
        t = t.astype(x.dtype)
    e = np.abs(x, out=ws.array("small", x.shape, x.dtype))
    np.negative(e, out=e)
    np.exp(e, out=e)                                                  # exp(-|x|), never overflows
    big = np.add(e, 1, out=ws.array("big", x.shape, x.dtype))
    np.reciprocal(big, out=big)                                       # sigmoid(|x|)
    small = np.multiply(e, big, out=e)                                # sigmoid(-|x|)
    p = ws.array("prob", x.shape, x.dtype)
    np.copyto(p, small)
    np.copyto(p, big, where=x >= 0)                                   # sigmoid(x)
    k = 2 if squared else 1
    inter = np.einsum("ncm,ncm->nc", p, t, dtype=np.float64)          # t is 0 where ignored
    gsum = t.sum(axis=2, dtype=np.float64)
    if valid is None:
        psum = (np.einsum("ncm,ncm->nc", p, p, dtype=np.float64) if k == 2
                else p.sum(axis=2, dtype=np.float64))
    else:
        psum = (np.einsum("ncm,ncm,ncm->nc", p, p, valid, dtype=np.float64) if k == 2
                else np.einsum("ncm,ncm->nc", p, valid, dtype=np.float64))
    loss, alpha, ratio = _ratios(owner, scores, inter, psum, gsum, smooth=smooth, weights=weights,
                                 wlist=wlist, batch=batch, include_background=include_background)
    return loss, DiceSigmoidKernelCache(p, small, big, t, valid, alpha.astype(x.dtype),
                                        ratio.astype(x.dtype), k, np.shape(scores))


def dice_sigmoid_kernel_backward(cache, *, scale=1.0, out=None, workspace=None):
    """Gradient of :func:`dice_sigmoid_kernel`'s loss w.r.t. the logits, times ``scale``:
    ``q p (1 - p)`` with ``q = alpha (ratio k p^(k-1) - 2 t)``, 0 where ignored."""
    ws = common.Workspace() if workspace is None else workspace
    p, k = cache.prob, cache.power
    q = ws.array("q", p.shape, p.dtype)
    ar = cache.alpha * cache.ratio * (scale * k)
    if k == 2:
        np.multiply(p, ar, out=q)
    else:
        q[...] = ar
    tmp = np.multiply(cache.target, cache.alpha * (2 * scale), out=ws.array("tmp", p.shape, p.dtype))
    q -= tmp
    if cache.valid is not None:
        q *= cache.valid
    g = common.out_view(out, p.shape, p.dtype)
    np.multiply(q, cache.small, out=g)
    g *= cache.big                                                    # p (1 - p), exact
    return out if out is not None else g.reshape(cache.shape)


def _gather_classes(per_class, y):
    """``per_class[n, y_nm]`` as (N, 1, M), for ``per_class`` (N, C, 1) and labels ``y`` (N, 1, M)."""
    n, c = per_class.shape[:2]
    return per_class.reshape(n * c)[np.arange(n).reshape(n, 1, 1) * c + y]


# ---------------------------------------------------------------------------
# Helpers: checked inputs, the ratios from the sums, the generalized weights, the shape checks
# ---------------------------------------------------------------------------

def _ratios(owner, scores, inter, psum, gsum, *, smooth, weights, wlist, batch, include_background):
    """``(loss, alpha, ratio)`` from the (N, C) float64 sums (formulas: the module docstring).

    ``alpha = w / (K B)`` and ``ratio = A / B`` come back as (rows, C, 1), 0
    for a dropped class; a non-finite loss raises, naming the scores.
    """
    if batch:
        inter, psum, gsum = (a.sum(axis=0, keepdims=True) for a in (inter, psum, gsum))
    first = 0 if include_background else 1
    inter, psum, gsum = inter[:, first:], psum[:, first:], gsum[:, first:]
    if wlist is None and weights == "none":
        b = psum + gsum + smooth
        ratio = (2 * inter + smooth) / b                              # D per row and class
        alpha = 1.0 / (ratio.size * b)                                # w = 1
        ratio_full = ratio
    else:
        w = _generalized_weights(gsum) if wlist is None else wlist[first:][None, :]
        b = (w * (psum + gsum)).sum(axis=1, keepdims=True) + smooth
        ratio = (2 * (w * inter).sum(axis=1, keepdims=True) + smooth) / b    # R per row
        alpha = w / (ratio.shape[0] * b)
        ratio_full = np.broadcast_to(ratio, alpha.shape)
    loss = 1.0 - float(ratio.mean())
    if not math.isfinite(loss):
        common.raise_non_finite(owner, loss, [("bottom 'scores'", scores)])
    alpha = np.pad(alpha, ((0, 0), (first, 0)))                       # 0 for a dropped class
    ratio_full = np.pad(ratio_full, ((0, 0), (first, 0)))
    return loss, alpha[:, :, None], ratio_full[:, :, None]


def _generalized_weights(gsum):
    """``1 / G^2`` per row and class; an absent class gets the row's largest present weight (MONAI)."""
    present = gsum > 0
    w = np.where(present, 1.0 / np.where(present, gsum, 1.0) ** 2, 0.0)
    return np.where(present, w, w.max(axis=1, keepdims=True))


def _check_probabilities(owner, x, scores):
    """``x`` itself when every value lies in [0, 1] (``activation: none``); else a ValueError naming the first."""
    if x.size and x.min() >= 0 and x.max() <= 1:         # False for NaN
        return x
    bad = ~((x >= 0) & (x <= 1))
    idx = common.first_bad_index(bad.reshape(np.shape(scores)))       # of the bottom's own shape
    raise ValueError(f"{owner}: bottom 'scores' holds {float(np.asarray(scores)[idx])} at index {idx}; "
                     f"activation none expects probabilities in [0, 1] (a Softmax layer's output); "
                     f"for raw scores use activation: softmax ({int(bad.sum())} bad value(s))")


def spatial_shape(shape):
    """``(N, C, M)`` of a scores blob: samples, classes (axis 1), positions (the rest)."""
    shape = tuple(int(s) for s in shape)
    return shape[0], shape[1], math.prod(shape[2:])


def check_shapes(owner, scores_shape, label_shape, *, activation="softmax", weights="none",
                 include_background=True, scores_name="scores"):
    """Raises ValueError unless the bottoms and the settings fit; returns ``(N, C, M)``.

    The one check of shapes (the layer calls it in ``reshape``, the core on
    every call): scores have at least 2 axes; softmax needs C >= 2 and one
    label per position (N * M values, N first); sigmoid one label per score;
    a weight list holds C weights; ``include_background: false`` leaves a class.
    """
    scores_shape, label_shape = tuple(scores_shape), tuple(label_shape)
    if len(scores_shape) < 2:
        raise ValueError(f"{owner}: bottom '{scores_name}' {scores_shape} must have at least 2 axes "
                         f"(N, C, spatial...): classes on axis 1")
    n, c, m = spatial_shape(scores_shape)
    if activation != "sigmoid":
        if c < 2:
            raise ValueError(f"{owner}: activation {activation} needs at least 2 classes on axis 1 of "
                             f"bottom '{scores_name}' {scores_shape}; use activation: sigmoid for "
                             f"one channel")
        count = math.prod(label_shape)
        if count != n * m or (label_shape and label_shape[0] != n):
            raise ValueError(f"{owner}: bottom 'label' must hold one class index per position of "
                             f"'{scores_name}' {scores_shape}: expected {n * m} values, N = {n} "
                             f"first (e.g. {(n, 1) + scores_shape[2:]}), got {count} {label_shape}")
    else:
        common.check_same_count(owner, scores_name, scores_shape, "label", label_shape)
        if label_shape and label_shape[0] != n:
            raise ValueError(f"{owner}: bottom 'label' must have the N of '{scores_name}' "
                             f"{scores_shape}: expected {n} samples, got {label_shape[0]} {label_shape}")
    if isinstance(weights, (list, tuple, np.ndarray)) and len(weights) != c:
        raise ValueError(f"{owner}: 'weights' has {len(weights)} weight(s) but bottom "
                         f"'{scores_name}' {scores_shape} has {c} class(es) along axis 1: expected "
                         f"one weight per class")
    if not include_background and c < 2:
        raise ValueError(f"{owner}: 'include_background' false drops class 0, the only class of "
                         f"bottom '{scores_name}' {scores_shape}: nothing would be left")
    return n, c, m


def _kernel_inputs(owner, scores, label, weights, include_background, ignore_label):
    """Checked inputs of the softmax kernel: ``x`` (N, C, M), ``y`` (N, 1, M) int64, ``valid``
    ((N, 1, M) in x's dtype, or None), N, C, M, the weight list or None."""
    wlist = _weight_list(owner, weights)
    x = np.asarray(scores)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    label = np.asarray(label)
    n, c, m = check_shapes(owner, x.shape, label.shape, activation="softmax",
                           weights=weights if wlist is None else wlist,
                           include_background=include_background)
    y, valid = common.check_labels(owner, label, c, ignore_label)    # indexes of its own shape
    valid = None if valid is None else valid.reshape(n, 1, m).astype(x.dtype)
    return x.reshape(n, c, m), y.reshape(n, 1, m), valid, n, c, m, wlist


def _weight_list(owner, weights):
    """The checked weight list as a float64 array, or None for ``none`` / ``generalized``."""
    if isinstance(weights, str):
        if weights not in WEIGHTINGS:
            raise ValueError(f"{owner}: 'weights' must be none, generalized or a list of one weight "
                             f"per class. Received: weights={weights!r}")
        return None
    wlist = np.asarray(weights, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(wlist)) and np.all(wlist >= 0)):
        raise ValueError(f"{owner}: 'weights' must hold finite numbers >= 0. "
                         f"Received: weights={wlist.tolist()}")
    return wlist


def _inputs(owner, scores, label, activation, weights, include_background, ignore_label):
    """Checked inputs: ``x`` (N, C, M), ``g`` (N, C, M), ``valid``, N, C, the weight list or None."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"{owner}: 'activation' must be one of {', '.join(ACTIVATIONS)}. "
                         f"Received: activation={activation!r}")
    wlist = _weight_list(owner, weights)
    x = np.asarray(scores)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    label = np.asarray(label)
    n, c, m = check_shapes(owner, x.shape, label.shape, activation=activation,
                           weights=weights if wlist is None else wlist,
                           include_background=include_background)
    x = x.reshape(n, c, m)
    if activation != "sigmoid":
        y, valid = common.check_labels(owner, label, c, ignore_label)   # indexes of its own shape
        g = (y.reshape(n, 1, m) == np.arange(c).reshape(1, c, 1)).astype(x.dtype)
        valid = None if valid is None else valid.reshape(n, 1, m)
    else:
        valid = None
        if ignore_label is not None:
            ignored = label == ignore_label
            valid = ~ignored if ignored.any() else None
        kept = label if valid is None else np.where(valid, label, 0)
        bad = ~((kept == 0) | (kept == 1))
        if bad.any():
            idx = common.first_bad_index(bad)                           # of the label's own shape
            extra = f" or the ignore_label {ignore_label}" if ignore_label is not None else ""
            raise ValueError(f"{owner}: bottom 'label' holds {float(label[idx])} at index {idx}; "
                             f"expected 0 or 1{extra} with activation sigmoid "
                             f"({int(bad.sum())} bad value(s))")
        g = kept.reshape(n, c, m).astype(x.dtype)
        valid = None if valid is None else valid.reshape(n, c, m)
    if valid is None:
        return x, g, 1, n, c, wlist
    valid = valid.astype(x.dtype)
    return x, g * valid, valid, n, c, wlist
