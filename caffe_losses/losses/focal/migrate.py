"""``caffe-losses migrate``'s rule for the forks' ``FocalLoss`` layers (see :mod:`caffe_losses.nets.rewrite`).

Three forks register a C++ layer of the same type, ``FocalLoss``, each with
its own ``focal_loss_param``:

* makefile/frcnn (``src/caffe/FRCNN/focal_loss/``, a copy of zimenglan-sysu-512/Focal-Loss): softmax form,
  ``-alpha (1 - p_y)^gamma log(max(p_y, FLT_MIN))``, one ``alpha`` for
  every class; ``focal_loss_param { type gamma alpha beta }`` (``type`` and
  ``beta`` are read and logged, never used); ``softmax_param { axis }``;
  ``loss_param`` normalization (default VALID) or ``normalize``.
* owphoo/FocalLoss: softmax form, ``-alpha_y (1 - p_y + 1e-6)^gamma log p_y``
  with ``alpha_y`` the per-class list when ``alpha_balance: true`` (else 1);
  ``focal_loss_param { engine axis gamma alpha_balance alpha }`` (its
  ``axis`` and ``engine`` are never read: the axis is ``softmax_param``'s).
* liaomingg/Focal-Loss: the softmax form of frcnn with ``focal_loss_param { alpha gamma }``
  only (the same loss and gradient; ``type: ORIGIN`` marks it for ``migrate``).
* liuyuisanai/Focal-Loss (GPU code; its CPU path is the plain sigmoid
  cross-entropy over N): sigmoid form per element, ``alpha`` for targets
  equal to 1 and ``1 - alpha`` for the rest; ``focal_loss_param { alpha
  gamma }``; normalization default BATCH_SIZE.

Which fork a layer was written for is read from its fields: ``alpha_balance``
(or ``axis``, ``engine``, several ``alpha``) is owphoo's, ``type`` or
``beta`` frcnn's.  ``focal_loss_param { alpha gamma }`` alone is the same
text in frcnn and liuyuisanai, which compute different losses (softmax over
classes against a sigmoid per element): the rule refuses it and says how to
tell them apart, except where the scores come from a layer with
``num_output: 1`` (a softmax over one class is constant: only the sigmoid
form trains).
"""

import types

from caffe_losses.nets import textproto
from caffe_losses.nets.rewrite import loss_param, subfields

__all__ = ["fork_focal_loss", "FRCNN", "OWPHOO", "LIUYUISANAI", "FIELDS"]

FRCNN = "makefile/frcnn's FocalLoss"
OWPHOO = "owphoo/FocalLoss's FocalLoss"
LIUYUISANAI = "liuyuisanai/Focal-Loss's FocalLoss"

# focal_loss_param's fields, the union of the three forks' caffe.proto (type, engine: enums)
FIELDS = (("type", "ENUM"), ("gamma", "FLOAT"), ("alpha", "FLOAT"), ("beta", "FLOAT"),
          ("engine", "ENUM"), ("axis", "INT32"), ("alpha_balance", "BOOL"))
_ENUMS = {"type": ("ORIGIN", "LINEAR"), "engine": ("DEFAULT", "CAFFE", "CUDNN")}


