"""Infogain loss layers and the ``Constant`` layer that feeds H as a bottom.

* :class:`SoftmaxWithInfogainLoss`: raw scores in, softmax inside, exact.
* :class:`InfogainLoss`: probabilities in (after a Softmax layer), Caffe's
  classic form with ``log(max(p, eps))``.
* :class:`Constant`: a blob read once from a file and emitted every
  iteration, so H can be a third bottom without a data layer that advances.

The maths lives in :mod:`caffe_losses.losses.infogain.core`; H files are read by
:mod:`caffe_losses.files.hmatrix`.
"""

import warnings

import numpy as np

from caffe_losses.losses.infogain import core
from caffe_losses.losses.common import Workspace
from caffe_losses.files.hmatrix import load_blob, require_float32, zero_rows
from caffe_losses.glue.base import LossLayer, PythonLayer
from caffe_losses.glue.params import Param, REQUIRED, as_float, as_int, as_str, ignore_label_param, normalization_param

__all__ = ["SoftmaxWithInfogainLoss", "InfogainLoss", "Constant"]

_SOURCE = Param("source", as_str, None, doc=(
    "H file: .binaryproto (1 x 1 x L x L, as caffe.io.array_to_blobproto or "
    "caffe-losses make-h write it) or .npy (read with allow_pickle=False); "
    "relative to the working directory; omit it when H is the third bottom"))
# a Caffe blob has at most 32 axes (kMaxBlobAxes): any other axis is refused at once, as Caffe's
# CanonicalAxisIndex would abort on it
_AXIS = Param("axis", as_int, 1, low=-32, high=31,
              doc="the class axis of the predictions (1 for N x C and N x C x H x W)")


class _InfogainLayer(LossLayer):
    """What both infogain losses share: H from ``source`` or a bottom, shapes, buffers."""

    OPTIONAL_BOTTOMS = ("H",)
    DIFF_BOTTOMS = (0,)

    def layer_setup(self, bottom, top):
        super().layer_setup(bottom, top)
        source = self.params["source"]
        if len(bottom) == 3 and source is not None:
            self.fail(f"H is given twice: by 'source' ({source!r}) and by the third bottom "
                      f"'{self.bottom_name(2)}'; keep one")
        if len(bottom) == 2 and source is None:
            self.fail("needs H: set 'source' in param_str (a .binaryproto or .npy file, e.g. "
                      "made with caffe-losses make-h) or give H as a third bottom "
                      "(e.g. the top of a Constant layer)")
        self._h_name = None
        self._h_source = None
        if source is not None:
            blob = load_blob(source, owner=self.owner, key="source")
            self._h_name = f"'source' file '{source}'"
            # validated now (shape, finite, non-negative, in float32 as the
            # layer uses it: no value beyond float32); the class count in
            # reshape.  All-zero rows are valid (a class weighted 0), as in
            # Caffe's InfogainLoss; one that only float32 makes is warned of.
            require_float32(blob, owner=self.owner, name=self._h_name)
            self._h_source = core.infogain_matrix(blob, owner=self.owner, name=self._h_name,
                                                  dtype=np.float32)
            _, underflow = zero_rows(blob)
            if underflow.size:
                warnings.warn(f"{self.owner}: {self._h_name} has rows for class(es) "
                              f"{underflow[:10].tolist()} whose values are all 0 in float32 (the "
                              f"type Caffe computes in), though not in the file: those classes add "
                              f"no loss, as in Caffe", stacklevel=2)
        self._h_bottom_bytes = None    # last H seen on the bottom, and its InfogainMatrix
        self._h_bottom = None
        self._classes = None           # C of the current scores shape
        self._workspace = Workspace()  # the kernel's arrays

    def check_bottoms(self, bottom):
        h_source = h_bottom = None
        if self._h_source is not None:
            h_source = (self._h_name, self._h_source.num_classes)
        else:
            h_bottom = bottom[2].data.shape
        _, self._classes, _ = core.check_shapes(self.owner, bottom[0].data.shape, bottom[1].data.shape,
                                                self.params["axis"], self.bottom_name(0),
                                                h_bottom=h_bottom, h_source=h_source)

    def current_h(self, data):
        """H for this forward: from ``source``, or the H bottom's ``data`` (re-validated when it changed)."""
        if self._h_source is not None:
            return self._h_source
        key = data.tobytes()
        if key != self._h_bottom_bytes:
            self._h_bottom = core.infogain_matrix(data, self._classes, owner=self.owner,
                                                  name="bottom 'H'", dtype=np.float32)
            self._h_bottom_bytes = key
        return self._h_bottom

    def gradients(self, diffs, scale):
        self._backward(self.cache, scale=scale, out=diffs[0])


