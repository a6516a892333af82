"""``caffe-losses check``'s rules for the dice family (see :mod:`caffe_losses.nets.lint`).

* ``double-softmax``: ``DiceLoss`` with ``activation: softmax`` (the default)
  fed by a ``Softmax`` layer: softmax applied twice.
* ``double-sigmoid``: ``DiceLoss`` with ``activation: sigmoid`` fed by a
  ``Sigmoid`` layer.
* ``raw-scores``: ``DiceLoss`` with ``activation: none`` (probabilities in)
  fed straight by a classifier (InnerProduct/Convolution).
"""

__all__ = ["RULES"]


def _activation(ctx):
    """The DiceLoss's activation, or None when the layer is not a DiceLoss (or its param_str is bad)."""
    if not (ctx.ours and ctx.cls_name == "DiceLoss" and ctx.params is not None):
        return None
    return ctx.params.get("activation", "softmax")


def double_activation(ctx, layer):
    activation, src = _activation(ctx), ctx.src
    if activation == "softmax":
        ctx.double_softmax(fix=", or set activation: none to keep the Softmax layer")
    elif activation == "sigmoid" and src is not None and src.type == "Sigmoid":
        ctx.error("double-sigmoid",
                  f"caffe_losses.DiceLoss with activation: sigmoid applies the sigmoid itself, but its "
                  f"input '{layer.bottom[0]}' comes from Sigmoid {ctx.label(src)}: the sigmoid is "
                  f"applied twice. Feed it the raw scores ('{src.bottom[0] if src.bottom else '?'}').")


def raw_scores(ctx, layer):
    src = ctx.src
    if _activation(ctx) == "none" and src is not None and src.type in ctx.CLASSIFIER_TYPES:
        ctx.error("raw-scores",
                  f"caffe_losses.DiceLoss with activation: none expects probabilities, but its input "
                  f"'{layer.bottom[0]}' is raw scores from {src.type} {ctx.label(src)}. Use "
                  f"activation: softmax (or sigmoid) on the scores: stable, one layer.")


RULES = (double_activation, raw_scores)
