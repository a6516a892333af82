"""``caffe-losses migrate``'s rules for the angular-margin forks (see :mod:`caffe_losses.nets.rewrite`).

* SphereFace's ``MarginInnerProduct`` (wy1iu/sphereface) is one layer with the
  class weights, like ``MarginProduct``: translated (its logits, lambda and, with
  ``gradient: sphereface``, its gradients), weights carried.
* The cosine-margin layers (CombinedMargin-caffe's and arcface-caffe's
  ``CombinedMargin``, arcface-caffe's ``CosinAddm``, AM-Softmax's
  ``LabelSpecificAdd``) act on the cosines of a chain of fork layers (a
  ``Normalize``/``NormL2`` of the features, an ``InnerProduct`` with the forks'
  ``normalize: true``, then a fixed ``Scale``): four layers become one, which
  a per-layer rule cannot write.  They are refused with the layers named and
  the ``MarginProduct`` that replaces them (docs/margin.md, "From the forks'
  cosine layers").
"""


from google.protobuf.descriptor import FieldDescriptor

from caffe_losses.nets.rewrite import filler, reshape_stored, stored_shapes, subfields

__all__ = ["sphereface", "combined_margin", "cosin_add_m", "label_specific_add", "carry_weights",
           "MARGIN_TYPES"]

MARGIN_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "QUADRUPLE")    # MarginInnerProductParameter.MarginType = m1 - 1
ANNEALING = ("base", "gamma", "power", "lambda_min", "iteration")
DOCS = "docs/margin.md, \"From the forks' cosine layers\""


class _EnumValue:
    def __init__(self, name, number):
        self.name, self.number = name, number


class _Enum:
    """``MarginInnerProductParameter.MarginType`` as protobuf describes an enum (what textproto reads)."""

    name = "MarginType"
    values = [_EnumValue(n, i) for i, n in enumerate(MARGIN_TYPES)]
    values_by_name = {v.name: v for v in values}
    values_by_number = {v.number: v for v in values}


class _TypeField:
    name, cpp_type, message_type, enum_type, is_repeated = "type", FieldDescriptor.CPPTYPE_ENUM, None, _Enum, False


class _WithEnum:
    def __init__(self, base):
        self.name = base.name
        self.fields_by_name = dict(base.fields_by_name, type=_TypeField)


