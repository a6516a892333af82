"""``caffe-losses migrate --hed``'s rule for HED's SigmoidCrossEntropyLoss (see :mod:`caffe_losses.nets.rewrite`)."""

from caffe_losses.nets.rewrite import loss_param


def hed_sigmoid(ctx, layer):
    """HED's class-balanced ``SigmoidCrossEntropyLoss`` -> ``WeightedSigmoidCrossEntropyLoss``, ``balance: auto``."""
    params = {"balance": "auto"}
    params.update(loss_param(ctx, layer, ("ignore_label", "normalization")))
    ctx.change(layer, "HED's class balance (the fork's SigmoidCrossEntropyLoss)", "param_str balance: auto")
    return "WeightedSigmoidCrossEntropyLoss", params
