"""``caffe-losses check``'s rules for the focal family (see :mod:`caffe_losses.nets.lint`).

* ``double-softmax``: ``SoftmaxFocalLoss`` (it applies softmax itself) fed by a ``Softmax``.
* ``focal-logits``: ``SigmoidFocalLoss`` (it applies the sigmoid itself, on logits) fed by a
  ``Sigmoid``: the sigmoid would be applied twice.
* ``focal-alpha``: a ``SoftmaxFocalLoss`` ``alpha`` list whose length is not the number of
  outputs of the classifier feeding it (the layer refuses it when the net is built).
"""


def double_softmax(ctx, layer):
    if ctx.ours and ctx.cls_name == "SoftmaxFocalLoss":
        ctx.double_softmax()


def sigmoid_input(ctx, layer):
    src = ctx.src
    if ctx.ours and ctx.cls_name == "SigmoidFocalLoss" and src is not None and src.type == "Sigmoid":
        ctx.error("focal-logits",
                  f"caffe_losses.SigmoidFocalLoss takes logits and applies the sigmoid itself, but its "
                  f"input '{layer.bottom[0]}' comes from Sigmoid {ctx.label(src)}: the sigmoid is applied "
                  f"twice. Feed it the raw scores ('{src.bottom[0]}').")


def alpha_count(ctx, layer):
    params, classes = ctx.params, ctx.classes
    if not (ctx.ours and ctx.cls_name == "SoftmaxFocalLoss" and params and classes is not None):
        return
    alpha = params.get("alpha")
    if isinstance(alpha, list) and len(alpha) != classes:
        ctx.error("focal-alpha",
                  f"alpha has {len(alpha)} weight(s) but the classifier feeding the loss has {classes} "
                  f"outputs: expected one weight per class")


RULES = (double_softmax, sigmoid_input, alpha_count)
