"""The ``MarginProduct`` Caffe layer: angular-margin logits with the class weights as a layer blob."""

import math

import caffe
import numpy as np

from caffe_losses.losses.margin import core
from caffe_losses.losses.common import check_label_count
from caffe_losses.glue.fillers import as_filler
from caffe_losses.glue.base import PythonLayer
from caffe_losses.glue.params import FLOAT32_EXACT_INT, REQUIRED, Param, as_bool, as_float, as_int, as_str

__all__ = ["MarginProduct", "ANNEALING", "DEFAULT_SCALE"]

DEFAULT_SCALE = 64.0
GRADIENTS = ("exact", "sphereface")
DEFAULT_M2 = 0.5
ANNEALING = {"base": 1.0, "gamma": 0.0, "power": 1.0, "lambda_min": 0.0, "iteration": 0}
"""SphereFace's annealing keys and its fork's defaults (``MarginInnerProductParameter``)."""


class MarginProduct(PythonLayer):
    """Angular-margin logits for a softmax loss: SphereFace, CosFace / AM-Softmax, ArcFace in one layer.

    The family in one formula (``t = cos(theta_y)``, the cosine between the
    feature and its class weight)::

        z_j = s cos(theta_j)   (j != y)       z_y = s g(theta_y)
        g   = cos(m1 theta + m2) - m3          (insightface's combined margin)

    ``m1 = 1`` gives ArcFace (``m2``), CosFace / AM-Softmax (``m3``) and their
    combination, with ArcFace's monotonic fallback past ``theta + m2 = pi``
    and its ``easy_margin`` option; ``m1 > 1`` is SphereFace's
    ``psi(theta) = (-1)^k cos(m1 theta) - 2k``, mixed as
    ``(lambda cos(theta) + psi) / (1 + lambda)`` with its annealed lambda.
    Formulas and gradients are derived in :mod:`caffe_losses.losses.margin.core`.
    A softmax loss follows (native ``SoftmaxWithLoss``, an ``Accuracy``...).

    Phases: the margin applies in the TRAIN phase when the label bottom is
    given; in the TEST phase the top is the plain ``s cos(theta_j)`` (so
    ``Accuracy`` and the test loss measure the classifier the features serve),
    unless ``margin_in_test: true``; without a label bottom (a deploy net) it
    is always the plain ``s cos(theta_j)``.

    Blobs (learnable, in every snapshot and ``.caffemodel``):
      blobs[0]: the class weights W (num_classes x D), filled at set-up by
        Caffe's own filler (``weight_filler``) from Caffe's generator, so the
        solver's ``random_seed`` repeats them; updated by the solver with the
        layer's first ``param { lr_mult decay_mult }``.  The layer reads
        ``W_j / |W_j|`` and leaves W itself as the solver made it.
      blobs[1] (``m1 > 1`` only): SphereFace's iteration count, the number of
        TRAIN forwards (as the fork counts them, from ``iteration``), so that
        lambda continues where it was after a resume.  The solver must leave
        it alone: give the layer a second ``param { lr_mult: 0 decay_mult: 0 }``;
        a count the solver moved (not an integer) is refused.

    Shape:
      bottom[0] ``features``: (N, D) or (N, D, 1, 1) (flattened after N).
      bottom[1] ``label`` (optional): N integers in [0, num_classes) (or ``ignore_label``).
      top[0] ``logits``: (N, num_classes).
      top[1] ``lambda`` (optional): (1,), SphereFace's lambda (0 when ``m1 = 1``), as its fork's second top.

    param_str keys:
      num_classes (required); scale (default 64) or feature_norm (true: ``s = |x|``,
      SphereFace's); m1 (integer >= 1, default 1); m2 (default 0.5 when
      ``m1 = 1``, else 0); m3 (default 0); easy_margin (default false);
      base, gamma, power, lambda_min, iteration (``m1 > 1``; the fork's
      defaults 1, 0, 1, 0, 0); weight_filler (default xavier); margin_in_test
      (default false); ignore_label (a label that gets no margin); gradient
      (``exact``, default, or ``sphereface``: the fork's gradients and its
      in-place normalisation of W, :func:`core.sphereface_fork_backward`).

    Prototxt::

        layer {
          name: "fc6" type: "Python"
          bottom: "fc5" bottom: "label" top: "fc6"
          python_param { module: "caffe_losses" layer: "MarginProduct"
                         param_str: "{num_classes: 10572, scale: 64, m2: 0.5}" }
          param { lr_mult: 1 decay_mult: 1 }
        }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc6" bottom: "label" top: "loss" }
    """

    PARAMS = (
        Param("num_classes", as_int, REQUIRED, low=1, high=FLOAT32_EXACT_INT,
              doc="number of classes C (rows of the class weights), at most 2**24"),
        Param("scale", as_float, None, low=0, low_open=True,
              doc="s, the logits' scale (default 64); not with feature_norm"),
        Param("feature_norm", as_bool, False, doc="s = |x| (SphereFace) instead of a constant"),
        Param("m1", as_int, 1, low=1, high=64, doc="SphereFace's multiplicative margin, an integer"),
        Param("m2", as_float, None, low=0, high=math.pi, high_open=True,
              doc="ArcFace's additive angular margin, in [0, pi) (default 0.5 when m1 = 1)"),
        Param("m3", as_float, 0.0, doc="CosFace / AM-Softmax's additive cosine margin"),
        Param("easy_margin", as_bool, False, doc="ArcFace's easy_margin: the margin only where cos > 0"),
        Param("base", as_float, None, low=0, doc="SphereFace's lambda base (m1 > 1; default 1)"),
        Param("gamma", as_float, None, low=0, doc="SphereFace's lambda gamma (m1 > 1; default 0)"),
        Param("power", as_float, None, doc="SphereFace's lambda power (m1 > 1; default 1)"),
        Param("lambda_min", as_float, None, low=0, doc="SphereFace's lambda floor (m1 > 1; default 0)"),
        Param("iteration", as_int, None, low=0, high=FLOAT32_EXACT_INT,
              doc="SphereFace's starting iteration (m1 > 1; default 0)"),
        Param("weight_filler", as_filler, as_filler("xavier"), doc=(
            "initial class weights: a Caffe filler type or {type: gaussian, std: 0.01}; default xavier")),
        Param("margin_in_test", as_bool, False,
              doc="apply the margin in the TEST phase too (when a label bottom is given)"),
        Param("ignore_label", as_int, None, doc="samples with this label get no margin"),
        Param("gradient", as_str, "exact", choices=GRADIENTS, doc=(
            "exact (default), or sphereface: the fork's gradients and its in-place normalisation of W "
            "(feature_norm with m2 = m3 = 0 only)")),
    )
    BOTTOMS = ("features",)
    OPTIONAL_BOTTOMS = ("label",)
    TOPS = ("logits",)
    OPTIONAL_TOPS = ("lambda",)

    def layer_setup(self, bottom, top):
        p = self.params
        self._check_settings(p)
        shape = tuple(bottom[0].shape)
        if len(shape) < 2:
            self.fail(f"bottom 'features' must be (N, D) or (N, D, 1, 1); got shape {shape}")
        self.require_nonempty(bottom, (0,))
        self.dim = math.prod(shape[1:])
        self.num_classes = p["num_classes"]
        self.train = self.phase == caffe.TRAIN
        self.margin = len(bottom) > 1 and (self.train or p["margin_in_test"])
        self.add_class_blob(self.num_classes, self.dim, "the class weights", p["weight_filler"], "weight_filler")
        if p["m1"] > 1:
            self.blobs.add_blob(1)
            self.blobs[1].data[0] = p["iteration"]
            self._count = float(p["iteration"])   # what this layer last left in blobs[1]
        self.cache = None
        self.lam = 0.0

    def _check_settings(self, p):
        if p["feature_norm"] and p["scale"] is not None:
            self.fail(f"'scale' and 'feature_norm: true' both set the logits' scale: give one "
                      f"(feature_norm uses |x|, SphereFace's). Received: scale={p['scale']}")
        if p["scale"] is None:
            p["scale"] = DEFAULT_SCALE
        given = [k for k in ANNEALING if p[k] is not None]
        if p["m1"] == 1:
            if given:
                self.fail(f"{', '.join(given)}: SphereFace's lambda annealing is for m1 > 1 only "
                          f"(with m1 = 1 there is no psi to mix with cos)")
            if p["m2"] is None:
                p["m2"] = DEFAULT_M2
            if p["easy_margin"] and p["m2"] == 0:
                self.fail("'easy_margin' is ArcFace's option for its angular margin m2, and m2 is 0 "
                          "here: it would change nothing. Remove it, or set m2 > 0")
        else:
            if (p["m2"] or 0) != 0 or p["m3"] != 0 or p["easy_margin"]:
                self.fail(f"m1 = {p['m1']} is SphereFace's psi(theta), which no fork combines with "
                          f"ArcFace's m2, CosFace's m3 or easy_margin (insightface's cos(m1 theta + m2) "
                          f"- m3 is not monotonic for m1 > 1). Received: m2={p['m2']}, m3={p['m3']}, "
                          f"easy_margin={p['easy_margin']}")
            p["m2"] = 0.0
            for key, default in ANNEALING.items():
                if p[key] is None:
                    p[key] = default
        if p["gradient"] == "sphereface" and not (p["feature_norm"] and p["m2"] == 0 and p["m3"] == 0):
            self.fail(f"'gradient: sphereface' is the gradient of SphereFace's fork, whose logits are "
                      f"feature_norm: true with m2 = m3 = 0. Received: feature_norm={p['feature_norm']}, "
                      f"m2={p['m2']}, m3={p['m3']}")

    def check_bottoms(self, bottom):
        shape = tuple(bottom[0].data.shape)
        if len(shape) < 2 or math.prod(shape[1:]) != self.dim:
            self.fail(f"bottom 'features' must be (N, {self.dim}) or (N, {self.dim}, 1, 1), the feature "
                      f"size of the class weights ({self.num_classes} x {self.dim}); got shape {shape}")
        if len(bottom) > 1:
            check_label_count(self.owner, shape[0], bottom[1].data.shape, "features", shape)

    def reshape_tops(self, bottom, top):
        top[0].reshape(bottom[0].data.shape[0], self.num_classes)
        if len(top) > 1:
            top[1].reshape(1)

    def _lambda(self):
        """SphereFace's lambda; a TRAIN forward counts one iteration first, as the fork's Forward does."""
        p = self.params
        count = float(self.blobs[1].data[0])
        if count != self._count:             # weights loaded (resume, copy_from), or the solver moved it
            if not (count.is_integer() and 0 <= count <= FLOAT32_EXACT_INT):
                self.fail(f"blob 1, SphereFace's iteration count, holds {count}, not an iteration: the "
                          f"solver moved it. Give the layer a second param {{ lr_mult: 0 decay_mult: 0 }} "
                          f"(after the class weights' param {{ ... }})")
        if self.train:
            count += 1
            self.blobs[1].data[0] = count
        self._count = count
        return core.sphereface_lambda(count, base=p["base"], gamma=p["gamma"], power=p["power"],
                                      lambda_min=p["lambda_min"])

    def forward(self, bottom, top):
        p = self.params
        data = self.bottom_arrays(bottom)
        self.cache = None
        if p["m1"] > 1 and (self.margin or len(top) > 1):
            self.lam = self._lambda()
        labels = data[1] if self.margin else None
        if p["gradient"] == "sphereface":      # the fork's forward normalises its weights in place
            w = self.blobs[0].data
            norms = core.row_norms(w)
            if (norms > 0).all() and np.isfinite(norms).all():
                self.blobs[0].data[...] = w / norms[:, None]
        logits, cache = core.margin_forward(
            data[0], self.blobs[0].data, labels, scale=p["scale"], feature_norm=p["feature_norm"],
            m1=p["m1"], m2=p["m2"], m3=p["m3"], easy_margin=p["easy_margin"], lam=self.lam,
            ignore_label=p["ignore_label"], owner=self.owner)
        if not np.isfinite(logits).all():    # features near float32's limit with feature_norm
            self.fail("the logits overflow float32 (|x| * cos with feature_norm): bottom 'features' "
                      f"holds values up to {float(np.abs(data[0]).max()):g}")
        top[0].data[...] = logits
        if len(top) > 1:
            top[1].data[0] = self.lam
        self.cache = cache

    def backward(self, top, propagate_down, bottom):
        if self.cache is None:
            self.fail("backward without a forward this layer accepted (the last forward was refused)")
        if len(bottom) > 1 and propagate_down[1]:
            bottom[1].diff[...] = 0
        if self.params["gradient"] == "sphereface":
            core.sphereface_fork_backward(self.cache, top[0].diff, out_w=self.blobs[0].diff, accumulate_w=True,
                                          out_x=bottom[0].diff if propagate_down[0] else None)
        elif propagate_down[0]:
            core.margin_backward(self.cache, top[0].diff, out_x=bottom[0].diff,
                                 out_w=self.blobs[0].diff, accumulate_w=True)
        else:
            core.margin_backward(self.cache, top[0].diff, out_w=self.blobs[0].diff, accumulate_w=True)
