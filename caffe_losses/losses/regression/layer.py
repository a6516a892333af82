"""Regression layers: ``SmoothL1Loss``, ``Expectation`` and ``MeanVarianceLoss``.

Thin ``caffe.Layer`` adapters over :mod:`caffe_losses.losses.regression.core`; the
formulas and their derivations are in the core's docstrings and in
``docs/regression.md``.
"""

import numpy as np

from caffe_losses.losses.regression import core
from caffe_losses.losses.common import check_label_count
from caffe_losses.glue.base import LossLayer, PythonLayer
from caffe_losses.glue.params import Param, as_bool, as_float, as_float_list, normalization_param
from caffe_losses.files.safety import FLOAT32_MAX, float32_overflow, overflows_float32

__all__ = ["SmoothL1Loss", "Expectation", "MeanVarianceLoss"]


def as_values(value):
    """``values``: a list of K numbers, or a mapping ``{start: S, step: D}``."""
    if isinstance(value, (list, tuple)):
        return as_float_list(value)
    if isinstance(value, dict):
        unknown = [str(k) for k in value if k not in ("start", "step")]
        if unknown:
            raise ValueError(f"has unknown key '{unknown[0]}' (expected a list of numbers, or "
                             f"a mapping with 'start' and/or 'step')")
        out = {}
        for key in ("start", "step"):
            if key in value:
                try:
                    out[key] = as_float(value[key])
                except (TypeError, ValueError) as err:
                    raise type(err)(f"'{key}' {err}") from None
        return out
    raise TypeError("must be a list of numbers (one per bin) or a mapping {start: S, step: D}")


def _values_param():
    return Param("values", as_values, None, doc=(
        "bin values: a list of K numbers, or {start: S, step: D} for S, S+D, ... "
        "(default 0, 1, ..., K-1)"))


# sigma enters float32 arithmetic as sigma^2 and 1/sigma^2 (the edge of the
# quadratic region); both are normal float32 numbers for sigma in
# [1.1e-19, 9.2e18]: the bounds, rounded inwards.
SIGMA_MIN, SIGMA_MAX = 1e-18, 1e18


def _check_sigma(sigma):
    if not SIGMA_MIN <= sigma <= SIGMA_MAX:
        raise ValueError(f"must be in [{SIGMA_MIN:g}, {SIGMA_MAX:g}]: the layer computes in float32 "
                         f"with sigma^2 and 1/sigma^2 (the edge of the quadratic region), which "
                         f"float32 cannot hold beyond that")


def _bin_values(layer, k):
    """The K bin values as float32; refused when float32 cannot hold them or their spread."""
    values = core.bin_values(layer.params["values"], k, np.float64, owner=layer.owner)
    bad = float32_overflow(values)
    if bad is not None:
        layer.fail(f"'values' gives bin {bad[0]} the value {values[bad]:g}, beyond float32 (at most "
                   f"{FLOAT32_MAX:.4g}), the type of Caffe's blobs")
    spread = float(values.max() - values.min())
    if overflows_float32(spread):
        layer.fail(f"'values' span {spread:.4g} (from {values.min():g} to {values.max():g}), beyond "
                   f"float32 (at most {FLOAT32_MAX:.4g}): the gradient p_k (v_k - E) would overflow")
    return values.astype(np.float32)


def _check_scores(layer, blob):
    """N of a scores blob shaped (N, K) or (N, K, 1, ...); the layer's bin values made for its K."""
    shape = tuple(blob.data.shape)
    if len(shape) < 2 or any(s != 1 for s in shape[2:]):
        layer.fail(f"bottom 'scores' must be (N, K) or (N, K, 1, 1), bins on axis 1. "
                   f"Received shape {shape}")
    if layer._values is None or layer._values.size != shape[1]:
        layer._values = _bin_values(layer, shape[1])
    return shape[0]