def _read_block(ctx, layer):
    """focal_loss_param -> ({field: value}, [alpha values]); enums by name, every ``alpha`` kept."""
    block = layer.f.get("focal_loss_param")
    if block is None:
        return {}, []
    values, alphas = {}, []
    if any(f.name == "gama" for f in block.children):
        ctx.problem(layer, f"focal_loss_param {{ gama }}: the first day's spelling of "
                           f"zimenglan-sysu-512/Focal-Loss (the layer {FRCNN} copied), whose loss and "
                           f"gradient were fixed the next day (2017-08-18) with the field renamed gamma: "
                           f"rename it gamma (that fork's current field) and migrate again")
        block = types.SimpleNamespace(name=block.name, children=[f for f in block.children if f.name != "gama"])
    for f in block.children:
        if f.name in _ENUMS:
            names = _ENUMS[f.name]
            token = (f.value or "").strip()
            if token.isdigit() and int(token) < len(names):
                token = names[int(token)]
            if token not in names:
                ctx.problem(layer, f"'{textproto.describe(ctx.text, f)}' in focal_loss_param: expected one "
                                   f"of {', '.join(names)} (the forks' caffe.proto refuses it too)")
            values[f.name] = token
    rest = types.SimpleNamespace(name=block.name, children=[f for f in block.children if f.name not in _ENUMS])
    values.update(subfields(ctx, layer, rest, ("gamma", "alpha", "beta", "axis", "alpha_balance"),
                            ctx.descriptor("focal_loss_param")))
    descriptor = ctx.descriptor("focal_loss_param").fields_by_name["alpha"]
    for f in rest.children:
        if f.name == "alpha":
            try:
                alphas.append(textproto.scalar(f, descriptor))
            except ValueError:
                pass                        # subfields said so
    return values, alphas


def _axis(ctx, layer):
    block = layer.f.get("softmax_param")
    if block is None:
        return {}
    v = subfields(ctx, layer, block, ("axis", "engine"))
    return {"axis": v["axis"]} if "axis" in v and v["axis"] != 1 else {}


def _num_output_of(ctx, blob):
    producer = ctx.producer.get(blob)
    if producer is None:
        return None
    for block_name in ("inner_product_param", "convolution_param"):
        block = producer.f.get(block_name)
        if block is not None and block.get("num_output") is not None:
            try:
                return int(block.get("num_output"))
            except ValueError:
                return None
    return None


def fork_focal_loss(ctx, layer):
    """A fork's ``FocalLoss`` -> ``SoftmaxFocalLoss`` (frcnn, owphoo) or ``SigmoidFocalLoss`` (liuyuisanai)."""
    v, alphas = _read_block(ctx, layer)
    if {"alpha_balance", "axis", "engine"} & set(v) or len(alphas) > 1:
        return _owphoo(ctx, layer, v, alphas)
    if {"type", "beta"} & set(v):
        return _frcnn(ctx, layer, v)
    scores = layer.bottoms[0] if layer.bottoms else None
    if scores is not None and _num_output_of(ctx, scores) == 1:
        ctx.notes.append(f"{layer.label}: FocalLoss on one score per position (num_output: 1): read as "
                         f"{LIUYUISANAI} (sigmoid per element; a softmax over one class is constant)")
        return _liuyuisanai(ctx, layer, v)
    written = "focal_loss_param { alpha gamma }" if v else "no focal_loss_param"
    ctx.problem(layer, f"FocalLoss with {written}: {FRCNN} (and the same softmax layer of "
                       f"zimenglan-sysu-512/Focal-Loss and liaomingg/Focal-Loss: softmax over the "
                       f"classes, one label per position, normalization VALID by default) and "
                       f"{LIUYUISANAI} (a sigmoid per element, targets shaped as the scores, BATCH_SIZE "
                       f"by default) read this same text and compute different losses. For the softmax "
                       f"form, add 'type: ORIGIN' to focal_loss_param (frcnn's own field and default) "
                       f"and migrate again; for liuyuisanai's, write the layer as SigmoidFocalLoss with "
                       f"param_str \"{_liuyuisanai_hint(ctx, layer, v)}\"")
    return "SoftmaxFocalLoss", {}


def _frcnn(ctx, layer, v):
    params = {"gamma": v.get("gamma", 2.0), "alpha": v.get("alpha", 0.25)}
    if v.get("type") == "LINEAR":
        ctx.notes.append(f"{layer.label}: focal_loss_param {{ type: LINEAR }} is read but not implemented "
                         f"by {FRCNN}, which computes the ORIGIN form: translated as that")
    if "beta" in v:
        ctx.notes.append(f"{layer.label}: focal_loss_param {{ beta }} is never used by {FRCNN}: dropped")
    if params["alpha"] <= 0:
        ctx.problem(layer, f"focal_loss_param {{ alpha: {params['alpha']} }}: {FRCNN} refuses alpha <= 0 "
                           f"(CHECK_GT: Caffe aborts)")
    params.update(_axis(ctx, layer))
    params.update(loss_param(ctx, layer, ("ignore_label", "normalization")))
    _softmax_tops(ctx, layer, FRCNN)
    ctx.notes.append(f"{layer.label}: {FRCNN} takes log(max(p, 1.2e-38)); SoftmaxFocalLoss takes log p exactly "
                     f"(the same loss wherever p_y >= 1.2e-38)")
    return "SoftmaxFocalLoss", params


