"""NumPy core of the focal losses (``SigmoidFocalLoss``, ``SoftmaxFocalLoss``).

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net); the loss is summed by
``common.loss_sum`` (float64), then divided by the normalizer.

Reference (the specification; docs and tests point here):

* :func:`sigmoid_focal_forward` / :func:`sigmoid_focal_backward`: per
  element, torchvision's ``sigmoid_focal_loss`` (Lin et al. 2017, eq. 5);
* :func:`softmax_focal_forward` / :func:`softmax_focal_backward` (and
  :func:`softmax_focal_prob`): per position, the softmax form of the forks'
  ``FocalLoss`` layers.

Sigmoid form, derived.  Per element, logit ``x``, target ``t`` in [0, 1],
``p = sigmoid(x)``, ``p~ = 1 - p = sigmoid(-x)`` (computed as such, never as
``1 - p``)::

    ce  = t softplus(-x) + (1 - t) softplus(x)          (BCE with logits)
    q   = 1 - p_t = t p~ + (1 - t) p                     (p_t = p t + p~ (1 - t))
    a   = alpha t + (1 - alpha)(1 - t)                   (1 when alpha is none)
    l   = a ce q^gamma

    dce/dx = p - t,    dq/dx = (1 - 2t) p p~
    dl/dx  = a [(p - t) q^gamma + gamma ce q^(gamma - 1) (1 - 2t) p p~]
           = a q^gamma [(p - t) + gamma ce (1 - 2t) r],    r = p p~ / q

with ``p - t = (1 - t) p - t p~`` (for ``t = 1`` it is ``-p~``, not ``p - 1``
rounded).

Sums of non-negative parts only: ``softplus(+-x) = max(+-x, 0) + log1p(exp(-|x|))``,
``q`` a convex mix of ``p`` and ``p~``.  ``q^(gamma - 1)`` diverges at
``q -> 0`` for ``gamma < 1``, so it is never formed: ``q >= min(p, p~) >=
p p~`` makes ``r = p p~ / q`` lie in [0, 1] (for a hard target ``r`` is ``p``
when ``t = 1``, ``p~`` when ``t = 0``), and where ``q`` is exactly 0 (a hard
target met exactly, e.g. ``x = 1e4, t = 1``) the term is ``q^gamma * ...``,
whose limit is 0 for ``gamma > 0`` and which ``gamma = 0`` multiplies by 0:
``r`` is set to 0 there.  The loss tends to 0 like ``q^(gamma + 1)`` there, so
its derivative is 0: the limit, not a NaN.

Softmax form, derived.  Per position, label ``y``, ``s = x - max x``,
``Z = sum_k exp(s_k)``, ``p = softmax(x)``, ``O = Z - exp(s_y)`` summed over
``k != y`` (no cancellation)::

    q  = 1 - p_y = O / Z
    ce = -log p_y = log1p(O / exp(s_y))  where p_y > 1/2  (accurate when q is tiny)
                  = log Z - s_y          elsewhere        (exp(s_y) may underflow)
    l  = alpha_y q^gamma ce

    dce/dx_k = p_k - [k == y],    dq/dx_k = p_y (p_k - [k == y])
    dl/dx_k = alpha_y (p_k - [k == y]) (q^gamma + gamma q^(gamma - 1) p_y ce)
            = alpha_y (p_k - [k == y]) q^gamma (1 + gamma p_y ce / q)

with ``p_y - 1 = -q`` taken from ``q`` (exact), and ``ce / q = -log(1 - q) /
q``, which tends to 1 (its limit, used where ``q = 0``): the bracket tends to
``1 + gamma``, so the gradient tends to 0 like ``q^gamma`` and is finite for
every ``gamma >= 0`` (``gamma < 1`` included).  ``gamma = 0, alpha = 1``
gives ``ce`` and ``p - onehot(y)``: Caffe's ``SoftmaxWithLoss``.

Normalization, Caffe's ``LossParameter`` (``common.normalizer``, at least 1),
plus, for the sigmoid form, ``POSITIVES``: the number of non-ignored targets
equal to 1, at least 1 (RetinaNet divides by the positive anchors).
"""

import math
from dataclasses import dataclass
import numpy as np

from caffe_losses.losses import common

