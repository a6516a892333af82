"""Shared NumPy helpers of the loss cores: normalization, softmax, checks, the loss sum.

No caffe import.  Every function works in the dtype it is given (float64 for
the exact checks, float32 inside a net).

The accumulation rule, the same for every loss at every size: a loss is its
per-term values (per element, or per position) computed in the input dtype,
summed in float64 by :func:`loss_sum` (NumPy's pairwise summation), then
divided by the normalizer.  For float32 terms that sum is exact to about
1e-15 relative, far below float32's own rounding, and costs one pass.
"""

import math

import numpy as np

from caffe_losses.files.safety import FLOAT32_MAX

__all__ = [
    "normalizer", "canonical_shape", "log_softmax", "softmax", "softplus", "sigmoid",
    "loss_sum", "first_bad_index", "check_finite", "raise_non_finite", "check_labels",
    "check_same_count", "out_view", "Workspace",
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
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


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


def loss_sum(terms):
    """The sum of a loss's terms in float64, as a Python float (the accumulation rule above)."""
    return float(np.add.reduce(terms, axis=None, dtype=np.float64))


def first_bad_index(bad):
    """The index (a tuple of ints) of the first True of a boolean array, in C order."""
    bad = np.asarray(bad)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))


def check_finite(owner, what, x):
    """Raises ValueError if ``x`` holds NaN or inf, naming the first one.

    ``what`` names the array, e.g. ``"bottom 'scores'"``.
    """
    x = np.asarray(x)
    if not np.isfinite(x).all():
        idx = first_bad_index(~np.isfinite(x))
        raise ValueError(f"{owner}: {what} holds a non-finite value {x[idx]} at index {idx}")


def raise_non_finite(owner, value, inputs):
    """Raises for a loss that came out NaN or inf, or beyond float32: names the first non-finite input, else the overflow.

    Checking the scalar loss is free on good input; only a bad one pays for
    the scan of ``inputs``, ``(what, array)`` pairs in the order to report.
    A ``value`` that is finite (in float64) is one that Caffe's float32 top
    blob would turn into inf (a layer checks with ``safety.overflows_float32``).
    """
    for what, array in inputs:
        check_finite(owner, what, array)
    if math.isfinite(value):
        raise ValueError(f"{owner}: the loss {value:.4g} does not fit float32 (at most "
                         f"{FLOAT32_MAX:.4g}), the type of the top blob Caffe reads, although every "
                         f"input is finite (inputs or weights too large for float32: scale them down)")
    raise ValueError(f"{owner}: the loss overflowed to {value} although every input is finite "
                     f"(inputs or weights too large for float32: scale them down)")


def check_same_count(owner, name_a, a_shape, name_b, b_shape):
    """Raises ValueError unless the two blobs hold the same number of values."""
    ca, cb = math.prod(a_shape), math.prod(b_shape)
    if ca != cb:
        raise ValueError(f"{owner}: bottom '{name_b}' must have as many values as "
                         f"'{name_a}' {tuple(a_shape)}: expected {ca}, got {cb} {tuple(b_shape)}")


def check_label_count(owner, n, label_shape, xname=None, x_shape=None):
    """Raises ValueError unless the labels hold one value per sample (``n``).

    The one check, for the cores and the layers' ``reshape`` alike;
    ``xname`` and ``x_shape`` name the per-sample bottom in the message.
    """
    count = math.prod(label_shape)
    if count != n:
        of = f" of '{xname}' {tuple(x_shape)}" if xname is not None else ""
        raise ValueError(f"{owner}: bottom 'label' must hold one label per sample{of}: expected "
                         f"{n} values, got {count} {tuple(label_shape)}")


def check_targets(owner, target, ignore_label=None, name="target", *, describe=None):
    """Checks that targets lie in [0, 1] or equal ``ignore_label``.

    The one check of targets: the sigmoid-form layers and ``caffe-losses
    make-pos-weight`` call it.

    Args:
      owner: layer/function name for messages.
      target: array of target values (soft targets allowed).
      ignore_label: a value allowed anywhere, meaning "leave this element out";
        None for none.
      name: the bottom's name in messages.
      describe: optional ``describe(value, index, count) -> message`` for
        callers that speak of a file rather than a bottom (the tool).

    Returns:
      boolean mask of the ignored elements, or None when none is ignored.

    Raises:
      ValueError naming the first bad value, its index and what was expected
      (NaN and inf are bad values too).
    """
    target = np.asarray(target)
    ignored = None
    if ignore_label is not None:
        ignored = target == ignore_label
        if not ignored.any():
            ignored = None
    if target.size == 0:
        return ignored
    if target.min() >= 0 and target.max() <= 1:     # the usual batch; False for NaN
        return ignored
    bad = ~((target >= 0) & (target <= 1))
    if ignored is not None:
        bad &= ~ignored
    if not bad.any():
        return ignored
    idx = first_bad_index(bad)
    if describe is not None:
        raise ValueError(describe(float(target[idx]), idx, int(bad.sum())))
    extra = f" or the ignore_label {ignore_label}" if ignore_label is not None else ""
    raise ValueError(f"{owner}: bottom '{name}' holds {float(target[idx])} at index {idx}; "
                     f"expected values in [0, 1]{extra} ({int(bad.sum())} bad value(s))")


