"""``caffe-losses migrate``'s rule for fast-rcnn's SmoothL1Loss (see :mod:`caffe_losses.nets.rewrite`)."""

from caffe_losses.nets.rewrite import subfields


def smooth_l1(ctx, layer):
    """fast-rcnn / py-faster-rcnn ``SmoothL1Loss`` (2 to 4 bottoms) -> ``SmoothL1Loss`` (same sigma, weights)."""
    if not 2 <= len(layer.bottoms) <= 4:
        ctx.problem(layer, f"SmoothL1Loss with {len(layer.bottoms)} bottoms: expected 2 to 4 "
                           f"(pred, target, inside weights, outside weights)")
    block = layer.f.get("smooth_l1_loss_param")
    v = subfields(ctx, layer, block, ("sigma",)) if block is not None else {}
    params = {}
    if "sigma" in v:
        params["sigma"] = v["sigma"]
    if layer.f.get("loss_param") is not None:
        ctx.notes.append(f"{layer.label}: the fork's SmoothL1Loss reads no loss_param "
                         f"(it divides by N): dropped")
    return "SmoothL1Loss", params