__all__ = ["sigmoid_focal_forward", "sigmoid_focal_backward", "softmax_focal_forward",
           "softmax_focal_backward", "softmax_focal_prob", "check_alpha", "check_shapes",
           "SIGMOID_NORMALIZATIONS", "SOFTMAX_NORMALIZATIONS"]

SIGMOID_NORMALIZATIONS = ("VALID", "FULL", "BATCH_SIZE", "NONE", "POSITIVES")
SOFTMAX_NORMALIZATIONS = ("VALID", "FULL", "BATCH_SIZE", "NONE")


# ---------------------------------------------------------------------------
# Reference: sigmoid focal loss
# ---------------------------------------------------------------------------

@dataclass
class SigmoidFocalCache:
    """What the backward needs, each (N, rest) or a number; ``weight = a q^gamma`` is 0 where ignored."""

    weight: np.ndarray
    p_minus_t: np.ndarray
    bracket: np.ndarray        # gamma ce (1 - 2t) r
    norm: float
    shape: tuple


def sigmoid_focal_forward(scores, targets, *, gamma=2.0, alpha=0.25, ignore_label=None,
                          normalization="VALID", owner="SigmoidFocalLoss"):
    """Sigmoid focal loss from logits, per element, as torchvision's ``sigmoid_focal_loss``.

    ``l = a ce (1 - p_t)^gamma`` summed over the non-ignored elements and
    divided by the normalizer (module docstring: the derivation).

    Args:
      scores: logits ``x``, any shape with N first.
      targets: as many values, in [0, 1] (soft targets allowed) or equal to
        ``ignore_label``.
      gamma: the focusing exponent, >= 0 (0: cross-entropy).
      alpha: the weight of the positive term in [0, 1] (``1 - alpha`` for the
        negative), or None for none.
      ignore_label: targets equal to it add no loss and get no gradient.
      normalization: VALID (non-ignored elements), FULL (all), BATCH_SIZE (N),
        NONE (1) or POSITIVES (targets equal to 1, not ignored); at least 1.
      owner: the name error messages start with.

    Returns:
      (loss, cache): a Python float and a :class:`SigmoidFocalCache`.

    Shape:
      scores: (N, *); targets: the same count; loss: scalar.

    Reference:
      T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
      eq. 5; torchvision ``ops/focal_loss.py``.
    """
    x, t, valid, norm = _sigmoid_inputs(owner, scores, targets, gamma, alpha, ignore_label,
                                        normalization)
    p, pm = common.sigmoid(x), common.sigmoid(-x)               # p and 1 - p, each exact
    ce = t * common.softplus(-x) + (1 - t) * common.softplus(x)
    q = t * pm + (1 - t) * p                                    # 1 - p_t, in [0, 1]
    a = 1 if alpha is None else alpha * t + (1 - alpha) * (1 - t)
    weight = a * q ** gamma * valid                             # 0^0 = 1: gamma 0 is plain CE
    total = common.loss_sum(weight * ce)
    if not math.isfinite(total):
        common.raise_non_finite(owner, total, [("bottom 'scores'", scores)])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(q > 0, p * pm / np.where(q > 0, q, 1), 0)  # p p~ / q in [0, 1]; its limit x 0
    bracket = gamma * ce * (1 - 2 * t) * r
    p_minus_t = (1 - t) * p - t * pm                            # p - t, exact near t = 1 too
    return total / norm, SigmoidFocalCache(weight, p_minus_t, bracket, norm, np.shape(scores))


def sigmoid_focal_backward(cache, *, scale=1.0, out=None):
    """``dL/dx = scale a q^gamma [(p - t) + gamma ce (1 - 2t) r] / norm``; 0 where ignored.

    Args:
      cache: from :func:`sigmoid_focal_forward`.
      scale: a factor (the layer passes the loss weight).
      out: optional C-contiguous array of the scores' count to write into.

    Returns:
      the gradient shaped like the scores, or ``out`` itself when given.
    """
    g = common.out_view(out, cache.weight.shape, cache.weight.dtype)
    np.add(cache.p_minus_t, cache.bracket, out=g)
    g *= cache.weight
    g *= scale / cache.norm
    return out if out is not None else g.reshape(cache.shape)


# ---------------------------------------------------------------------------
# Reference: softmax focal loss
# ---------------------------------------------------------------------------

