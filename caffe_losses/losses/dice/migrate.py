"""``caffe-losses migrate``'s rules for the forks' Dice layers (see :mod:`caffe_losses.nets.rewrite`).

* V-Net's Python ``DiceLoss`` (faustomilletari/VNet ``pyLayer.py``,
  ``python_param { module: "pyLayer" layer: "DiceLoss" }``): on a Softmax
  layer's probabilities (N, 2, M) and 0/1 labels (N, M); the Dice of channel 1
  per sample with V-Net's squared denominator.  Its backward writes
  ``-d dice_n / d p_n1`` into channel 1 (the gradient of the soft Dice with
  ``sum p^2 + sum g^2``), and the opposite into channel 0.
* OrganSegRSTN's C++ ``DiceLoss`` (198808xc/OrganSegRSTN
  ``DiceLossLayer/dice_loss_layer.cpp``): a sigmoid inside, one Dice pooled
  over the whole blob (every sample and channel),
  ``1 - (2 sum t p + 1e-6) / (sum t + sum p + 1e-6)``, and its exact gradient
  times the loss weight.
"""

from caffe_losses.nets import textproto
from caffe_losses.nets.rewrite import fork_param_str

__all__ = ["vnet_dice", "organseg_dice", "VNET", "ORGANSEG"]

VNET = "V-Net's DiceLoss"
ORGANSEG = "OrganSegRSTN's DiceLoss"
VNET_SMOOTH = 1e-5        # V-Net: 2 I / (U + 0.00001)
ORGANSEG_SMOOTH = 1e-6    # OrganSegRSTN: #define FLT_EPSILON 0.000001, in numerator and denominator

# layers that only reshape their one bottom: V-Net flattens before its Softmax
_SHAPE_ONLY = ("Reshape", "Flatten")
# where a layer's channel count is written: {type: its parameter block}
_NUM_OUTPUT = {"Convolution": "convolution_param", "Deconvolution": "convolution_param",
               "InnerProduct": "inner_product_param"}


def _source(ctx, blob):
    """The layer that made ``blob``, looking through in-place layers and shape-only layers; or None."""
    layer = ctx.producer.get(blob)
    while layer is not None and layer.type in _SHAPE_ONLY and layer.bottoms:
        layer = ctx.producer.get(layer.bottoms[0])
    return layer


def _channels(ctx, blob):
    """The channel count (``num_output``) of the layer that made ``blob``, or None when it cannot tell."""
    layer = ctx.producer.get(blob)
    if layer is None or layer.type not in _NUM_OUTPUT:
        return None
    block = layer.f.get(_NUM_OUTPUT[layer.type])
    found = block.all("num_output") if block is not None and block.is_message else []
    if not found:
        return None
    try:
        fd = ctx.descriptor(_NUM_OUTPUT[layer.type]).fields_by_name["num_output"]
        return int(textproto.scalar(found[-1], fd))
    except ValueError:
        return None


def vnet_dice(ctx, layer):
    """V-Net's Python ``DiceLoss`` -> ``DiceLoss`` on the same probabilities (``activation: none``),
    channel 1 only, V-Net's squared denominator."""
    if len(layer.bottoms) != 2:
        ctx.problem(layer, f"{VNET} takes 2 bottoms (the Softmax probabilities and the label), "
                           f"this layer has {len(layer.bottoms)}: cannot translate")
    if len(layer.tops) != 1:
        ctx.problem(layer, f"{VNET} has one top, this layer has {len(layer.tops)}: cannot translate")
    if fork_param_str(layer).strip():
        ctx.notes.append(f"{layer.label}: {VNET} reads no param_str: '{fork_param_str(layer)}' was "
                         f"ignored there and is dropped")
    params = {"activation": "none", "squared": True, "include_background": False,
              "smooth": VNET_SMOOTH}
    source = _source(ctx, layer.bottoms[0]) if layer.bottoms else None
    if source is None or source.type != "Softmax":
        made = (f"made by {source.label} (type {source.type})" if source is not None
                else "not made by a layer before it")
        ctx.notes.append(f"{layer.label}: {VNET} reads probabilities (the top of a Softmax layer) and "
                         f"'{layer.bottoms[0] if layer.bottoms else '?'}' is {made}; DiceLoss with "
                         f"activation: none refuses values outside [0, 1] when it runs. For raw scores, "
                         f"give DiceLoss the scores with activation: softmax instead")
    ctx.notes.append(
        f"{layer.label}: {VNET}'s loss was the hard Dice of channel 1 (from the arg-max), summed over "
        f"the samples (higher is better); DiceLoss reports 1 - the mean soft Dice (lower is better). "
        f"Its gradient on the channel-1 probabilities is V-Net's divided by N (the batch size); V-Net "
        f"also pushed channel 0 by the opposite amount, which doubles what reaches the scores through "
        f"the Softmax, and it ignored loss_weight: loss_weight 2N keeps V-Net's step size. Labels must "
        f"be 0 or 1 (V-Net thresholded them at 0.5)")
    return "DiceLoss", params


def organseg_dice(ctx, layer):
    """OrganSegRSTN's C++ ``DiceLoss`` -> ``DiceLoss`` with ``activation: sigmoid``, one Dice pooled
    over the batch (``batch: true``) and over the channels (``weights``: one 1 per channel)."""
    if len(layer.bottoms) != 2:
        ctx.problem(layer, f"DiceLoss with {len(layer.bottoms)} bottoms: {ORGANSEG} takes 2 (the "
                           f"scores and a label of the same count); cannot translate")
        return "DiceLoss", {}
    from caffe.proto import caffe_pb2     # pycaffe: imported where used (tests/test_layout.py)
    known = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    for block in layer.f.children:
        if block.name not in known:
            ctx.problem(layer, f"DiceLoss with '{block.name}': {ORGANSEG}, the one migrate translates, "
                               f"has no parameter block, so this is another fork's DiceLoss, whose "
                               f"formula migrate does not know: cannot translate")
            return "DiceLoss", {}
    params = {"activation": "sigmoid", "smooth": ORGANSEG_SMOOTH, "batch": True}
    channels = _channels(ctx, layer.bottoms[0])
    if channels is None:
        made = ctx.producer.get(layer.bottoms[0])
        made = f"made by {made.label} (type {made.type})" if made is not None else "an input of the net"
        ctx.problem(layer, f"{ORGANSEG} pools every channel of '{layer.bottoms[0]}' into one Dice, "
                           f"which DiceLoss writes as weights: [1, ..., 1] (one per channel) with "
                           f"batch: true; '{layer.bottoms[0]}' is {made}, whose channel count migrate "
                           f"cannot read: write the layer by hand")
    elif channels > 1:
        params["weights"] = [1] * channels
    if layer.f.get("loss_param") is not None:
        ctx.notes.append(f"{layer.label}: {ORGANSEG} reads no loss_param (no ignore label, no "
                         f"normalization): dropped")
    ctx.notes.append(f"{layer.label}: translated as {ORGANSEG} (a sigmoid inside, one Dice over the "
                     f"whole blob, smooth 1e-6); a DiceLoss of another fork may compute something "
                     f"else: compare its source. Labels must be 0 or 1 (the fork also took soft "
                     f"targets)")
    return "DiceLoss", params
