"""``caffe-losses check``'s rules for MarginProduct (see :mod:`caffe_losses.nets.lint`).

* ``margin-count``: a SphereFace ``MarginProduct`` (``m1 > 1``) whose iteration
  count (blob 1) the solver would move: the layer writes no diff there, so
  the solver moves it through weight decay alone; an error needs its
  ``lr_mult`` and ``decay_mult`` non-zero (by default they are: a second
  ``param { }`` is missing) and, when a solver is checked, its ``weight_decay``.
  The layer would refuse the moved count at the next forward.
* ``margin-loss-weight``: a ``loss_weight`` on the logits: they are not a
  loss, and Caffe would add their sum to the objective.
"""

LAYER = "MarginProduct"


def _m1(params):
    try:
        return int(params.get("m1", 1))
    except (TypeError, ValueError):
        return 1


def margin_count(ctx, layer):
    params = ctx.params
    if not (ctx.ours and ctx.cls_name == LAYER and params is not None) or _m1(params) <= 1:
        return
    spec = layer.param[1] if len(layer.param) > 1 else None
    lr = spec.lr_mult if spec is not None and spec.HasField("lr_mult") else 1.0
    decay = spec.decay_mult if spec is not None and spec.HasField("decay_mult") else 1.0
    if lr != 0 and decay != 0 and ctx.weight_decay != 0:
        given = "its second param { }" if spec is not None else "no second param { } (Caffe's default)"
        ctx.error("margin-count",
                  f"MarginProduct with m1 = {_m1(params)} keeps SphereFace's iteration count in blob 1, and "
                  f"the solver would move it ({given}: lr_mult {lr:g}, decay_mult {decay:g}, so weight "
                  f"decay changes it every step; the layer then stops). Add 'param {{ lr_mult: 0 "
                  f"decay_mult: 0 }}' after the class weights' param {{ }}.")


def margin_loss_weight(ctx, layer):
    if not (ctx.ours and ctx.cls_name == LAYER):
        return
    weights = [w for w in layer.loss_weight if w != 0]
    if weights:
        ctx.error("margin-loss-weight",
                  f"MarginProduct writes logits, not a loss, yet it has loss_weight {weights[0]:g}: Caffe "
                  f"would add the sum of the logits to the objective. Remove loss_weight and put the "
                  f"softmax loss (e.g. SoftmaxWithLoss) after it.")


RULES = (margin_count, margin_loss_weight)
__all__ = ["RULES", "margin_count", "margin_loss_weight"]
