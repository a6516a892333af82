"""Shared NumPy helpers of the loss cores: normalization, softmax, checks.

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net).
"""

import numpy as np

__all__ = [
    "normalizer", "canonical_shape", "to_ncl", "log_softmax", "softmax",
    "softplus", "sigmoid", "check_labels", "check_finite", "check_same_count",
]


def normalizer(mode, outer_num, inner_num, valid_count=None):
    """Caffe's ``LossLayer::GetNormalizer``: the loss divisor, at least 1.

    Args:
      mode: "FULL" (outer_num * inner_num), "VALID" (valid_count, or FULL when
        no label is ignored, i.e. valid_count is None), "BATCH_SIZE"
        (outer_num) or "NONE" (1).
      outer_num: N, the number of samples (the product of dims before the
        class axis).
      inner_num: positions per sample (the product of dims after it).
      valid_count: number of non-ignored positions, or None.

    Returns:
      float: ``max(1, divisor)``, exactly as Caffe clamps it.
    """
    if mode == "FULL":
        value = outer_num * inner_num
    elif mode == "VALID":
        value = outer_num * inner_num if valid_count is None else valid_count
    elif mode == "BATCH_SIZE":
        value = outer_num
    elif mode == "NONE":
        value = 1
    else:
        raise ValueError(f"normalization must be one of FULL, VALID, BATCH_SIZE, NONE. Received: {mode!r}")
    return float(max(1, value))


def canonical_shape(shape, axis):
    """(outer, C, inner) for a blob of ``shape`` with classes on ``axis``."""
    shape = tuple(int(s) for s in shape)
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of range for a blob of shape {shape}")
    axis %= len(shape)
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, shape[axis], inner


def to_ncl(x, axis):
    """A view of ``x`` as (outer, C, inner): classes in the middle."""
    outer, c, inner = canonical_shape(x.shape, axis)
    return x.reshape(outer, c, inner)


def log_softmax(x, axis=1):
    """``x - logsumexp(x)`` along ``axis``: exact for logits of any size.

    Subtracting the max first keeps ``exp`` in [0, 1], so logits of 1e4 give
    finite results; the log-probabilities are exact (no clamping).
    """
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x, axis=1):
    """Softmax along ``axis``, max-shifted for stability."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softplus(x):
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow warnings for large ``|x|``."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def check_finite(owner, name, x):
    """Raises ValueError if ``x`` holds NaN or inf, naming the first one."""
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{owner}: bottom '{name}' holds a non-finite value "
                         f"{x[tuple(bad)]} at index {tuple(int(i) for i in bad)}")


def check_same_count(owner, name_a, a_shape, name_b, b_shape):
    """Raises ValueError unless the two blobs hold the same number of values."""
    ca, cb = int(np.prod(a_shape)), int(np.prod(b_shape))
    if ca != cb:
        raise ValueError(f"{owner}: bottom '{name_b}' must have as many values as "
                         f"'{name_a}' {tuple(a_shape)}: expected {ca}, got {cb} {tuple(b_shape)}")


def _fast_labels(labels, num_classes):
    """``labels`` as intp when every one is an integer in [0, C), else None.

    A few vectorised steps for the usual batch: the cast to uint32 and back
    must reproduce the bytes (which fails for non-integers, negatives, NaN,
    inf and values from 2**32), and indexing a length-C probe with them must
    not raise (which fails for values >= C).  Anything else returns None and
    goes through the full check, which names the first bad value.
    """
    if labels.dtype.kind not in "fiu" or not labels.size:
        return None
    with np.errstate(invalid="ignore"):     # casting NaN, inf or a negative sets it
        y = labels.astype(np.uint32)
        if y.astype(labels.dtype).tobytes() != labels.tobytes():
            return None
    y = y.astype(np.intp)
    try:
        _PROBE[:num_classes][y]
    except IndexError:
        return None
    if num_classes > _PROBE.size:           # a huge class count: check the range directly
        if y.max() >= num_classes:
            return None
    return y


_PROBE = np.empty(1 << 16, np.int8)


def check_labels(owner, labels, num_classes, ignore_label=None, name="label"):
    """Validates class labels and returns them as integers.

    Args:
      owner: layer/function name for messages.
      labels: array of label values (float32 in Caffe blobs).
      num_classes: L; valid labels are integers in [0, L).
      ignore_label: a value that is allowed anywhere and means "skip".

    Returns:
      (int64 labels with ignored positions set to 0, boolean valid mask, or
      None when no label is ignored).

    Raises:
      ValueError naming the bad value and its index (Caffe's native layers
      only check in debug builds, and read out of bounds otherwise).
    """
    labels = np.asarray(labels)
    if ignore_label is None or not 0 <= ignore_label < num_classes:
        y = _fast_labels(labels, num_classes)     # every label a class index: done
        if y is not None:
            return y, None
    as_int = np.rint(labels)
    bad = ~np.isfinite(labels) | (as_int != labels)
    if ignore_label is not None:
        ignored = labels == ignore_label
        bad |= ~ignored & ((as_int < 0) | (as_int >= num_classes))
    else:
        ignored = None
        bad |= (as_int < 0) | (as_int >= num_classes)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        value = float(labels[idx])
        extra = f" or the ignore_label {ignore_label}" if ignore_label is not None else ""
        raise ValueError(f"{owner}: bottom '{name}' holds {value} at index {idx}; expected "
                         f"integers in [0, {num_classes}){extra} ({int(bad.sum())} bad value(s))")
    out = np.nan_to_num(as_int).astype(np.int64)
    if ignored is not None:
        if not ignored.any():
            ignored = None
        else:
            out[ignored] = 0
            return out, ~ignored
    return out, None