class SmoothL1Loss(LossLayer):
    """Smooth L1 loss of Fast R-CNN, on CPU, with optional inside and outside weights.

    Per element, with ``d = w_in * (pred - target)``::

        f(d) = 0.5 * (sigma * d)^2        if |d| < 1 / sigma^2
               |d| - 0.5 / sigma^2        otherwise
        L = sum(w_out * f(d)) / norm      (norm = N by default, like EuclideanLoss)

    Backward, with ``f'(d) = clip(sigma^2 * d, -1, 1)`` (``sigma^2 d`` inside,
    ``sign(d)`` outside; the two agree at ``|d| = 1/sigma^2``)::

        dL/dpred   =  top_diff * w_out * w_in * f'(d) / norm
        dL/dtarget = -dL/dpred        (written when Caffe asks, e.g. force_backward)

    In the quadratic region (every ``|d| < 1/sigma^2``, no weights) the loss is
    ``sigma^2`` times Caffe's ``EuclideanLoss``, ``sum (pred - target)^2 / (2N)``,
    with gradients to both bottoms like it.  The weights receive a zero diff.

    The weights may be any finite numbers, as in the fork: a negative inside
    weight flips the sign of ``d`` (``f >= 0`` still); a negative outside
    weight makes that element's term negative (the fork's signed sum), so
    training pushes that error up.  NaN and inf are refused, naming the
    bottom, index and value.

    Shape:
      bottom[0] ``pred``: (N, *).
      bottom[1] ``target``: as many values as ``pred`` and the same N, in any
      shape (e.g. (N, 1) against (N, 1, 1, 1)); its gradient lands in its shape.
      bottom[2] ``inside_weights`` (optional): as many values as ``pred``, finite.
      bottom[3] ``outside_weights`` (optional): as many values as ``pred``, finite
      (give ``inside_weights`` of ones to use outside weights alone).
      top[0]: (1,), the loss.

    param_str keys:
      sigma (default 1.0): > 0; the quadratic region is ``|d| < 1/sigma^2``
        (PyTorch's ``beta`` is ``1/sigma^2``), so the loss has a kink (its
        second derivative jumps) at ``|d| = 1/sigma^2``: finite differences
        across it disagree with the gradient (``caffe-losses gradcheck
        --kink``).  At most 1e18 and at least 1e-18, so that ``sigma^2`` and
        ``1/sigma^2`` are normal float32 numbers.
      normalization (default BATCH_SIZE): BATCH_SIZE (N), FULL or VALID (all
        elements: nothing is ignored), NONE.

    Prototxt::

        layer {
          name: "loss" type: "Python"
          bottom: "pred_age" bottom: "true_age" top: "loss"
          python_param { module: "caffe_losses" layer: "SmoothL1Loss"
                         param_str: "{sigma: 1}" }
          loss_weight: 1    # Python layers get no default loss weight
        }

    Reference:
      R. Girshick, "Fast R-CNN", ICCV 2015; ``rbgirshick/caffe-fast-rcnn``'s
      ``SmoothL1LossLayer``, faster-rcnn branch (GPU only there; the loss is
      ``dot(ones, w_out * f) / num``, a signed sum, as here).
    """

    PARAMS = (Param("sigma", as_float, 1.0, low=0, low_open=True, extra_check=_check_sigma,
                    doc="> 0, in [1e-18, 1e18]; quadratic for |d| < 1/sigma^2, linear beyond"),
              normalization_param("BATCH_SIZE"))
    BOTTOMS = ("pred", "target")
    OPTIONAL_BOTTOMS = ("inside_weights", "outside_weights")
    DIFF_BOTTOMS = (0, 1)

    def check_bottoms(self, bottom):
        pred = bottom[0]
        n = pred.data.shape[0] if pred.data.ndim else 1
        for i in range(1, len(bottom)):
            self.require_same_count(bottom, 0, i)
            other = bottom[i].data.shape
            if other and other[0] != n:
                self.fail(f"bottom '{self.bottom_name(i)}' must have the N of 'pred' "
                          f"{tuple(pred.data.shape)}: expected {n} samples, got {other[0]} "
                          f"{tuple(other)}")

    def loss(self, bottom, top):
        value, self.cache = core.smooth_l1_forward(*self.bottom_arrays(bottom), owner=self.owner,
                                                   **self.params)
        return value   # a NaN/inf loss: LossLayer names the input

    def gradients(self, diffs, scale):
        # d/dtarget = -d/dpred, each written in its bottom's own shape
        for i, diff in diffs.items():
            core.smooth_l1_backward(self.cache, scale=scale if i == 0 else -scale, out=diff)