class SoftmaxWithInfogainLoss(_InfogainLayer):
    """Infogain loss on raw scores with the softmax inside: exact at any scale.

    Forward, with ``p = softmax(scores)`` along ``axis`` and labels ``y``::

        L = -(1/norm) * sum_i sum_l H[y_i, l] * log p_il

    with ``log p`` taken as ``x - logsumexp(x)`` (never ``log`` of a rounded
    ``p``), so logits of 1e4 give exact, finite values.

    Backward (BVLC/caffe #3855): ``d log p_il / d x_ik = [l == k] - p_ik``,
    hence::

        dL/dx_ik = (p_ik * sum_l H[y_i, l] - H[y_i, k]) / norm

    times the loss weight; 0 at ignored positions. With H = identity this is
    ``SoftmaxWithLoss`` (``p - onehot(y)``); with H diagonal, a class-weighted
    softmax loss.

    Caffe's native ``InfogainLoss`` computes the same but clamps ``log p`` at
    ``log(1e-20) = -46.05``, so it underestimates the loss of confident
    mistakes; both agree everywhere else (tested).

    Shape:
      bottom[0] 'scores': (N, C, *) raw scores, classes on ``axis``;
      bottom[1] 'label': N * prod(*) integers in [0, C) or ``ignore_label``
      (e.g. (N,) for (N, C); (N, H, W) or (N, 1, H, W) for (N, C, H, W));
      bottom[2] 'H' (optional): (C, C) or (1, 1, C, C), e.g. a Constant top;
      top[0] 'loss': (1,);
      top[1] 'prob' (optional): softmax probabilities, shaped like scores
      (not back-propagated, as in Caffe).

    param_str keys:
      source: the H file (.binaryproto or .npy); or H as bottom[2], not both.
      axis (default 1), ignore_label (default none),
      normalization (VALID (default), FULL, BATCH_SIZE, NONE).

    H must be C x C, finite and non-negative, and hold similarities or
    class weights (``caffe-losses make-h`` makes one).  An all-zero
    row is valid, as in Caffe's InfogainLoss: samples of that class add no
    loss and no gradient (a class weighted 0, e.g. a void class).  A file is
    checked as the float32 the layer uses: a value beyond 3.4e38 is refused,
    a row whose values all round to 0 is warned of.

    Prototxt::

        layer {
          name: "loss" type: "Python"
          bottom: "fc8" bottom: "label" top: "loss"
          python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss"
                         param_str: "{source: H.binaryproto}" }
          loss_weight: 1   # Python layers get no default loss weight
        }

    With the probabilities as a second top, give one loss weight per top::

        top: "loss" top: "prob"  loss_weight: 1 loss_weight: 0

    Reference:
      BVLC/caffe PR #3855 (the fused InfogainLoss, 2017); the infogain
      matrix: Caffe's ``InfogainLossLayer``.
    """

    PARAMS = (_SOURCE, _AXIS, ignore_label_param(), normalization_param("VALID"))
    BOTTOMS = ("scores", "label")
    OPTIONAL_TOPS = ("prob",)
    _backward = staticmethod(core.softmax_infogain_kernel_backward)   # of the forward's kernel

    def reshape_extra_tops(self, bottom, top):
        if len(top) > 1:
            top[1].reshape(*bottom[0].data.shape)

    def loss(self, bottom, top):
        p = self.params
        x, label, *h = self.bottom_arrays(bottom)
        value, self.cache = core.softmax_infogain_kernel(
            x, label, self.current_h(h[0] if h else None), axis=p["axis"],
            ignore_label=p["ignore_label"], normalization=p["normalization"], owner=self.owner,
            workspace=self._workspace)
        if len(top) > 1:
            core.softmax_infogain_kernel_prob(self.cache, out=top[1].data)
        return value