def check_positions(owner, shape, label_shape, axis=1, xname="scores"):
    """``(O, C, I)`` of predictions ``shape`` with classes on ``axis``, one label per position.

    The shape rule of Caffe's ``SoftmaxWithLoss`` (labels N x H x W or
    N x 1 x H x W for N x C x H x W scores), shared by the softmax-form losses.
    """
    shape = tuple(int(s) for s in shape)
    try:
        O, C, I = canonical_shape(shape, axis)
    except ValueError:
        raise ValueError(f"{owner}: 'axis' must be in [-{len(shape)}, {len(shape)}) for bottom "
                         f"'{xname}' of shape {shape}. Received: axis={axis}") from None
    count = math.prod(label_shape)
    if count != O * I:
        raise ValueError(
            f"{owner}: bottom 'label' must hold one label per position of '{xname}' "
            f"{shape} (axis {axis}): expected {O * I} values, got {count} "
            f"{tuple(label_shape)}; e.g. scores N x C x H x W need labels N x H x W or N x 1 x H x W")
    return O, C, I


def out_view(out, shape, dtype):
    """``out`` viewed as ``shape`` (same count, C-contiguous: no copy), or a new array when None.

    The cores write gradients through this view, so an ``out`` of another
    shape with the same count (a bottom's diff) receives them in its own shape.
    """
    if out is None:
        return np.empty(shape, dtype)
    if not out.flags.c_contiguous:     # reshape would copy: the writes would be lost
        raise ValueError(f"out must be a C-contiguous array. Received strides {out.strides}")
    return out.reshape(shape)


def check_labels(owner, labels, num_classes, ignore_label=None, name="label"):
    """Validates class labels and returns them as integers.

    Args:
      owner: layer/function name for messages.
      labels: array of label values (float32 in Caffe blobs).
      num_classes: L; valid labels are integers in [0, L).
      ignore_label: a value that is allowed anywhere and means "skip".
      name: the bottom's name in messages.

    Returns:
      (int64 labels of ``labels``' shape with ignored positions set to 0,
      boolean valid mask, or None when no label is ignored).

    Raises:
      ValueError naming the bad value and its index (Caffe's native layers
      only check in debug builds, and read out of bounds otherwise).
    """
    labels = np.asarray(labels)
    ignored = None
    if ignore_label is not None:
        ignored = labels == ignore_label
        if not ignored.any():
            ignored = None
    kept = labels if ignored is None else np.where(ignored, 0, labels)
    valid = None if ignored is None else ~ignored
    # the usual batch: in range (NaN fails both comparisons) and integers
    if not kept.size or (kept.min() >= 0 and kept.max() < num_classes):
        y = kept.astype(np.int64)
        if (y == kept).all():
            return y, valid
    as_int = np.rint(kept)
    bad = ~np.isfinite(kept) | (as_int != kept) | (as_int < 0) | (as_int >= num_classes)
    idx = first_bad_index(bad)
    extra = f" or the ignore_label {ignore_label}" if ignore_label is not None else ""
    raise ValueError(f"{owner}: bottom '{name}' holds {float(labels[idx])} at index {idx}; expected "
                     f"integers in [0, {num_classes}){extra} ({int(bad.sum())} bad value(s))")


class Workspace:
    """Arrays a kernel reuses from call to call, by name; made again when the shape or dtype changes.

    Fresh temporaries cost memory traffic (and page faults where freed
    memory goes back to the system); the native layers keep their buffers,
    and a kernel given a workspace does too.  A layer keeps one workspace per
    kernel; the cache the kernel returns refers to these arrays, so it is
    valid until the next call.
    """

    def __init__(self):
        self._arrays = {}        # name -> array
        self._keys = {}          # name -> (shape, dtype) it was made for

    def array(self, name, shape, dtype):
        """An uninitialised array called ``name`` (``shape`` a tuple, ``dtype`` a ``np.dtype``)."""
        if self._keys.get(name) != (shape, dtype):
            self._arrays[name] = np.empty(shape, dtype)
            self._keys[name] = (shape, dtype)
        return self._arrays[name]

    def memo(self, name, key, make):
        """``make()``, computed again only when ``key`` differs from the last one given for ``name``."""
        if self._keys.get(name) != key:
            self._arrays[name], self._keys[name] = make(), key
        return self._arrays[name]

    def zeros(self, shape, dtype):
        """A read-only array of zeros (``np.maximum(x, zeros)`` is vectorised where ``np.maximum(x, 0)`` is not)."""
        if self._keys.get("zeros") != (shape, dtype):
            zeros = np.zeros(shape, dtype)
            zeros.flags.writeable = False
            self._arrays["zeros"], self._keys["zeros"] = zeros, (shape, dtype)
        return self._arrays["zeros"]
