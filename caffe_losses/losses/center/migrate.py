"""``caffe-losses migrate``'s rule for caffe-face's CenterLoss (see :mod:`caffe_losses.nets.rewrite`)."""

from caffe_losses.nets.rewrite import filler, reshape_stored, stored_shapes, subfields


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


def carry_centers(label, params, stored):
    """``migrate --weights``: caffe-face's trained centers become CenterLoss's blob (Family.weights).

    ``stored`` is the model's layer (None when the model has none); Caffe's
    legacy 1 x 1 x N x K shape is rewritten as N x K.  Returns (report line,
    problem or None, whether the model changed).
    """
    n = params.get("num_classes")
    if stored is None:
        return (f"{label}: no centers in the model: initialised as the migrated layer says "
                f"(center_filler, or zeros)"), None, False
    shapes = stored_shapes(stored)
    shape = shapes[0] if len(shapes) == 1 else ()
    if len(shape) == 4 and shape[:2] == (1, 1):          # Caffe's legacy 1 x 1 x N x K
        shape = shape[2:]
    if len(shapes) != 1 or len(shape) != 2 or shape[0] != n:
        shown = ", ".join("x".join(map(str, s)) for s in shapes)
        return None, (f"{label}: the model holds {len(shapes)} blob(s) ({shown}) there, but the migrated "
                      f"CenterLoss (num_classes: {n}) keeps one, the centers, {n} x D"), False
    changed = shapes[0] != shape
    if changed:
        reshape_stored(stored.blobs[0], shape)
    return f"{label}: copied, the centers ({shape[0]}x{shape[1]})", None, changed

