"""``SigmoidFocalLoss`` and ``SoftmaxFocalLoss``: focal loss (Lin et al. 2017) as Caffe Python layers.

The maths, its derivation and the ``gamma < 1`` limit live in
:mod:`caffe_losses.losses.focal.core`.
"""

from caffe_losses.losses.focal import core
from caffe_losses.glue.base import LossLayer
from caffe_losses.glue.params import (Param, as_float, as_int, as_number_or_list, ignore_label_param,
                                     normalization_param)

__all__ = ["SigmoidFocalLoss", "SoftmaxFocalLoss"]


def _as_alpha_or_none(value):
    """A number (range-checked by the Param) or ``none`` / ``null``: no alpha."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
        return None
    return as_float(value)


def _gamma():
    return Param("gamma", as_float, 2.0, low=0, doc="the focusing exponent, >= 0 (0: cross-entropy)")


class SigmoidFocalLoss(LossLayer):
    """Sigmoid focal loss on logits, per element, as torchvision's ``sigmoid_focal_loss``.

    Forward, per element, logit ``x``, target ``t`` in [0, 1], ``p = sigmoid(x)``::

        ce  = t softplus(-x) + (1 - t) softplus(x)      (BCE with logits)
        p_t = p t + (1 - p)(1 - t)
        l   = a ce (1 - p_t)^gamma,   a = alpha t + (1 - alpha)(1 - t)  (1 when alpha is none)

    ``L = sum(l) / norm`` over the non-ignored elements.

    Backward, with ``q = 1 - p_t`` and ``r = p (1 - p) / q`` (in [0, 1])::

        dl/dx = a q^gamma [(p - t) + gamma ce (1 - 2t) r]

    ``q^(gamma - 1)`` (infinite at ``q = 0`` for ``gamma < 1``) is never
    formed: where ``q = 0`` the gradient is its limit, 0.  Logits of +-1e4
    give finite values.  ``gamma: 0, alpha: none`` is Caffe's
    ``SigmoidCrossEntropyLoss``.

    Shape:
      bottom[0] ``scores``: (N, *) raw logits.
      bottom[1] ``targets``: as many values, N first; in [0, 1] or ``ignore_label``.
      top[0] ``loss``: (1,).

    ``param_str`` keys:
      gamma (default 2): >= 0.
      alpha (default 0.25): in [0, 1], the weight of the positive term
        (``1 - alpha`` for the negative), or ``none``.
      ignore_label (default none).
      normalization (default VALID): VALID, FULL, BATCH_SIZE, NONE, or
        POSITIVES (the number of targets equal to 1, at least 1: RetinaNet's
        division by the positive anchors).

    Example::

        layer {
          name: "loss" type: "Python"
          bottom: "cls_score" bottom: "cls_target" top: "loss"
          python_param { module: "caffe_losses" layer: "SigmoidFocalLoss"
                         param_str: "{gamma: 2, alpha: 0.25, ignore_label: -1, normalization: POSITIVES}" }
          loss_weight: 1   # Python layers get no default loss weight
        }

    Reference:
      T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017;
      torchvision ``ops/focal_loss.py``.
    """

    PARAMS = (
        _gamma(),
        Param("alpha", _as_alpha_or_none, 0.25, low=0, high=1,
              doc="weight of the positive term in [0, 1], or none"),
        ignore_label_param(),
        normalization_param("VALID", core.SIGMOID_NORMALIZATIONS,
                            doc="VALID, FULL, BATCH_SIZE, NONE or POSITIVES (targets equal to 1); at least 1"),
    )
    BOTTOMS = ("scores", "targets")
    DIFF_BOTTOMS = (0,)

    def check_bottoms(self, bottom):
        self.require_same_count(bottom, 0, 1)
        shape, other = tuple(bottom[0].data.shape), tuple(bottom[1].data.shape)
        if shape and other and other[0] != shape[0]:
            self.fail(f"bottom 'targets' must have the N of 'scores' {shape}: expected "
                      f"{shape[0]} samples, got {other[0]} {other}")

    def loss(self, bottom, top):
        scores, targets = self.bottom_arrays(bottom)
        value, self.cache = core.sigmoid_focal_forward(scores, targets, owner=self.owner,
                                                       **self.params)
        return value

    def gradients(self, diffs, scale):
        core.sigmoid_focal_backward(self.cache, scale=scale, out=diffs[0])


class SoftmaxFocalLoss(LossLayer):
    """Softmax focal loss on raw scores, as ``SoftmaxWithLoss`` takes them.

    Forward, per position, label ``y``, ``p = softmax(x)`` along ``axis``::

        l = -alpha_y (1 - p_y)^gamma log p_y

    ``L = sum(l) / norm`` over the non-ignored positions (``log p_y`` from
    the max-shifted scores, never ``log`` of a rounded ``p``).

    Backward, ``q = 1 - p_y``::

        dl/dx_k = alpha_y (p_k - [k == y]) q^gamma (1 + gamma p_y (-log p_y) / q)

    where ``-log(1 - q) / q`` tends to 1 at ``q = 0``: the gradient there is
    its limit, finite for every ``gamma >= 0`` (``gamma < 1`` included).
    ``gamma: 0, alpha: 1`` is Caffe's ``SoftmaxWithLoss`` (tested in one net).

    Shape:
      bottom[0] ``scores``: (N, C, *), classes on ``axis``.
      bottom[1] ``label``: one integer in [0, C) or ``ignore_label`` per
        position (N x 1 x H x W, or N x H x W, for N x C x H x W).
      top[0] ``loss``: (1,); top[1] ``prob`` (optional): the softmax,
        shaped like the scores (not back-propagated, as in Caffe).

    ``param_str`` keys:
      gamma (default 2): >= 0.
      alpha (default 1): a number >= 0 (it scales the loss: with one
        number for every class it balances nothing), or a list of C
        per-class weights ``alpha_y``.
      axis (default 1), ignore_label (default none), normalization (VALID
        (default), FULL, BATCH_SIZE, NONE): as ``SoftmaxWithLoss``.

    Example::

        layer {
          name: "loss" type: "Python"
          bottom: "score" bottom: "label" top: "loss"
          python_param { module: "caffe_losses" layer: "SoftmaxFocalLoss"
                         param_str: "{gamma: 2, alpha: [0.25, 1, 1], ignore_label: 255}" }
          loss_weight: 1   # Python layers get no default loss weight
        }

    Reference:
      T.-Y. Lin et al., ICCV 2017; the forks' softmax ``FocalLoss`` layers
      (``caffe-losses migrate`` translates them).
    """

    PARAMS = (
        _gamma(),
        Param("alpha", as_number_or_list, 1.0, low=0,
              doc="a number >= 0 or a list of one weight per class"),
        Param("axis", as_int, 1, low=-32, high=31, doc="the class axis of the scores"),
        ignore_label_param(),
        normalization_param("VALID", core.SOFTMAX_NORMALIZATIONS,
                            doc="VALID, FULL, BATCH_SIZE or NONE, as SoftmaxWithLoss; at least 1"),
    )
    BOTTOMS = ("scores", "label")
    OPTIONAL_TOPS = ("prob",)
    DIFF_BOTTOMS = (0,)

    def check_bottoms(self, bottom):
        shape = tuple(bottom[0].data.shape)
        _, classes, _ = core.check_shapes(self.owner, shape, tuple(bottom[1].data.shape),
                                          self.params["axis"])
        core.check_alpha(self.owner, self.params["alpha"], classes)

    def reshape_extra_tops(self, bottom, top):
        if len(top) > 1:
            top[1].reshape(*bottom[0].data.shape)

    def loss(self, bottom, top):
        scores, label = self.bottom_arrays(bottom)
        value, self.cache = core.softmax_focal_forward(scores, label, owner=self.owner,
                                                       **self.params)
        if len(top) > 1:
            core.softmax_focal_prob(self.cache, out=top[1].data)
        return value

    def gradients(self, diffs, scale):
        core.softmax_focal_backward(self.cache, scale=scale, out=diffs[0])