@dataclass
class SoftmaxFocalCache:
    """What the backward needs: ``p`` (O, C, I), ``factor = alpha_y q^gamma (1 + gamma p_y ce / q)``
    and ``q`` (O, 1, I; 0 where ignored), the labels' one-hot, the normalizer."""

    prob: np.ndarray
    factor: np.ndarray
    q: np.ndarray
    onehot: np.ndarray
    norm: float
    shape: tuple


def softmax_focal_forward(scores, label, *, gamma=2.0, alpha=1.0, axis=1, ignore_label=None,
                          normalization="VALID", owner="SoftmaxFocalLoss"):
    """Softmax focal loss, ``-alpha_y (1 - p_y)^gamma log p_y`` per position, exact at any scale.

    Args:
      scores: raw scores, classes on ``axis``.
      label: one integer in [0, C) (or ``ignore_label``) per position: O * I
        values (N for N x C; N x 1 x H x W or N x H x W for N x C x H x W).
      gamma: >= 0; 0 with ``alpha = 1`` is Caffe's ``SoftmaxWithLoss``.
      alpha: a number >= 0 (it scales the loss) or a list of C per-class weights.
      axis, ignore_label, normalization: as ``SoftmaxWithLoss`` (VALID,
        FULL, BATCH_SIZE, NONE).
      owner: the name error messages start with.

    Returns:
      (loss, cache): a Python float and a :class:`SoftmaxFocalCache`.

    Shape:
      scores: (O, C, I) after canonicalisation on ``axis``; label: O * I values.

    Reference:
      T.-Y. Lin et al., ICCV 2017 (the multi-class form of section 3); the
      ``FocalLoss`` layers of makefile/frcnn and others (docs/focal_loss.md).
    """
    x = np.asarray(scores)
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    O, C, I, y, valid, norm = _softmax_inputs(owner, x, label, gamma, alpha, axis, ignore_label,
                                              normalization)
    xs = x.reshape(O, C, I)
    with np.errstate(invalid="ignore"):                          # a NaN score: reported below
        s = xs - xs.max(axis=1, keepdims=True)                   # <= 0
    e = np.exp(s)
    onehot = np.arange(C).reshape(1, C, 1) == y[:, None, :]      # (O, C, I)
    e_y = np.take_along_axis(e, y[:, None, :], axis=1)           # (O, 1, I)
    s_y = np.take_along_axis(s, y[:, None, :], axis=1)
    others = np.where(onehot, 0, e).sum(axis=1, keepdims=True)   # O: the sum over k != y
    z = e_y + others                                             # Z >= 1
    q = others / z                                               # 1 - p_y, no cancellation
    p_y = e_y / z
    with np.errstate(divide="ignore", invalid="ignore"):
        ce = np.where(p_y > 0.5, np.log1p(others / np.where(p_y > 0.5, e_y, 1)), np.log(z) - s_y)
        ratio = np.where(q > 0, ce / np.where(q > 0, q, 1), 1)   # -log(1 - q) / q -> 1 at q = 0
    a = _class_alpha(alpha, C, x.dtype)
    a_y = a if np.ndim(a) == 0 else a[y][:, None, :]
    w = a_y * q ** gamma * valid[:, None, :]                     # 0 where ignored
    total = common.loss_sum(w * ce)
    if not math.isfinite(total):
        common.raise_non_finite(owner, total, [("bottom 'scores'", scores)])
    factor = w * (1 + gamma * p_y * ratio)
    cache = SoftmaxFocalCache(e / z, factor, q, onehot, norm, x.shape)
    return total / norm, cache


def softmax_focal_backward(cache, *, scale=1.0, out=None):
    """``dL/dx_k = scale factor (p_k - [k == y]) / norm`` with ``p_y - 1 = -q``; 0 where ignored.

    Args:
      cache: from :func:`softmax_focal_forward`.
      scale: a factor (the layer passes the loss weight).
      out: optional C-contiguous array of the scores' count to write into.

    Returns:
      the gradient shaped like the scores, or ``out`` itself when given.
    """
    g = common.out_view(out, cache.prob.shape, cache.prob.dtype)
    np.copyto(g, np.where(cache.onehot, -cache.q, cache.prob))
    g *= cache.factor
    g *= scale / cache.norm
    return out if out is not None else g.reshape(cache.shape)