def sphereface(ctx, layer):
    """SphereFace ``MarginInnerProduct`` -> ``MarginProduct`` (``feature_norm``, ``m1`` from its type)."""
    block = layer.f.get("margin_inner_product_param")
    params = {}
    if block is None:
        ctx.problem(layer, "MarginInnerProduct without margin_inner_product_param { num_output }: cannot "
                           "tell the number of classes")
        return "MarginProduct", params
    v = subfields(ctx, layer, block, ("num_output", "type", "weight_filler", "axis") + ANNEALING,
                  descriptor=_WithEnum(ctx.descriptor("margin_inner_product_param")))
    if "num_output" in v:
        params["num_classes"] = v["num_output"]
    else:
        ctx.problem(layer, "margin_inner_product_param has no num_output: cannot tell the number of classes")
    if v.get("axis", 1) != 1:
        ctx.problem(layer, f"margin_inner_product_param {{ axis: {v['axis']} }}: MarginProduct flattens the "
                           f"features from axis 1 (the fork's default); cannot translate another axis")
    m1 = MARGIN_TYPES.index(v.get("type", "SINGLE")) + 1
    # the fork's logits: |x| cos(theta_j), and |x| (lambda cos + psi) / (1 + lambda) at the label
    params.update(feature_norm=True, m1=m1)
    if m1 == 1:
        params["m2"] = 0
        dropped = [k for k in ANNEALING if k in v]
        if dropped:
            ctx.notes.append(f"{layer.label}: type SINGLE has no margin, so lambda mixes nothing: "
                             f"{', '.join(dropped)} dropped")
    else:
        for key in ANNEALING:
            if key in v:
                params[key] = v[key]
        # MarginProduct keeps the fork's iteration count as a second blob, so that lambda
        # goes on after a resume; the solver must not move it
        specs = layer.f.all("param")
        if len(specs) > 1:
            ctx.problem(layer, f"{len(specs)} param {{ }} blocks: the fork's layer has one blob (Caffe "
                               f"refuses the net too)")
        if not specs:
            ctx.add_param(layer, "param { lr_mult: 1 decay_mult: 1 }")
        ctx.add_param(layer, "param { lr_mult: 0 decay_mult: 0 }")
        ctx.change(layer, "the fork's iteration count (not saved)",
                   "blob 1 of MarginProduct, saved in snapshots: param { lr_mult: 0 decay_mult: 0 }")
    if "weight_filler" in v:
        spec = filler(ctx, layer, v["weight_filler"])
        if spec is not None:
            params["weight_filler"] = spec
    else:       # the fork fills with FillerParameter's default, constant 0
        params["weight_filler"] = {"type": "constant", "value": 0}
        ctx.notes.append(f"{layer.label}: no weight_filler: the fork's default is constant 0, whose rows "
                         f"have no direction; MarginProduct refuses them at the first forward unless "
                         f"--weights (or a .caffemodel) brings the class weights")
    if len(layer.bottoms) != 2:
        ctx.problem(layer, f"MarginInnerProduct with {len(layer.bottoms)} bottom(s): the fork's takes "
                           f"features and label")
    # the fork applies its margin whenever a label is given, TEST phase included
    params["margin_in_test"] = True
    # and trains with its own gradients (unit-length target coefficients, dW = dz^T x) on
    # weights it normalises in place: gradient: sphereface does the same
    params["gradient"] = "sphereface"
    ctx.notes.append(f"{layer.label}: gradient: sphereface reproduces the fork's gradients, which are not "
                     f"the exact ones; gradient: exact trains with the derivatives of the same logits")
    ctx.notes.append(f"{layer.label}: the fork's TEST-phase copy counts its own iterations for lambda; "
                     f"MarginProduct's TEST phase reads the TRAIN count (shared blob 1)" if m1 > 1 else
                     f"{layer.label}: translated exactly (|x| cos, no margin)")
    return "MarginProduct", params


def _chain(ctx, layer):
    """The fork's cosine chain ending at ``layer``: [(layer, what)] from the features, and the features' blob."""
    found = [(layer, f"{layer.type}")]
    blob = layer.bottoms[0] if layer.bottoms else None
    ip = ctx.producer.get(blob)
    features, classes = None, None
    if ip is not None and ip.type == "InnerProduct":
        block = ip.f.get("inner_product_param")
        for f in (block.children if block is not None else ()):
            if f.name == "num_output":
                classes = f.value
        found.insert(0, (ip, "InnerProduct, normalize: true"))
        norm = ctx.producer.get(ip.bottoms[0]) if ip.bottoms else None
        if norm is not None and norm.type in ("Normalize", "NormL2", "L2Normalize", "Normalization"):
            found.insert(0, (norm, norm.type))
            features = norm.bottoms[0] if norm.bottoms else None
        else:
            features = ip.bottoms[0] if ip.bottoms else None
    return found, features, classes, ip


def _refuse(ctx, layer, fork, keys, extra=""):
    found, features, classes, ip = _chain(ctx, layer)
    named = ", ".join(f"'{lay.name}' ({what})" for lay, what in found)
    name = ip.name if ip is not None else "<the InnerProduct's name>"
    settings = ", ".join([f"num_classes: {classes or '<its num_output>'}", "scale: <the Scale's value>"]
                         + [f"{k}: {v:g}" for k, v in keys.items()])
    ctx.problem(layer, f"{fork} acts on the cosines of a chain of layers ({named}, then a fixed Scale) "
                       f"that one MarginProduct replaces; migrate rewrites one layer at a time. Replace "
                       f"them by: layer {{ name: \"{name}\" type: \"Python\" bottom: "
                       f"\"{features or '<the features>'}\" bottom: \"label\" top: <the Scale's top> "
                       f"python_param {{ module: \"caffe_losses\" layer: \"MarginProduct\" param_str: "
                       f"\"{{{settings}}}\" }} }} (the InnerProduct's name keeps its C x D weights "
                       f"loading from a .caffemodel as the class weights).{extra} See {DOCS}")


