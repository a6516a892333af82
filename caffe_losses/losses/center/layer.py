"""The ``CenterLoss`` Caffe layer: center loss with centers kept as a layer blob."""

import math
import warnings


import caffe

from caffe_losses.losses.center import core
from caffe_losses.losses.common import check_label_count
from caffe_losses.glue.fillers import as_filler
from caffe_losses.glue.base import LossLayer
from caffe_losses.glue.params import FLOAT32_EXACT_INT, REQUIRED, Param, as_float, as_int, normalization_param
from caffe_losses.files.safety import overflows_float32

__all__ = ["CenterLoss", "CenterUpdateWarning"]

UPDATES = ("direct", "solver")
DEFAULT_ALPHA = 0.5
# Caffe's Blob refuses (aborts on) more than INT_MAX values.


class CenterUpdateWarning(UserWarning):
    """The centers of a ``update: direct`` CenterLoss were also moved by someone else."""


def _as_update(value):
    if not isinstance(value, str) or value.strip().lower() not in UPDATES:
        raise ValueError("must be one of " + ", ".join(UPDATES))
    return value.strip().lower()


class CenterLoss(LossLayer):
    """Center loss (Wen et al. 2016): pulls each feature towards its class center.

    Loss, for N features ``x_i`` (D values each) with labels ``y_i`` and the
    centers ``c_j`` (one row per class, the layer's own blob)::

        L = (1/2) sum_i ||x_i - c_{y_i}||^2 / norm

    ``norm`` is N for ``normalization`` BATCH_SIZE (default), FULL and VALID
    (one position per sample, nothing ignored), 1 for NONE.  The paper's
    weight lambda is the prototxt's ``loss_weight`` (0.01 in the authors'
    MNIST example); Caffe writes it into the top's diff.

    Backward (features): ``L`` depends on ``x_i`` only through its own term,
    so ``dL/dx_i = (x_i - c_{y_i}) / norm``, times the loss weight.  The
    gradient uses the centers of the forward pass, i.e. from *before* this
    iteration's center update.  No gradient goes to the labels (a zero diff
    under ``force_backward``).

    Center update (paper, eq. (4)), once per backward pass, in the TRAIN
    phase only (a TEST net never moves them)::

        delta_c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)      n_j = #{i: y_i = j}
        c_j      <- c_j - alpha * delta_c_j

    Classes absent from the batch keep their center.  ``delta_c`` is not the
    gradient of ``L`` and is not scaled by the loss weight: it is a damped
    running mean of each class's features.  Two ways to apply it:

    * ``update: direct`` (default): the layer applies the rule itself in
      ``backward``.  The solver must leave the centers alone: give the layer
      ``param { lr_mult: 0 decay_mult: 0 }`` (with lr_mult 0 no solver moves
      a blob; decay_mult 0 keeps weight decay out of the diff as well).  If
      the centers change between a backward and the next TRAIN forward, the
      layer warns once (``CenterUpdateWarning``).
    * ``update: solver``: the layer adds ``delta_c`` to the centers' diff and
      the solver applies it with its own rate, exactly as the authors' Caffe
      code (ydwen/caffe-face) does: the paper's alpha is then
      ``base_lr * lr_mult`` of the centers (give them e.g.
      ``param { lr_mult: <alpha / base_lr> decay_mult: 0 }``), and the
      solver adds its momentum, weight decay (unless ``decay_mult: 0``) and
      ``iter_size`` averaging on top.  Plain SGD (no momentum, no decay) at
      rate ``base_lr * lr_mult = alpha`` gives exactly ``update: direct``;
      at rate 1 it is ``update: direct`` with ``alpha: 1``.  The ``alpha`` key
      is refused in this mode, since the solver's rate takes its place.

    The centers are a parameter blob (``num_classes x D``, zeros at set-up
    unless ``center_filler`` says otherwise):
    they are in ``net.params[<layer name>][0]``, saved in every snapshot
    ``.caffemodel``/``.solverstate`` and restored on resume (``-snapshot``) or
    fine-tuning (``-weights``), and shared with the TEST net like any weight.
    Caffe calls this layer's backward only when something below needs a
    gradient or the centers have a non-zero ``lr_mult``; with frozen features
    and ``update: direct`` the centers would not move.

    A loss that does not fit float32 (features around 1e20) is refused in
    forward, before backward could move any center with that batch; a
    backward after a refused forward is an error, not a center update.

    Several GPUs: Caffe's NCCL training (``python/train.py``) runs one solver
    per GPU and all-reduces the parameter diffs; ``update: direct`` would move
    each GPU's copy of the centers on its own, so the layer refuses it when
    ``caffe.solver_count() > 1``: use ``update: solver``.

    Gradient checks: a checker that runs forward, backward, then perturbed
    forwards (Caffe's GradientChecker, ``caffe_losses.glue.testing``,
    ``caffe-losses gradcheck``) sees the centers of the backward's
    ``update: direct`` step in its finite differences, and reports a
    mismatch.  Check with ``update: solver`` (backward only writes the
    centers' diff; no solver runs, so the centers stay fixed) or in a TEST
    net; the feature gradient is the same code in every mode.

    Shape:
      bottom[0] ``features``: (N, D) or (N, D, 1, 1) (dims after the first are
      flattened; D is fixed at set-up).
      bottom[1] ``label``: N integers in [0, num_classes), any shape with N
      values, e.g. (N,) or (N, 1, 1, 1).
      top[0] ``loss``: (1,).
      blobs[0] centers: (num_classes, D).

    param_str keys:
      num_classes (required): number of classes C (rows of the centers), at
        most 2**24 (labels are float32 in Caffe, exact up to there); the
        centers must fit a Caffe blob (C * D at most 2**31 - 1) and the free
        memory (data and diff, 8 bytes a value), checked before allocating.
      alpha (default 0.5): center rate, in (0, 1]; update: direct only.
      normalization (default BATCH_SIZE): FULL, VALID, BATCH_SIZE or NONE.
      update (default direct): ``direct`` or ``solver``, as above.
      center_filler (default zeros): the centers' initial values, as
        caffe-face's ``center_loss_param { center_filler }``: a Caffe filler
        type (``xavier``, ``gaussian``, ``uniform``, ``msra``, ``constant``,
        ``positive_unitball``) or a mapping with its FillerParameter fields,
        e.g. ``{type: gaussian, std: 0.01}`` (:mod:`caffe_losses.glue.fillers`).
        The values are drawn by Caffe's own filler from Caffe's generator, so
        the solver's ``random_seed`` (or ``caffe.set_random_seed``) repeats
        them, and they equal caffe-face's centers for the same seed.

    Prototxt::

        layer {
          name: "center_loss" type: "Python"
          bottom: "feature"      # N x 2, e.g. the InnerProduct before the classifier
          bottom: "label"
          top: "center_loss"
          python_param { module: "caffe_losses" layer: "CenterLoss"
                         param_str: "{num_classes: 10, alpha: 0.5}" }
          param { lr_mult: 0 decay_mult: 0 }   # update: direct moves the centers itself
          loss_weight: 0.01      # lambda; Python layers have no default loss weight
        }

    Reference:
      Y. Wen, K. Zhang, Z. Li, Y. Qiao, "A Discriminative Feature Learning
      Approach for Deep Face Recognition", ECCV 2016.
    """

    PARAMS = (
        Param("num_classes", as_int, REQUIRED, low=1, high=FLOAT32_EXACT_INT, doc=(
            "number of classes (rows of the centers), at most 2**24 = 16777216: labels reach the "
            "layer as float32, exact only up to there")),
        Param("alpha", as_float, None, low=0, low_open=True, high=1,
              doc="center rate, in (0, 1] (default 0.5; update: direct only)"),
        normalization_param("BATCH_SIZE"),
        Param("update", _as_update, "direct", choices=UPDATES, doc=(
            "direct (the layer moves the centers; set param { lr_mult: 0 decay_mult: 0 }) or "
            "solver (the layer adds delta_c to the centers' diff; rate = base_lr * lr_mult)")),
        Param("center_filler", as_filler, None, doc=(
            "initial centers: a Caffe filler type (xavier, gaussian, ...) or {type: ..., std: ...}; "
            "default zeros")),
    )
    BOTTOMS = ("features", "label")
    DIFF_BOTTOMS = (0,)

    def layer_setup(self, bottom, top):
        super().layer_setup(bottom, top)
        self.train = self.phase == caffe.TRAIN
        if self.train and self.params["update"] == "direct" and caffe.solver_count() > 1:
            # Caffe's multi-GPU training (python/train.py, NCCL) runs one solver per
            # GPU and all-reduces the parameter diffs: centers moved inside each
            # GPU's backward would drift apart.
            self.fail(f"update: direct cannot train on {caffe.solver_count()} GPUs: each GPU would "
                      f"move its own copy of the centers and they would drift apart. Use "
                      f"'update: solver' (the centers' diff is all-reduced like any parameter's) "
                      f"with param {{ lr_mult: <alpha / base_lr> decay_mult: 0 }}")
        shape = tuple(bottom[0].shape)
        if len(shape) < 2:
            self.fail(f"bottom 'features' must be (N, D) or (N, D, 1, 1); got shape {shape}")
        self.require_nonempty(bottom)
        self.dim = math.prod(shape[1:])
        self.num_classes = self.params["num_classes"]
        if self.params["update"] == "solver" and self.params["alpha"] is not None:
            self.fail(f"'alpha' is not used with update: solver: the solver's rate (base_lr * lr_mult "
                      f"of the centers) is the center rate there. Remove alpha, or use update: direct. "
                      f"Received: alpha={self.params['alpha']}")
        if self.params["alpha"] is None:
            self.params["alpha"] = DEFAULT_ALPHA
        # the centers: learnable, snapshotted
        self.add_class_blob(self.num_classes, self.dim, "the centers", self.params["center_filler"],
                            "center_filler")
        self.cache = None             # the last accepted forward's, for backward
        self._after_update = None     # the centers' bytes this layer left, for the direct-mode guard
        self._warned = False

    def check_bottoms(self, bottom):
        shape = tuple(bottom[0].data.shape)
        if len(shape) < 2 or math.prod(shape[1:]) != self.dim:
            self.fail(f"bottom 'features' must be (N, {self.dim}) or (N, {self.dim}, 1, 1), the "
                      f"feature size of the centers ({self.num_classes} x {self.dim}); got shape {shape}")
        check_label_count(self.owner, shape[0], bottom[1].data.shape, "features", shape)

    def loss(self, bottom, top):
        centers = self.blobs[0].data        # fresh view: the TEST net may share another buffer
        if self.train and self._after_update is not None:
            self._check_untouched(centers)
        self.cache = None    # a refused batch leaves backward nothing to move the centers with
        x, labels = self.bottom_arrays(bottom)
        value, cache = core.center_loss_forward(
            x, labels, centers, normalization=self.params["normalization"], owner=self.owner)
        if overflows_float32(value):   # checked as the float32 Caffe receives, before any center moves
            self.fail_non_finite(bottom, value, indexes=(0,), extra=(("the centers (layer blob 0)", centers),))
        self.cache = cache
        return value

    def _accepted_cache(self):
        if self.cache is None:
            self.fail("backward without a forward this layer accepted: the last forward was refused "
                      "(see its error), so the centers stay where they are")
        return self.cache

    def gradients(self, diffs, scale):
        # the feature gradient, from the forward's x - c_y (pre-update centers)
        core.center_loss_backward(self._accepted_cache(), scale=scale, out=diffs[0])

    def backward_params(self):
        # the center update, TRAIN phase only
        self._accepted_cache()
        if not self.train:
            return
        if self.params["update"] == "direct":
            centers = self.blobs[0].data
            centers -= core.center_update(self.cache, scale=self.params["alpha"])
            self._after_update = centers.tobytes()
        else:
            # accumulate, as Caffe layers do with parameter diffs (iter_size > 1);
            # the solver zeroes the diffs before each iteration
            self.blobs[0].diff[...] += core.center_update(self.cache)

    def _check_untouched(self, centers):
        if self._warned or centers.tobytes() == self._after_update:
            return
        self._warned = True
        warnings.warn(
            f"{self.owner}: the centers changed between the last backward and this forward although "
            f"update is 'direct'. Unless you loaded weights in between, the solver is moving them as "
            f"well: add 'param {{ lr_mult: 0 decay_mult: 0 }}' to the layer, or use update: solver.",
            CenterUpdateWarning, stacklevel=3)
