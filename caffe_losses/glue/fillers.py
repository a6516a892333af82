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
``gaussian``           N(``mean``, ``std``) (defaults 0, 1); with ``sparse``
                       (>= 0), each value kept with probability
                       ``sparse / shape[0]``, the rest 0
``xavier``             U[-s, s], ``s = sqrt(3 / n)``
``msra``               N(0, sqrt(2 / n))
``positive_unitball``  U[0, 1], each row then divided by its sum
=====================  ==================================================

``n`` is ``fan_in`` (``variance_norm: FAN_IN``, the default), ``fan_out``
(``FAN_OUT``) or their mean (``AVERAGE``).

:func:`fill` does not draw the numbers itself: it runs Caffe's own filler
(a ``DummyData`` layer with that ``data_filler``, in a throwaway net built in
the same process and thread), so the values come from Caffe's generator,
seeded by the solver's ``random_seed`` or ``caffe.set_random_seed``.  A seed
then gives the same values on every run, and the very numbers a C++ layer
filling a blob of that shape at the same point would get (caffe-face's
``CenterLoss`` fills its ``(num_output, K)`` centers with Caffe's filler
during set-up, as the Python layer does).
"""

import os
import tempfile

import numpy as np
from google.protobuf import text_format

from caffe_losses.glue.params import as_float

# caffe (pycaffe) is imported inside the functions that use it: the CLI imports this
# module, and must run without pycaffe to say that it is missing (tests/test_layout.py).

__all__ = ["FILLER_TYPES", "as_filler", "fill", "caffe_filler_net"]

FILLER_TYPES = ("constant", "uniform", "gaussian", "xavier", "msra", "positive_unitball")
_KEYS = ("type", "value", "min", "max", "mean", "std", "variance_norm", "sparse")
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
    if "sparse" in value:      # gaussian: each weight kept with probability sparse / shape[0]
        sparse = value["sparse"]
        if isinstance(sparse, bool) or not isinstance(sparse, (int, float)) or sparse != int(sparse) \
                or not -1 <= sparse < 2**31:
            raise ValueError("sparse must be an integer >= -1 (-1, Caffe's default: not sparse)")
        if int(sparse) != -1:
            if spec["type"] != "gaussian":
                raise ValueError(f"sparse is for the gaussian filler only: Caffe's {spec['type']} filler "
                                 f"aborts on it (\"Sparsity not supported by this Filler\")")
            spec["sparse"] = int(sparse)
    if spec.get("std", 1.0) < 0:
        raise ValueError("std must be >= 0")
    if spec.get("min", 0.0) > spec.get("max", 1.0):
        raise ValueError("min must be <= max")
    return spec


def caffe_filler_net(shape, spec):
    """The ``NetParameter`` of one ``DummyData`` layer whose ``data_filler`` is ``spec``, top ``shape``."""
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter(name="caffe_losses_filler")
    layer = net.layer.add(name="fill", type="DummyData", top=["fill"])
    param = layer.dummy_data_param
    filler = param.data_filler.add(type=spec["type"])
    for key in ("value", "min", "max", "mean", "std"):
        if key in spec:
            setattr(filler, key, spec[key])
    if "sparse" in spec:
        filler.sparse = spec["sparse"]
    if "variance_norm" in spec:
        filler.variance_norm = caffe_pb2.FillerParameter.VarianceNorm.Value(spec["variance_norm"])
    param.shape.add(dim=[int(d) for d in shape])
    return net


def fill(shape, spec, dtype=np.float32):
    """An array of ``shape`` filled by Caffe's own filler ``spec`` (from :func:`as_filler`).

    Runs the filler in a throwaway net (a ``DummyData`` layer, filled by its
    one forward), so the numbers come from Caffe's generator: the solver's
    ``random_seed`` (or ``caffe.set_random_seed``) makes them repeatable, and
    they are the values Caffe's ``Filler::Fill`` gives a blob of ``shape`` at
    that point of the generator's stream.
    """
    import caffe
    shape = tuple(int(d) for d in shape)
    if spec["type"] == "gaussian" and spec.get("sparse", -1) > (shape[0] if shape else 1):
        # Caffe's GaussianFiller keeps a weight with probability sparse / shape[0]: above 1, its
        # Bernoulli draw aborts the process (caffe_rng_bernoulli: Check failed: p <= 1)
        raise ValueError(f"sparse {spec['sparse']} is more than the {shape[0] if shape else 1} rows to "
                         f"fill: Caffe's gaussian filler keeps a value with probability sparse / rows, "
                         f"at most 1 (Caffe aborts on it)")
    if spec["type"] == "constant":       # no random draw: no net needed
        return np.full(shape, spec.get("value", 0.0), dtype=dtype)
    fd, path = tempfile.mkstemp(suffix=".prototxt", prefix="caffe_losses_filler_", text=True)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text_format.MessageToString(caffe_filler_net(shape, spec)))
        net = caffe.Net(path, caffe.TEST)
    finally:
        os.unlink(path)
    net.forward()
    return net.blobs["fill"].data.astype(dtype, copy=True).reshape(shape)
