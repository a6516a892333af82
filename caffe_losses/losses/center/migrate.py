"""``caffe-losses migrate``'s rule for caffe-face's CenterLoss (see :mod:`caffe_losses.nets.rewrite`)."""

from caffe_losses.nets.rewrite import filler, subfields


def caffe_face_center(ctx, layer):
    """caffe-face ``CenterLoss`` -> ``CenterLoss`` with ``update: solver`` (the mode it ran in)."""
    block = layer.f.get("center_loss_param")
    if block is None:
        ctx.problem(layer, "CenterLoss without center_loss_param { num_output }: cannot tell the "
                           "number of classes")
        return "CenterLoss", {}
    v = subfields(ctx, layer, block, ("num_output", "center_filler", "axis"))
    params = {}
    if "num_output" in v:
        params["num_classes"] = v["num_output"]
    else:
        ctx.problem(layer, "center_loss_param has no num_output: cannot tell the number of classes")
    if "axis" in v and v["axis"] != 1:
        ctx.problem(layer, f"center_loss_param {{ axis: {v['axis']} }}: CenterLoss here flattens the "
                           f"features from axis 1 (caffe-face's default); cannot translate another axis")
    if "center_filler" in v:
        spec = filler(ctx, layer, v["center_filler"])
        if spec is not None:
            params["center_filler"] = spec
    # caffe-face writes (c_j - x_i) summed / (1 + n_j) into the centers' diff and
    # lets the solver apply it (rate base_lr * lr_mult, its momentum and decay):
    # that is update: solver, with the layer's param { } kept as it was
    params["update"] = "solver"
    if len(layer.tops) > 1:
        ctx.problem(layer, f"CenterLoss with {len(layer.tops)} tops: caffe-face's has one "
                           f"(this is another fork's layer): cannot translate")
    if layer.f.get("loss_param") is not None:
        ctx.notes.append(f"{layer.label}: caffe-face's CenterLoss reads no loss_param "
                         f"(it divides by N): dropped")
    return "CenterLoss", params
