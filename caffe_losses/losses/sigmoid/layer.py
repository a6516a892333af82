"""``WeightedSigmoidCrossEntropyLoss``: Caffe's sigmoid cross-entropy with class weights."""

from caffe_losses.losses.sigmoid import core
from caffe_losses.losses.common import Workspace
from caffe_losses.glue.base import LossLayer
from caffe_losses.glue.params import Param, as_float, as_number_or_list, ignore_label_param, normalization_param

__all__ = ["WeightedSigmoidCrossEntropyLoss"]


def _as_balance(value):
    if isinstance(value, bool):                     # YAML true/false
        return "auto" if value else "none"
    if isinstance(value, str) and value.strip().lower() in core.BALANCES:
        return value.strip().lower()
    raise ValueError("must be one of " + ", ".join(core.BALANCES))


class WeightedSigmoidCrossEntropyLoss(LossLayer):
    """Sigmoid cross-entropy from logits with positive/negative weights, stable at any logit.

    Forward, per element, with logit ``x``, target ``t`` in [0, 1] and
    ``p = sigmoid(x)``::

        l = -[w_p t log(p) + w_n (1 - t) log(1 - p)]
          = w_p t softplus(-x) + w_n (1 - t) softplus(x)

    (``-log p = softplus(-x)``, ``-log(1 - p) = softplus(x)``), with
    ``softplus(+-x) = max(+-x, 0) + log(1 + exp(-|x|))``: ``exp`` only sees
    ``-|x|``, so logits of +-1e4 give exact, finite values (the kernel,
    ``caffe_losses.losses.sigmoid.core.weighted_sigmoid_cross_entropy_kernel``, forms
    ``log(1 + exp(-|x|))`` without NumPy's slow float32 ``log1p``).  The
    loss is ``L = sum(l) / norm``, ``norm`` as Caffe's native layer (below).

    Backward::

        dl/dx = w_n (1 - t) p - w_p t (1 - p) = (w_p t + w_n (1 - t)) p - w_p t

    (from ``d softplus(-x)/dx = -(1 - p)`` and ``d softplus(x)/dx = p``),
    divided by ``norm``, zero where the target is ignored, times the loss
    weight.  With ``w_p = w_n = 1`` both are exactly Caffe's native
    ``SigmoidCrossEntropyLoss``; with ``w_n = 1`` PyTorch's
    ``BCEWithLogitsLoss(pos_weight=w_p)``.

    Shape:
      bottom[0] ``scores``: (N, C, *) raw logits (no Sigmoid layer before it).
      bottom[1] ``target``: as many values, first axis N; in [0, 1] (soft
      targets allowed) or equal to ``ignore_label``.
      top[0] ``loss``: (1,).

    ``param_str`` keys (YAML or JSON):
      pos_weight (default 1): ``w_p``, a number >= 0, or a list with one weight
        per channel along axis 1 (multi-label nets; PyTorch's semantics:
        negatives / positives of that class, e.g. 300 / 100 = 3).
        ``caffe-losses make-pos-weight`` computes the list from a label file.
      cls_weight: an alias of pos_weight, so prototxts written for the widely
        copied ``SigmoidCrossEntropyWeightLossLayer`` Python layer
        (``param_str: "{\\"cls_weight\\":100}"``) work unchanged.
      neg_weight (default 1): ``w_n``, a number >= 0.
      balance (default none): ``auto`` (or true) multiplies the weights, per
        sample, by HED's class balance over its non-ignored elements:
        ``w_p *= |Y-|/|Y|``, ``w_n *= |Y+|/|Y|`` (``|Y+| = sum t``,
        ``|Y-| = sum (1 - t)``); a sample without positives adds nothing.
      ignore_label (default none): targets equal to it add no loss and get a
        zero gradient.
      normalization (default BATCH_SIZE, as the native layer): FULL (all
        elements), VALID (non-ignored elements), BATCH_SIZE (N) or NONE; the
        divisor is at least 1.  It counts elements, not weights.

    Differences from the native layer: the native one ignores an element when
    ``int(t) == ignore_label`` (truncated: ``ignore_label: 0`` drops every
    target in [0, 1), ``255`` also drops 255.7); here ``t == ignore_label``
    exactly, and any other target outside [0, 1] is an error instead of a
    silently wrong loss.  The two agree for targets in [0, 1] with an ignore
    label outside it, and for 0/1 targets with any ignore label.
    That copied layer returns the plain sum: its value is this layer's times
    N (or use ``normalization: NONE``).

    Example::

        layer {
          name: "loss" type: "Python"
          bottom: "score" bottom: "label" top: "loss"
          python_param {
            module: "caffe_losses" layer: "WeightedSigmoidCrossEntropyLoss"
            param_str: "{pos_weight: [12.5, 3.1, 40.0], ignore_label: 255}"
          }
          loss_weight: 1   # Python layers get no default loss weight: without it, no training
        }

    Reference:
      BVLC Caffe ``sigmoid_cross_entropy_loss_layer.cpp``; PyTorch
      ``BCEWithLogitsLoss``; S. Xie and Z. Tu, "Holistically-Nested Edge
      Detection", ICCV 2015 (class-balanced loss, eq. 2).
    """

    PARAMS = (
        Param("pos_weight", as_number_or_list, 1.0, low=0, aliases=("cls_weight",),
              doc="weight of positive targets: a number >= 0 or one per channel (axis 1)"),
        Param("neg_weight", as_float, 1.0, low=0, doc="weight of negative targets, >= 0"),
        Param("balance", _as_balance, "none",
              doc="'auto': per-sample HED balance |Y-|/|Y| (positives), |Y+|/|Y| (negatives)"),
        ignore_label_param(),
        normalization_param("BATCH_SIZE"),
    )
    BOTTOMS = ("scores", "target")
    DIFF_BOTTOMS = (0,)

    def layer_setup(self, bottom, top):
        super().layer_setup(bottom, top)
        self._workspace = Workspace()

    def check_bottoms(self, bottom):
        self.require_same_count(bottom, 0, 1)
        shape = tuple(bottom[0].data.shape)
        other = tuple(bottom[1].data.shape)
        if shape and other and other[0] != shape[0]:
            self.fail(f"bottom 'target' must have the N of 'scores' {shape}: expected "
                      f"{shape[0]} samples, got {other[0]} {other}")
        weights = self.params["pos_weight"]
        if isinstance(weights, list):
            core.check_weight_count(self.owner, "pos_weight", len(weights), shape)

    def loss(self, bottom, top):
        scores, target = self.bottom_arrays(bottom)
        value, self.cache = core.weighted_sigmoid_cross_entropy_kernel(
            scores, target, owner=self.owner, workspace=self._workspace, **self.params)
        return value

    def gradients(self, diffs, scale):
        core.weighted_sigmoid_cross_entropy_backward(self.cache, scale=scale, out=diffs[0])
