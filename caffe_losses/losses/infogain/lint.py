"""``caffe-losses check``'s rules for the infogain family (see :mod:`caffe_losses.nets.lint`).

* ``double-softmax``: ``SoftmaxWithInfogainLoss`` or the native
  ``InfogainLoss`` (both apply softmax themselves) fed by a ``Softmax``.
* ``raw-scores``: the classic ``InfogainLoss`` (ours), which expects
  probabilities, fed straight by a classifier (InnerProduct/Convolution).
* ``h-file``: an H ``source`` that is missing, malformed, or not L x L for
  the L classes of the classifier feeding the loss; likewise the file of a
  ``Constant`` layer feeding the loss's H bottom (``h-zero-row``: a note for
  a class weighted 0, which Caffe's layer runs).
* ``native-infogain``: a native ``InfogainLoss`` that Caffe's layer aborts
  on while setting up: ``loss_param { normalize }`` (refused since Caffe
  1.0), or no H (neither ``source`` nor a third bottom).
* ``constant-source``: a ``Constant`` layer's ``source`` that the layer
  could not read (missing, malformed, more axes than a Caffe blob has).
"""

from caffe_losses.files.hmatrix import load_blob, load_h, zero_row_note
from caffe_losses.files.safety import shown_path
from caffe_losses.losses.infogain.core import square_shape

CLASSES = ("SoftmaxWithInfogainLoss", "InfogainLoss")


def double_softmax(ctx, layer):
    if layer.type == "InfogainLoss":
        ctx.double_softmax(after="; a net written for Caffe before 1.0 (when InfogainLoss took "
                                 "probabilities): caffe-losses migrate carries it over")
    elif ctx.ours and ctx.cls_name == "SoftmaxWithInfogainLoss":
        ctx.double_softmax()


def raw_scores(ctx, layer):
    src = ctx.src
    if ctx.ours and ctx.cls_name == "InfogainLoss" and src is not None and src.type in ctx.CLASSIFIER_TYPES:
        ctx.error("raw-scores",
                  f"caffe_losses.InfogainLoss expects probabilities, but its input '{layer.bottom[0]}' "
                  f"is raw scores from {src.type} {ctx.label(src)}. Use SoftmaxWithInfogainLoss on "
                  f"the scores (stable, one layer), or put a Softmax in between.")


def _check_h_file(ctx, source, owner):
    try:
        H = load_h(source, owner=owner, key="source")
    except (OSError, ValueError, TypeError) as err:
        ctx.error("h-file", str(err))
        return
    note = zero_row_note(H, name=f"H in {shown_path(source)}")
    if note:   # valid (a class weighted 0): Caffe's InfogainLoss runs it
        ctx.note("h-zero-row", note)
    classes = ctx.classes
    if classes is not None and H.shape[0] != classes:
        ctx.error("h-file", f"H in {shown_path(source)} is {H.shape[0]} x {H.shape[1]} but the classifier "
                            f"feeding the loss has {classes} outputs: expected {classes} x {classes}")


def h_file(ctx, layer):
    params, classes = ctx.params, ctx.classes
    ours = ctx.ours and ctx.cls_name in CLASSES
    if ours and params and params.get("source"):
        _check_h_file(ctx, params["source"], ctx.cls_name)
    if layer.type == "InfogainLoss" and layer.infogain_loss_param.source:
        _check_h_file(ctx, layer.infogain_loss_param.source, "InfogainLoss")
    constant_shapes = ctx.memo.get("constant_shapes", {})
    if ours and len(layer.bottom) >= 3 and not (params and params.get("source")) and classes is not None \
            and layer.bottom[2] in constant_shapes:
        # H as the third bottom, from a Constant layer's file: the shape the layer will refuse
        maker, source, shape = constant_shapes[layer.bottom[2]]
        if square_shape(shape) != (classes, classes):
            ctx.error("h-file",
                      f"bottom '{layer.bottom[2]}' (H) comes from Constant {ctx.label(maker)}, whose file "
                      f"{shown_path(source)} holds shape {shape}, but the classifier feeding the loss has "
                      f"{classes} outputs: expected {classes} x {classes} (or 1 x 1 x {classes} x {classes})")


def native_infogain(ctx, layer):
    """Caffe's ``InfogainLossLayer::LayerSetUp`` CHECKs: ``normalize`` refused, an H required."""
    if layer.type != "InfogainLoss":
        return
    if layer.loss_param.HasField("normalize"):
        mode = "VALID" if layer.loss_param.normalize else "BATCH_SIZE"
        ctx.error("native-infogain",
                  f"native InfogainLoss refuses loss_param {{ normalize: "
                  f"{'true' if layer.loss_param.normalize else 'false'} }} (the field from before Caffe 1.0): "
                  f"Caffe aborts with \"normalize is deprecated. use \"normalization\"\". Write "
                  f"'normalization: {mode}' instead (as Caffe's other loss layers read normalize), or run "
                  f"caffe-losses migrate, which does")
    if len(layer.bottom) < 3 and not layer.infogain_loss_param.source:
        ctx.error("native-infogain",
                  "native InfogainLoss has neither infogain_loss_param { source } nor a third bottom H: "
                  "Caffe aborts with \"Infogain matrix source must be specified.\". Give the H file "
                  "(caffe-losses make-h writes one) or the H blob as a third bottom")


def constant_source(ctx, layer):
    """The file the Constant layer emits, read as the layer reads it (its shape kept for ``h_file``)."""
    params = ctx.params
    if ctx.ours and ctx.cls_name == "Constant" and params and params.get("source"):
        try:
            blob = load_blob(params["source"], owner="Constant", key="source")
        except (OSError, ValueError, TypeError) as err:
            ctx.error("constant-source", str(err))
        else:
            for top in layer.top[:1]:
                ctx.memo.setdefault("constant_shapes", {})[top] = (layer, params["source"], tuple(blob.shape))


RULES = (double_softmax, raw_scores, h_file, native_infogain, constant_source)
