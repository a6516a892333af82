"""Gradient checking, for this package's layers and for your own.

Two checkers:

* :func:`check_gradient` compares an analytic gradient with central finite
  differences of a NumPy function, in float64, to a tight tolerance.  Use it
  on a pure loss core.
* :func:`check_net_gradient` does what Caffe's C++ ``GradientChecker`` does,
  inside a real ``caffe.Net`` in float32: it perturbs each input element by
  ``stepsize``, re-runs the net, and compares ``(f(x+h) - f(x-h)) / 2h`` with
  the diff that ``net.backward()`` produced, scaled as Caffe does
  (``|a - n| <= threshold * max(|a|, |n|, 1)``).  The objective is
  ``sum(loss_weight * loss)`` over loss outputs plus ``sum(c * top)`` with fixed
  random ``c`` over any other output, so non-loss layers are covered too.

:func:`layer_net` writes the prototxt of a one-layer test net (``Input``
layers feeding your layer, ``force_backward: true``), so checking your own
Python layer is three lines::

    from caffe_losses.glue.testing import layer_net, check_net_gradient
    net = layer_net("mymodule", "MyLoss", {"pred": (4, 3), "target": (4, 3)},
                    param_str="{sigma: 2}", loss_weight=2)
    check_net_gradient(net, {"pred": x, "target": t}, wrt=["pred"])

Both raise :class:`GradientCheckError` (an ``AssertionError``) that lists the
worst elements when the gradients disagree.
"""

import os
import tempfile

import numpy as np
from google.protobuf import text_format

from caffe_losses.glue.netbuild import inputs

# caffe (pycaffe) is imported inside the functions that use it: the CLI imports this
# module, and must run without pycaffe to say that it is missing (tests/test_layout.py).

__all__ = ["GradientCheckError", "numeric_gradient", "check_gradient",
           "layer_net", "layer_net_param", "net_from_text", "check_net_gradient"]


class GradientCheckError(AssertionError):
    """Analytic and numeric gradients disagree."""