def combined_margin(ctx, layer):
    """CombinedMargin-caffe's / arcface-caffe's ``CombinedMargin``: ``cos(m1 theta + m2) - m3`` on the cosines."""
    block = layer.f.get("combined_margin_param")
    v = subfields(ctx, layer, block, ("m1", "m2", "m3", "transform_test")) if block is not None else {}
    m1, m2, m3 = v.get("m1", 4.0), v.get("m2", 0.5), v.get("m3", 0.35)     # its caffe.proto's defaults
    if m1 != 1:
        ctx.problem(layer, f"CombinedMargin {{ m1: {m1:g} }}: cos(m1 theta + m2) with m1 != 1 is not "
                           f"monotonic in theta and no MarginProduct setting gives it (MarginProduct's "
                           f"m1 > 1 is SphereFace's psi, with m2 = m3 = 0)")
        return "MarginProduct", {}
    _refuse(ctx, layer, "CombinedMargin", {"m2": m2, "m3": m3},
            " Where theta + m2 > pi the fork's cos(theta + m2) rises again; MarginProduct takes "
            "insightface's fallback cos(theta) - m2 sin(m2) there.")
    return "MarginProduct", {}


def cosin_add_m(ctx, layer):
    """arcface-caffe's ``CosinAddm``: ArcFace ``cos(theta + m)`` with insightface's fallback."""
    block = layer.f.get("cosin_add_m_param")
    v = subfields(ctx, layer, block, ("m", "transform_test")) if block is not None else {}
    _refuse(ctx, layer, "CosinAddm", {"m2": v.get("m", 0.5), "m3": 0})
    return "MarginProduct", {}


def label_specific_add(ctx, layer):
    """AM-Softmax's ``LabelSpecificAdd { bias: -m }``: ``cos(theta) - m`` at the label (where ``cos > m``)."""
    block = layer.f.get("label_specific_add_param")
    v = subfields(ctx, layer, block, ("bias", "transform_test", "bias_base", "bias_gamma", "bias_power",
                                      "bias_min", "bias_max")) if block is not None else {}
    annealed = [k for k in v if k.startswith("bias_")]
    if annealed:
        ctx.problem(layer, f"LabelSpecificAdd's annealed bias ({', '.join(annealed)}) has no MarginProduct "
                           f"counterpart (its m3 is fixed)")
        return "MarginProduct", {}
    _refuse(ctx, layer, "AM-Softmax's LabelSpecificAdd", {"m2": 0, "m3": -v.get("bias", 0.0)},
            " The fork adds its bias only where cos(theta) > -bias; MarginProduct subtracts m3 "
            "everywhere (CosFace's definition).")
    return "MarginProduct", {}


def carry_weights(label, params, stored):
    """``migrate --weights``: the fork's class weights (num_output x K) become MarginProduct's blob 0;
    for ``m1 > 1`` its iteration count (blob 1) starts at the layer's ``iteration``, as the fork's does.
    ``stored`` is None when the model has no such layer."""
    if stored is None:
        return f"{label}: no class weights in the model: initialised by weight_filler", None, False
    blobs = stored.blobs
    shapes = stored_shapes(stored)
    classes = params.get("num_classes")
    shape = shapes[0] if shapes else ()
    if len(shape) == 4 and shape[:2] == (1, 1):
        shape = shape[2:]
    want = 2 if params.get("m1", 1) > 1 else 1
    if len(shapes) not in (1, want) or len(shape) != 2 or shape[0] != classes:
        shown = ", ".join("x".join(map(str, s)) for s in shapes) or "none"
        return None, (f"{label}: the model holds {len(shapes)} blob(s) ({shown}) there, but the migrated "
                      f"MarginProduct (num_classes: {classes}) keeps the class weights, {classes} x D"
                      + (" and SphereFace's iteration count" if want == 2 else "")), False
    changed = False
    if shapes[0] != shape:
        reshape_stored(blobs[0], shape)
        changed = True
    line = f"{label}: copied, the class weights ({shape[0]}x{shape[1]})"
    if want == 2 and len(shapes) == 1:
        count = blobs.add()
        count.shape.dim[:] = [1]
        count.data[:] = [float(params.get("iteration", 0))]
        changed = True
        line += f"; SphereFace's iteration count starts at {params.get('iteration', 0)}, as the fork's"
    return line, None, changed