def _owphoo(ctx, layer, v, alphas):
    params = {"gamma": v.get("gamma", 2.0)}
    if v.get("alpha_balance"):
        if not alphas:
            ctx.problem(layer, f"focal_loss_param {{ alpha_balance: true }} without alpha: {OWPHOO} needs one "
                               f"alpha per class (Caffe aborts)")
        params["alpha"] = list(alphas)
        if len(alphas) == 1:
            ctx.notes.append(f"{layer.label}: one alpha with alpha_balance: {OWPHOO} needs one per class: "
                             f"SoftmaxFocalLoss checks the count against the scores when the net is built")
    elif alphas:
        ctx.notes.append(f"{layer.label}: focal_loss_param {{ alpha }} without alpha_balance: true is never "
                         f"used by {OWPHOO} (every class weighs 1): dropped")
    for unused in ("axis", "engine"):
        if unused in v:
            ctx.notes.append(f"{layer.label}: focal_loss_param {{ {unused} }} is never read by {OWPHOO} "
                             f"(the axis is softmax_param's): dropped")
    params.update(_axis(ctx, layer))
    params.update(loss_param(ctx, layer, ("ignore_label", "normalization")))
    _softmax_tops(ctx, layer, OWPHOO)
    ctx.notes.append(f"{layer.label}: {OWPHOO} takes (1 - p_y + 1e-6)^gamma; SoftmaxFocalLoss (1 - p_y)^gamma "
                     f"(a relative difference below gamma * 1e-6 / (1 - p_y))")
    return "SoftmaxFocalLoss", params


def _softmax_tops(ctx, layer, fork):
    if len(layer.tops) > 2:
        ctx.problem(layer, f"FocalLoss with {len(layer.tops)} tops: {fork} has the loss and the "
                           f"probabilities (2 at most)")


def _liuyuisanai_params(ctx, layer, v):
    params = {"gamma": v.get("gamma", 2.0), "alpha": v.get("alpha", 0.25)}
    params.update(loss_param(ctx, layer, ("ignore_label", "normalization")))
    params.setdefault("normalization", "BATCH_SIZE")     # the fork's default, not ours (VALID)
    return params


def _liuyuisanai_hint(ctx, layer, v):
    params = {"gamma": v.get("gamma", 2.0), "alpha": v.get("alpha", 0.25), "normalization": "BATCH_SIZE"}
    return "{" + ", ".join(f"{k}: {val}" for k, val in params.items()) + "}" + \
        (" (and loss_param's settings)" if layer.f.get("loss_param") is not None else "")


def _liuyuisanai(ctx, layer, v):
    params = _liuyuisanai_params(ctx, layer, v)
    if not 0 <= params["alpha"] <= 1:
        ctx.problem(layer, f"focal_loss_param {{ alpha: {params['alpha']} }}: SigmoidFocalLoss takes alpha "
                           f"in [0, 1] (1 - alpha weighs the negatives)")
    if len(layer.tops) > 1:
        ctx.problem(layer, f"FocalLoss with {len(layer.tops)} tops: the second top of {LIUYUISANAI} (the "
                           f"per-element loss, CPU only) has no counterpart")
    ctx.notes.append(f"{layer.label}: {LIUYUISANAI} treats every target other than 1 as a negative; "
                     f"SigmoidFocalLoss takes targets in [0, 1] (the same loss for 0/1 targets). The "
                     f"translation follows the fork's GPU code (its CPU path is the plain sigmoid "
                     f"cross-entropy)")
    return "SigmoidFocalLoss", params