def numeric_gradient(f, x, eps=1e-6):
    """Central differences of the scalar function ``f`` at ``x`` (float64).

    ``f`` is called with arrays of ``x``'s shape; ``x`` is not modified.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = float(f(x))
        flat[i] = old - eps
        fm = float(f(x))
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def _report(name, analytic, numeric, bad, err, limit):
    order = np.argsort(-err.reshape(-1)[bad.reshape(-1)])[:5]
    where = np.argwhere(bad)[order]
    lines = [f"gradient of '{name}' disagrees with finite differences at "
             f"{int(bad.sum())} of {bad.size} element(s); worst:"]
    for idx in where:
        idx = tuple(int(k) for k in idx)
        lines.append(f"  {idx}: analytic {analytic[idx]:.8g}, numeric {numeric[idx]:.8g}, "
                     f"|diff| {err[idx]:.3g} > {limit[idx]:.3g}")
    return "\n".join(lines)


def check_gradient(f, grad, x, *, eps=1e-6, rtol=1e-6, atol=1e-8, name="x"):
    """Checks ``grad`` (the analytic gradient at ``x``) against ``f``.

    Args:
      f: scalar function of one array, evaluated in float64.
      grad: analytic gradient, same shape as ``x``.
      x: the point.
      eps: finite-difference step.
      rtol, atol: element passes if ``|g - n| <= atol + rtol * max(|g|, |n|)``.
      name: what the message calls ``x``.

    Returns:
      the numeric gradient (for further checks).

    Raises:
      GradientCheckError listing the worst elements.
    """
    grad = np.asarray(grad, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if grad.shape != x.shape:
        raise GradientCheckError(f"gradient of '{name}' has shape {grad.shape}, expected {x.shape}")
    numeric = numeric_gradient(f, x, eps)
    err = np.abs(grad - numeric)
    limit = atol + rtol * np.maximum(np.abs(grad), np.abs(numeric))
    bad = ~(err <= limit)
    if bad.any():
        raise GradientCheckError(_report(name, grad, numeric, bad, err, limit))
    return numeric


# ---------------------------------------------------------------------------
# In-net checking (float32, real caffe.Net)
# ---------------------------------------------------------------------------

def net_from_text(text, phase=None, weights=None):
    """Builds a ``caffe.Net`` from prototxt text (written to a temp file)."""
    import caffe
    fd, path = tempfile.mkstemp(suffix=".prototxt", text=True)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        phase = caffe.TRAIN if phase is None else phase
        if weights is not None:
            return caffe.Net(path, str(weights), phase)
        return caffe.Net(path, phase)
    finally:
        os.unlink(path)


def layer_net_param(module, layer, bottoms, *, tops=("loss",), param_str="", loss_weight=1.0,
                    name="under_test"):
    """The ``NetParameter`` of :func:`layer_net` (built as a message, so any name or
    ``param_str`` -- quotes, newlines -- is escaped correctly in the text)."""
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter(name="gradcheck", force_backward=True)
    text_format.Merge(inputs(bottoms), net)
    py = net.layer.add(name=name, type="Python", bottom=list(bottoms), top=list(tops))
    py.python_param.module, py.python_param.layer = module, layer
    py.python_param.param_str = param_str
    if loss_weight is not None:
        py.loss_weight.extend([float(loss_weight)] + [0.0] * (len(tops) - 1))
    return net


def layer_net(module, layer, bottoms, *, tops=("loss",), param_str="", loss_weight=1.0,
              name="under_test"):
    """A test net: one ``Input`` per bottom feeding one Python layer.

    Args:
      module, layer: the ``python_param`` module and class.
      bottoms: ordered mapping bottom name -> shape.
      tops: top names; the first gets ``loss_weight`` (use None for a
        non-loss layer).
      param_str: the layer's ``param_str``.
      loss_weight: weight on the first top, or None.

    Returns:
      caffe.Net in the TRAIN phase with ``force_backward: true``.
    """
    param = layer_net_param(module, layer, bottoms, tops=tops, param_str=param_str,
                            loss_weight=loss_weight, name=name)
    return net_from_text(text_format.MessageToString(param))


def _objective_coefficients(net, seed):
    rng = np.random.RandomState(seed)
    weights = dict(net.blob_loss_weights)
    coefs = {}
    for out in net.outputs:
        w = float(weights.get(out, 0.0))
        shape = net.blobs[out].data.shape
        coefs[out] = np.full(shape, w, np.float32) if w != 0 else rng.randn(*shape).astype(np.float32)
    return coefs


def _objective(net, coefs):
    net.forward()
    return sum(float(np.dot(coefs[o].astype(np.float64).ravel(),
                            net.blobs[o].data.astype(np.float64).ravel())) for o in coefs)


def check_net_gradient(net, inputs, wrt, *, stepsize=1e-2, threshold=1e-2, kink=None,
                       kink_range=-1.0, max_checks=None, seed=1701):
    """Caffe's GradientChecker over a real net.

    Args:
      net: a ``caffe.Net`` whose inputs include ``inputs``'s keys.  It needs
        ``force_backward: true`` (or a reason of its own to back-propagate)
        so that Caffe writes diffs into the input blobs.
      inputs: input blob name -> array; copied into the net first.
      wrt: the input names to check (labels are usually left out).
      stepsize, threshold: as Caffe's ``GradientChecker(stepsize, threshold)``.
      kink, kink_range: as Caffe's ``GradientChecker(..., kink, kink_range)``:
        elements with ``kink - kink_range <= |x| <= kink + kink_range`` are
        not compared (their finite difference straddles a point where the
        function is not smooth: 0 for ReLU, ``1/sigma^2`` for Smooth L1 of
        ``x`` against a zero target); None (or a negative ``kink_range``)
        compares every element.
      max_checks: check at most this many elements per blob (a fixed random
        subset), or all when None.
      seed: for the output coefficients and the subset.

    Returns:
      dict name -> (analytic, numeric) arrays of the compared elements (those
      near a kink left out).

    Raises:
      GradientCheckError listing the worst elements of the first bad blob.
    """
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    coefs = _objective_coefficients(net, seed)
    net.forward()
    net.backward(**{o: coefs[o] for o in coefs})
    analytic = {name: net.blobs[name].diff.astype(np.float64).copy() for name in wrt}
    rng = np.random.RandomState(seed + 1)
    results = {}
    for name in wrt:
        data = net.blobs[name].data
        flat = data.reshape(-1)
        idx = np.arange(flat.size)
        if max_checks is not None and flat.size > max_checks:
            idx = np.sort(rng.choice(flat.size, max_checks, replace=False))
        a = analytic[name].reshape(-1)[idx]
        n = np.empty_like(a)
        for k, i in enumerate(idx):
            old = float(flat[i])
            flat[i] = old + stepsize
            fp = _objective(net, coefs)
            flat[i] = old - stepsize
            fm = _objective(net, coefs)
            flat[i] = old
            n[k] = (fp - fm) / (2 * stepsize)
        x = flat[idx].astype(np.float64)
        scale = np.maximum(np.maximum(np.abs(a), np.abs(n)), 1.0)
        err = np.abs(a - n)
        limit = threshold * scale
        bad = ~(err <= limit)
        compared = np.ones(idx.size, bool)
        if kink is not None and kink_range >= 0:
            compared = ~((kink - kink_range <= np.abs(x)) & (np.abs(x) <= kink + kink_range))
            bad &= compared
        if bad.any():
            # report indexes into the whole flattened blob
            full_a = np.zeros(flat.size); full_n = np.zeros(flat.size)
            full_e = np.zeros(flat.size); full_l = np.ones(flat.size)
            full_bad = np.zeros(flat.size, bool)
            full_a[idx], full_n[idx], full_e[idx], full_l[idx], full_bad[idx] = a, n, err, limit, bad
            raise GradientCheckError(_report(name, full_a, full_n, full_bad, full_e, full_l))
        results[name] = (a[compared], n[compared])
    _objective(net, coefs)  # leave the net at the unperturbed point
    return results
