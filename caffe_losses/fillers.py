"""Caffe's weight fillers in NumPy, for parameter blobs that Python layers own.

A Python layer creates its blobs itself, so Caffe's ``FillerParameter``
never reaches them.  :func:`fill` reproduces Caffe's fillers
(``include/caffe/filler.hpp``) with the same distributions and the same
fan-in/fan-out rules: for a blob of shape ``(num, d1, d2, ...)``,
``fan_in = count / shape[0]`` and ``fan_out = count / shape[1]``.

=====================  ==================================================
type                   values
=====================  ==================================================
``constant``           ``value`` (default 0)
``uniform``            U[``min``, ``max``] (defaults 0, 1)
``gaussian``           N(``mean``, ``std``) (defaults 0, 1)
``xavier``             U[-s, s], ``s = sqrt(3 / n)``
``msra``               N(0, sqrt(2 / n))
``positive_unitball``  U[0, 1], each row then divided by its sum
=====================  ==================================================

``n`` is ``fan_in`` (``variance_norm: FAN_IN``, the default), ``fan_out``
(``FAN_OUT``) or their mean (``AVERAGE``).  The random numbers come from
NumPy's global generator (``numpy.random.seed`` makes them repeatable), not
from Caffe's, so the values differ from a C++ layer's while their
distribution is the same.
"""

import numpy as np

from caffe_losses.params import as_float

__all__ = ["FILLER_TYPES", "as_filler", "fill"]

FILLER_TYPES = ("constant", "uniform", "gaussian", "xavier", "msra", "positive_unitball")
_KEYS = ("type", "value", "min", "max", "mean", "std", "variance_norm")
_NORMS = ("FAN_IN", "FAN_OUT", "AVERAGE")


def as_filler(value):
    """A ``param_str`` filler: a type name (``xavier``) or a mapping as Caffe's FillerParameter.

    Returns:
      dict with ``type`` and the keys given (numbers as floats).

    Raises:
      TypeError/ValueError with an "expected ..." message (read after the key name).
    """
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        raise TypeError(f"must be a filler type ({', '.join(FILLER_TYPES)}) or a mapping such as "
                        f"{{type: gaussian, std: 0.01}}")
    unknown = [k for k in value if k not in _KEYS]
    if unknown:
        raise ValueError(f"has unknown key(s) {', '.join(map(str, unknown))} (keys: {', '.join(_KEYS)})")
    spec = {"type": str(value.get("type", "constant")).strip().lower()}
    if spec["type"] not in FILLER_TYPES:
        raise ValueError(f"type must be one of {', '.join(FILLER_TYPES)}")
    for key in ("value", "min", "max", "mean", "std"):
        if key in value:
            try:                  # a finite number that float32 (the centers' type) holds
                spec[key] = as_float(value[key])
            except (TypeError, ValueError) as err:
                raise type(err)(f"{key} {err}") from None
    if "variance_norm" in value:
        norm = str(value["variance_norm"]).strip().upper()
        if norm not in _NORMS:
            raise ValueError(f"variance_norm must be one of {', '.join(_NORMS)}")
        spec["variance_norm"] = norm
    if spec.get("std", 1.0) < 0:
        raise ValueError("std must be >= 0")
    if spec.get("min", 0.0) > spec.get("max", 1.0):
        raise ValueError("min must be <= max")
    return spec


def _fan(shape, norm):
    count = int(np.prod(shape))
    fan_in = count / shape[0]
    fan_out = count / shape[1] if len(shape) > 1 else count
    return {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[norm]


def fill(shape, spec, dtype=np.float32):
    """An array of ``shape`` filled as Caffe's filler ``spec`` (from :func:`as_filler`) fills a blob."""
    kind = spec["type"]
    norm = spec.get("variance_norm", "FAN_IN")
    if kind == "constant":
        out = np.full(shape, spec.get("value", 0.0))
    elif kind == "uniform":
        out = np.random.uniform(spec.get("min", 0.0), spec.get("max", 1.0), shape)
    elif kind == "gaussian":
        out = np.random.normal(spec.get("mean", 0.0), spec.get("std", 1.0), shape)
    elif kind == "xavier":
        scale = np.sqrt(3.0 / _fan(shape, norm))
        out = np.random.uniform(-scale, scale, shape)
    elif kind == "msra":
        out = np.random.normal(0.0, np.sqrt(2.0 / _fan(shape, norm)), shape)
    else:   # positive_unitball: rows (the first axis) sum to 1
        out = np.random.uniform(0.0, 1.0, shape)
        rows = out.reshape(shape[0], -1)
        rows /= rows.sum(axis=1, keepdims=True)
    return out.astype(dtype)
