"""``DiceLoss``: the soft Dice loss of segmentation (V-Net, generalized Dice, MONAI's keys)."""

from caffe_losses.losses.common import Workspace
from caffe_losses.losses.dice import core
from caffe_losses.glue.base import LossLayer
from caffe_losses.glue.params import Param, as_bool, as_name, as_float, as_float_list, ignore_label_param

__all__ = ["DiceLoss"]


def _as_weights(value):
    if isinstance(value, (list, tuple)):
        return as_float_list(value)
    if isinstance(value, str) and value.strip().lower() in core.WEIGHTINGS:
        return value.strip().lower()
    raise ValueError("must be none, generalized or a list of one weight per class (numbers >= 0)")


class DiceLoss(LossLayer):
    """Soft Dice loss from logits: softmax over the classes or a sigmoid per channel, stable at any logit.

    Forward, per sample ``n`` and class ``c`` (sums over the positions, the
    ignored ones left out of every sum; ``k = 2`` when ``squared``)::

        I = sum p g        P = sum p^k        G = sum g
        D_nc = (2 I + smooth) / (P + G + smooth)        L = 1 - mean_{n,c} D_nc

    with ``weights: generalized`` (Sudre) or a list ``w``, one ratio per sample
    pooled over the classes::

        L = 1 - mean_n (2 sum_c w_c I_c + smooth) / (sum_c w_c (P_c + G_c) + smooth)

    Backward: ``dL/dp = -(w / (K B)) (2 g - (A / B) k p^(k-1))`` for a ratio
    ``A / B`` among ``K`` averaged, through the softmax or sigmoid Jacobian,
    times the loss weight (derived in :mod:`caffe_losses.losses.dice.core`).
    For softmax and sigmoid the layer runs that module's kernels
    (``dice_softmax_kernel``: no one-hot array; ``dice_sigmoid_kernel``), held
    to the reference by ``tests/test_dice_kernel.py``; ``activation: none``
    runs the reference.

    Shape:
      bottom[0] 'scores': (N, C, *spatial) raw logits (no Softmax/Sigmoid layer before it).
      bottom[1] 'label': softmax: N * prod(spatial) class indices in [0, C) or
      ``ignore_label`` ((N, 1, *spatial) or (N, *spatial)); sigmoid: the
      scores' shape, 0 or 1 or ``ignore_label``.
      top[0] 'loss': (1,), in [0, 1].

    ``param_str`` keys (YAML or JSON):
      activation (default softmax): softmax over axis 1 (C >= 2) or sigmoid;
        none: bottom 'scores' holds probabilities already (a Softmax layer's
        top, as V-Net's nets have it; values in [0, 1], labels as for softmax),
        the gradient goes to them (prefer softmax on raw scores: one layer, exact).
      smooth (default 1e-5, > 0): added to numerator and denominator (MONAI).
      squared (default false): V-Net's ``sum p^2 + sum g^2`` denominator.
      weights (default none): none, generalized (``w_c = 1 / G_c^2``; an
        absent class gets the largest weight of the present ones, as MONAI)
        or a list of C weights >= 0.
      batch (default false): sums pooled over the batch (one Dice per class).
      include_background (default true): false drops class 0.
      ignore_label (default none): label value left out of every sum.

    Example::

        layer {
          name: "loss" type: "Python"
          bottom: "score" bottom: "label" top: "loss"
          python_param { module: "caffe_losses" layer: "DiceLoss"
                         param_str: "{weights: generalized, ignore_label: 255}" }
          loss_weight: 1   # Python layers get no default loss weight
        }

    Reference:
      F. Milletari et al., "V-Net", 3DV 2016; C. H. Sudre et al., "Generalised
      Dice overlap as a deep learning loss function for highly unbalanced
      segmentations", DLMIA 2017; MONAI ``DiceLoss`` / ``GeneralizedDiceLoss``.
    """

    PARAMS = (
        Param("activation", as_name(core.ACTIVATIONS), "softmax",
              doc="softmax over axis 1 (C >= 2), sigmoid per element, or none (probabilities in)"),
        Param("smooth", as_float, 1e-5, low=0, low_open=True,
              doc="added to every numerator and denominator, > 0"),
        Param("squared", as_bool, False, doc="V-Net's sum p^2 + sum g^2 denominator"),
        Param("weights", _as_weights, "none", low=0,
              doc="none, generalized (1 / (sum g)^2, Sudre) or a list of C weights >= 0"),
        Param("batch", as_bool, False, doc="pool the sums over the batch"),
        Param("include_background", as_bool, True, doc="false drops class 0"),
        ignore_label_param(),
    )
    BOTTOMS = ("scores", "label")
    DIFF_BOTTOMS = (0,)

    def layer_setup(self, bottom, top):
        super().layer_setup(bottom, top)
        self._workspace = Workspace()       # the kernel's arrays
        self._workspace_back = Workspace()
        # the kernels of the two activations on logits (activation none: the reference)
        self._kernel = {"softmax": (core.dice_softmax_kernel, core.dice_softmax_kernel_backward),
                        "sigmoid": (core.dice_sigmoid_kernel, core.dice_sigmoid_kernel_backward),
                        }.get(self.params["activation"])

    def check_bottoms(self, bottom):
        p = self.params
        core.check_shapes(self.owner, bottom[0].data.shape, bottom[1].data.shape,
                          activation=p["activation"], weights=p["weights"],
                          include_background=p["include_background"])

    def loss(self, bottom, top):
        scores, label = self.bottom_arrays(bottom)
        if self._kernel:
            value, self.cache = self._kernel[0](scores, label, owner=self.owner,
                                                workspace=self._workspace, **self.params)
        else:
            value, self.cache = core.dice_forward(scores, label, owner=self.owner, **self.params)
        return value

    def gradients(self, diffs, scale):
        if self._kernel:
            self._kernel[1](self.cache, scale=scale, out=diffs[0], workspace=self._workspace_back)
        else:
            core.dice_backward(self.cache, scale=scale, out=diffs[0])