class Expectation(PythonLayer):
    """Expected value over K bins, ``E = sum_k p_k v_k``: the predicted age of DEX.

    Forward, per sample::

        p = softmax(scores)          (or p = scores with softmax: false)
        E = sum_k p_k v_k            v = values (default 0, 1, ..., K-1)

    Backward, from ``dp_j/dx_k = p_j (delta_jk - p_k)``::

        dE/dx_k = sum_j v_j p_j (delta_jk - p_k) = p_k (v_k - E)      (softmax)
        dE/dp_k = v_k                                                 (softmax: false)

    each times the top diff of its sample.  With a ``Softmax`` in front and
    ``softmax: false`` this is exactly the fixed ``Convolution`` whose kernel
    the net-surgery recipe sets to 0..99, with no surgery; with the default
    ``softmax: true`` it takes the raw scores and needs no ``Softmax`` layer.
    Train it end to end with ``SmoothL1Loss`` or ``EuclideanLoss`` on the age.

    Shape:
      bottom[0] ``scores``: (N, K) or (N, K, 1, 1).
      top[0]: (N, 1), matching an HDF5 target of shape (N, 1).

    param_str keys:
      values (default {start: 0, step: 1}): a list of K numbers, or
        ``{start: S, step: D}`` for ``S + k D``.
      softmax (default true): apply a softmax over the bins first.

    Prototxt::

        layer {
          name: "pred_age" type: "Python"
          bottom: "fc100" top: "pred_age"
          python_param { module: "caffe_losses" layer: "Expectation"
                         param_str: "{values: {start: 0, step: 1}}" }
        }

    Reference:
      R. Rothe, R. Timofte, L. Van Gool, "DEX: Deep EXpectation of apparent
      age from a single image", ICCV Workshops 2015.
    """

    PARAMS = (_values_param(),
              Param("softmax", as_bool, True, doc="apply a softmax over the bins first"))
    BOTTOMS = ("scores",)
    TOPS = ("expectation",)

    def layer_setup(self, bottom, top):
        self._values = None           # the K bin values (float32), made for the scores' K

    def check_bottoms(self, bottom):
        _check_scores(self, bottom[0])

    def reshape_tops(self, bottom, top):
        top[0].reshape(bottom[0].data.shape[0], 1)

    def forward(self, bottom, top):
        x, = self.bottom_arrays(bottom)
        if not np.isfinite(x).all():
            self.require_finite(bottom, 0)
        e, self.cache = core.expectation_forward(x, self._values, softmax=self.params["softmax"])
        top[0].data[...] = e

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = core.expectation_backward(self.cache, top[0].diff)


class MeanVarianceLoss(LossLayer):
    """Softmax cross-entropy plus the mean-variance penalties (Pan et al., CVPR 2018).

    With ``p = softmax(scores)`` over K age bins of values ``v_k`` and the
    label ``y`` (a bin index, value ``t = v_y``)::

        m = sum_k p_k v_k,   s = sum_k p_k (v_k - m)^2
        L = mean_n [ -log p_y + lambda_mean (m - t)^2 / 2 + lambda_var s ]

    Backward (derivation in ``caffe_losses.losses.regression.core.mean_variance_forward``)::

        dL/dx_k = top_diff * [ p_k - 1{k=y} + lambda_mean (m - t) p_k (v_k - m)
                               + lambda_var p_k ((v_k - m)^2 - s) ] / N

    The mean term pulls the expected age to the label, the variance term
    sharpens the distribution; the predicted age is ``m`` (an ``Expectation``
    layer on the same scores).

    Shape:
      bottom[0] ``scores``: (N, K) or (N, K, 1, 1), raw.
      bottom[1] ``label``: N bin indices in [0, K) (no gradient).
      top[0]: (1,).

    param_str keys:
      lambda_mean (default 0.2), lambda_var (default 0.05): >= 0.
      values: bin values as in ``Expectation`` (default 0..K-1).

    Prototxt::

        layer {
          name: "loss" type: "Python"
          bottom: "fc100" bottom: "true_age" top: "loss"
          python_param { module: "caffe_losses" layer: "MeanVarianceLoss"
                         param_str: "{lambda_mean: 0.2, lambda_var: 0.05}" }
          loss_weight: 1
        }

    Reference:
      H. Pan, H. Han, S. Shan, X. Chen, "Mean-Variance Loss for Deep Age
      Estimation from a Face", CVPR 2018.
    """

    PARAMS = (Param("lambda_mean", as_float, 0.2, low=0, doc="weight of the mean penalty"),
              Param("lambda_var", as_float, 0.05, low=0, doc="weight of the variance penalty"),
              _values_param())
    BOTTOMS = ("scores", "label")
    DIFF_BOTTOMS = (0,)

    def layer_setup(self, bottom, top):
        super().layer_setup(bottom, top)
        self._values = None           # the K bin values (float32), made for the scores' K

    def check_bottoms(self, bottom):
        n = _check_scores(self, bottom[0])
        check_label_count(self.owner, n, bottom[1].data.shape, "scores", bottom[0].data.shape)

    def loss(self, bottom, top):
        scores, labels = self.bottom_arrays(bottom)
        value, self.cache = core.mean_variance_forward(
            scores, labels, self._values, lambda_mean=self.params["lambda_mean"],
            lambda_var=self.params["lambda_var"], owner=self.owner)
        return value

    def gradients(self, diffs, scale):
        core.mean_variance_backward(self.cache, scale=scale, out=diffs[0])