class InfogainLoss(_InfogainLayer):
    """Infogain loss on probabilities (a Softmax layer's output), Caffe's classic form.

    Forward::

        L = -(1/norm) * sum_i sum_l H[y_i, l] * log(max(p_il, eps))

    Backward: the derivative of ``log p`` is ``1/p``, hence the division by
    ``p`` that surprises readers of Caffe's code::

        dL/dp_ik = -H[y_i, k] / (max(p_ik, eps) * norm)

    times the loss weight, 0 at ignored positions; below ``eps`` the same
    formula with ``eps`` (as Caffe), a finite push up rather than 0.
    Composed with the Softmax backward it equals
    ``(p * rowsum(H)[y] - H[y]) / norm``, the gradient of
    :class:`SoftmaxWithInfogainLoss`, which is exact where this form is not
    (``p`` rounded to 0 in float32 below ``exp(-103)``): prefer it.

    Probabilities outside [0, 1] (raw scores fed by mistake) raise an error.

    Shape:
      bottom[0] 'prob': (N, C, *) probabilities in [0, 1], classes on ``axis``;
      bottom[1] 'label': N * prod(*) integers in [0, C) or ``ignore_label``;
      bottom[2] 'H' (optional): (C, C) or (1, 1, C, C);
      top[0] 'loss': (1,).

    param_str keys:
      source, axis (default 1), ignore_label, normalization (default VALID),
      as :class:`SoftmaxWithInfogainLoss`; eps (default 1e-20, Caffe's
      ``kLOG_THRESHOLD``), the clamp of ``p``.

    Prototxt::

        layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
        layer {
          name: "loss" type: "Python"
          bottom: "prob" bottom: "label" top: "loss"
          python_param { module: "caffe_losses" layer: "InfogainLoss"
                         param_str: "{source: H.binaryproto}" }
          loss_weight: 1   # Python layers get no default loss weight
        }

    Reference:
      Caffe's ``InfogainLossLayer`` before BVLC/caffe #3855.
    """

    PARAMS = (_SOURCE, _AXIS, ignore_label_param(), normalization_param("VALID"),
              Param("eps", as_float, 1e-20, low=0, low_open=True, high=1,
                    doc="clamp of p inside log (Caffe's kLOG_THRESHOLD)"))
    BOTTOMS = ("prob", "label")
    _backward = staticmethod(core.infogain_backward)

    def loss(self, bottom, top):
        p = self.params
        x, label, *h = self.bottom_arrays(bottom)
        value, self.cache = core.infogain_forward(
            x, label, self.current_h(h[0] if h else None), axis=p["axis"],
            ignore_label=p["ignore_label"], normalization=p["normalization"], eps=p["eps"],
            owner=self.owner)
        return value


class Constant(PythonLayer):
    """A blob read once from a file and emitted unchanged every iteration.

    This is how H becomes a third bottom of an infogain loss without an
    HDF5/LMDB data layer (which would re-read it every iteration, and whose
    every data layer advances together).

    Forward: ``top = blob`` (copied every iteration, so a layer that writes
    into its bottom in place cannot change the next iteration's value).
    Backward: none (no bottoms, no parameters).

    Shape:
      no bottoms; top[0]: the stored shape, e.g. (1, 1, L, L) for an H written
      by ``caffe-losses make-h``, (L, L) for a ``.npy``.

    param_str keys:
      source (required): a .binaryproto (BlobProto) or .npy file (read with
      allow_pickle=False), relative to the working directory; at least one
      value, all finite and within float32 (at most 3.4e38 in magnitude).

    Prototxt::

        layer {
          name: "H" type: "Python" top: "H"
          python_param { module: "caffe_losses" layer: "Constant"
                         param_str: "{source: H.binaryproto}" }
        }
        layer {
          name: "loss" type: "Python"
          bottom: "fc8" bottom: "label" bottom: "H" top: "loss"
          python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" }
          loss_weight: 1
        }

    Reference:
      the Stack Overflow question "InfogainLoss layer" (2015), which asks how
      to feed H; BVLC/caffe #3855 (H as the optional third bottom).
    """

    PARAMS = (Param("source", as_str, REQUIRED, doc="the .binaryproto or .npy file to emit"),)
    TOPS = ("data",)

    def layer_setup(self, bottom, top):
        source = self.params["source"]
        blob = load_blob(source, owner=self.owner, key="source")
        if blob.ndim == 0:
            blob = blob.reshape(1)
        if blob.size == 0:
            # a top with no values aborts Caffe (it allocates nothing for it)
            self.fail(f"'source' file '{source}' holds no values (shape {tuple(blob.shape)})")
        if not np.all(np.isfinite(blob)):
            self.fail(f"'source' file '{source}' holds non-finite values")
        require_float32(blob, owner=self.owner, name=f"'source' file '{source}'")
        self.blob = np.ascontiguousarray(blob, dtype=np.float32)

    def reshape(self, bottom, top):
        top[0].reshape(*self.blob.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blob

    def backward(self, top, propagate_down, bottom):
        pass