def softmax_focal_prob(cache, *, out=None):
    """The softmax probabilities, shaped like the scores (into ``out`` when given)."""
    if out is None:
        return cache.prob.reshape(cache.shape)
    common.out_view(out, cache.prob.shape, cache.prob.dtype)[...] = cache.prob
    return out


# ---------------------------------------------------------------------------
# Helpers: checked inputs, shared with the layers
# ---------------------------------------------------------------------------

def _check_gamma(owner, gamma):
    if not (isinstance(gamma, (int, float, np.floating)) and math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"{owner}: 'gamma' must be a finite number >= 0. Received: gamma={gamma!r}")


def _check_normalization(owner, normalization, allowed):
    if normalization not in allowed:
        raise ValueError(f"{owner}: 'normalization' must be one of {', '.join(allowed)}. "
                         f"Received: normalization={normalization!r}")


def _sigmoid_inputs(owner, scores, targets, gamma, alpha, ignore_label, normalization):
    """Checked ``x``, ``t`` (0 where ignored), ``valid`` (1 or a mask) and the normalizer."""
    x = np.asarray(scores)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    _check_gamma(owner, gamma)
    if alpha is not None and not (isinstance(alpha, (int, float, np.floating)) and 0 <= alpha <= 1):
        raise ValueError(f"{owner}: 'alpha' must be a number in [0, 1] or none. Received: alpha={alpha!r}")
    _check_normalization(owner, normalization, SIGMOID_NORMALIZATIONS)
    common.check_same_count(owner, "scores", x.shape, "targets", np.shape(targets))
    t = np.asarray(targets, dtype=x.dtype).reshape(x.shape)
    ignored = common.check_targets(owner, t, ignore_label, name="targets")
    valid = 1 if ignored is None else ~ignored
    t = t if ignored is None else np.where(ignored, 0, t).astype(x.dtype)
    n = x.shape[0] if x.ndim else 1
    count = None if ignored is None else int(np.count_nonzero(valid))
    if normalization == "POSITIVES":
        norm = float(max(1, int(np.count_nonzero((t == 1) & (valid if ignored is not None else True)))))
    else:
        norm = common.normalizer(normalization, n, x.size // max(n, 1), count)
    return x, t, valid, norm


def check_alpha(owner, alpha, num_classes=None):
    """``alpha`` of the softmax form: a number >= 0 or a list of ``num_classes`` numbers >= 0."""
    if np.ndim(alpha) == 0:
        if not (isinstance(alpha, (int, float, np.floating)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"{owner}: 'alpha' must be a finite number >= 0 or a list of them. "
                             f"Received: alpha={alpha!r}")
        return
    arr = np.asarray(alpha, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(arr)) and np.all(arr >= 0)):
        raise ValueError(f"{owner}: 'alpha' must hold finite numbers >= 0. Received: alpha={arr.tolist()}")
    if num_classes is not None and arr.size != num_classes:
        raise ValueError(f"{owner}: 'alpha' has {arr.size} weight(s) but bottom 'scores' has "
                         f"{num_classes} classes on its class axis: expected one weight per class")


def _class_alpha(alpha, num_classes, dtype):
    if np.ndim(alpha) == 0:
        return float(alpha)
    return np.asarray(alpha, dtype=dtype).reshape(num_classes)


def check_shapes(owner, shape, label_shape, axis=1):
    """``(O, C, I)`` of scores ``shape`` with classes on ``axis``, checked against the labels' count."""
    return common.check_positions(owner, shape, label_shape, axis)


def _softmax_inputs(owner, x, label, gamma, alpha, axis, ignore_label, normalization):
    """``O, C, I``, labels (O, I) (0 where ignored), ``valid`` (O, I) and the normalizer."""
    _check_gamma(owner, gamma)
    _check_normalization(owner, normalization, SOFTMAX_NORMALIZATIONS)
    label = np.asarray(label)
    O, C, I = check_shapes(owner, x.shape, label.shape, axis)
    check_alpha(owner, alpha, C)
    y, valid = common.check_labels(owner, label, C, ignore_label)
    y = y.reshape(O, I)
    valid = np.ones((O, I), bool) if valid is None else valid.reshape(O, I)
    count = None if ignore_label is None else int(np.count_nonzero(valid))
    return O, C, I, y, valid, common.normalizer(normalization, O, I, count)

