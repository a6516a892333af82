"""``caffe-losses migrate``'s rule for Caffe's native InfogainLoss (see :mod:`caffe_losses.nets.rewrite`)."""

from caffe_losses.nets.rewrite import loss_param, subfields


def native_infogain(ctx, layer):
    """Native ``InfogainLoss`` -> ``SoftmaxWithInfogainLoss`` on raw scores, or our classic
    ``InfogainLoss`` when a ``Softmax`` feeds it (a net written for Caffe before 1.0)."""
    block = layer.f.get("infogain_loss_param")
    v = subfields(ctx, layer, block, ("source", "axis")) if block is not None else {}
    params = {}
    # the layer that wrote the scores last: a Softmax in place (top == bottom) counts too
    producer = ctx.writer.get(layer.bottoms[0]) if layer.bottoms else None
    classic = producer is not None and producer.type == "Softmax"
    in_place = classic and layer.bottoms[0] in producer.bottoms
    if len(layer.bottoms) == 3:
        if "source" in v:
            ctx.notes.append(f"{layer.label}: H comes from the third bottom "
                             f"'{layer.bottoms[2]}'; the native layer ignored 'source' then, and so "
                             f"does the migrated one (dropped)")
    elif "source" in v:
        params["source"] = v["source"]
    elif len(layer.bottoms) == 2:
        ctx.problem(layer, "InfogainLoss has neither infogain_loss_param { source } nor a third "
                           "bottom H: the net does not load in Caffe either")
    if "axis" in v:
        params["axis"] = v["axis"]
    params.update(loss_param(ctx, layer, ("ignore_label", "normalization")))
    if classic:
        if len(layer.tops) > 1:
            ctx.problem(layer, f"InfogainLoss fed by the Softmax {producer.label} "
                               f"with a second top: cannot translate (feed it the raw scores)")
        stabler = (f"remove the in-place Softmax {producer.label} and use SoftmaxWithInfogainLoss"
                   if in_place else f"SoftmaxWithInfogainLoss on "
                                    f"'{producer.bottoms[0] if producer.bottoms else '?'}'")
        ctx.notes.append(
            f"{layer.label}: its input '{layer.bottoms[0]}' comes from the Softmax "
            f"{producer.label}{' (in place)' if in_place else ''}, as nets written for Caffe before "
            f"1.0 (probabilities in) do; since Caffe 1.0 the native layer applies a softmax itself, "
            f"so it applied two. Migrated to caffe_losses.InfogainLoss, the classic form on "
            f"probabilities. Stabler: {stabler}.")
        return "InfogainLoss", params
    return "SoftmaxWithInfogainLoss", params
