"""Carry a user's net over to this package's layers: the engine of ``caffe-losses migrate``.

:func:`migrate_text` reads a net prototxt with the tolerant reader
(:mod:`caffe_losses.nets.textproto`), so fields that only Caffe's forks know do
not stop it, and rewrites these loss layers into the package's layers with
the same behaviour:

=============================================  =========================================
original                                       migrated
=============================================  =========================================
native ``InfogainLoss`` on raw scores          ``SoftmaxWithInfogainLoss``
native ``InfogainLoss`` fed by a ``Softmax``   ``InfogainLoss`` (ours, on probabilities)
fast-rcnn ``SmoothL1Loss`` (2 to 4 bottoms)    ``SmoothL1Loss`` (same sigma, weights)
caffe-face ``CenterLoss``                      ``CenterLoss`` with ``update: solver``
HED ``SigmoidCrossEntropyLoss`` (``hed=True``) ``WeightedSigmoidCrossEntropyLoss``,
                                               ``balance: auto``
a ``caffe_losses`` Python layer carrying       the same layer, the settings moved
``loss_param`` & co (Caffe ignores them)       into ``param_str``
=============================================  =========================================

Settings move into ``param_str``: ``infogain_loss_param { source axis }``,
``loss_param { normalization | normalize, ignore_label }``,
``smooth_l1_loss_param { sigma }``, ``center_loss_param { num_output ->
num_classes, center_filler }``.  A native loss layer's default
``loss_weight: 1`` is written out (Caffe gives Python layers none).  Every
other layer, and every byte of the file outside the rewritten layers, stays
as it was; migrating a migrated net changes nothing.

The net is read as Caffe's own parser reads it (:mod:`caffe_losses.nets.textproto`):
each value moved is the one Caffe read (``normalization: 0`` is ``FULL``,
``ignore_label: 0377`` is 255, ``"H\\303\\251"`` is ``Hé``), and a
non-repeated field given twice is refused, as Caffe refuses it.  Existing
``param_str`` text is read with the layers' own loader
(:func:`caffe_losses.glue.params.load_yaml`), and what is written is checked to
read back the same through it.

What cannot be carried over exactly (an unknown sub-field, a setting the
target layer lacks, a conflict with ``param_str``, a fork-only field on a
layer this module does not translate, a layer type the Caffe in use does not
register) is reported as a problem, and nothing should be written.
"""

import re

import yaml
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor

import caffe_losses
from caffe_losses.nets import textproto
from caffe_losses.glue.fillers import FILLER_TYPES
from caffe_losses.glue.params import _Loader, load_yaml, parse_params
from caffe_losses.nets.prototxt import FORK_FIELDS, fork_fields_hint, layer_label, parse_text, unknown_field_label, weighted_downstream

# caffe (pycaffe) is imported inside the functions that read caffe.proto: the
# CLI imports this module, and must run without pycaffe to say that it is missing.

__all__ = ["MigrationError", "Change", "Migration", "migrate_text", "FORK_FIELDS",
           "fork_fields_hint", "inspect_weights"]

_FILLER_KEYS = ("type", "value", "min", "max", "mean", "std", "variance_norm", "sparse")


class MigrationError(ValueError):
    """The net cannot be migrated (a syntax error, or problems listed in the message)."""


class Change:
    """One change: the layer (as :func:`layer_label` names it), what it was, what it became."""

    __slots__ = ("layer", "old", "new")

    def __init__(self, layer, old, new):
        self.layer, self.old, self.new = layer, old, new

    def __str__(self):
        return f"{self.layer}: {self.old} -> {self.new}"

    def __repr__(self):
        return f"Change({str(self)!r})"


class Migration:
    """The result of :func:`migrate_text`.

    Attributes:
      text: the migrated prototxt (equal to the input when nothing changed).
      changes: list of :class:`Change`, in file order.
      problems: what could not be translated (empty when the migration is good).
      notes: remarks that need no action (e.g. a Softmax-fed InfogainLoss).
      migrated: {layer name: (class, params)} of the layers rewritten
        (used by :func:`inspect_weights`).
    """

    def __init__(self, text):
        self.text = text
        self.changes, self.problems, self.notes = [], [], []
        self.migrated = {}


# ---------------------------------------------------------------------------
# Value conversion
# ---------------------------------------------------------------------------

class _ForkField:
    """A field of a fork's caffe.proto, described as protobuf describes BVLC's (what textproto reads)."""

    def __init__(self, name, cpp_type, message_type=None):
        self.name, self.cpp_type = name, getattr(FieldDescriptor, "CPPTYPE_" + cpp_type)
        self.message_type, self.enum_type, self.is_repeated = message_type, None, False


class _ForkMessage:
    def __init__(self, name, fields):
        self.name, self.fields_by_name = name, {f.name: f for f in fields}


def _descriptor(block_name):
    """The message type of a block migrate reads: BVLC's, or the fork's (as its caffe.proto declares it)."""
    from caffe.proto import caffe_pb2
    if block_name == "smooth_l1_loss_param":       # rbgirshick/caffe-fast-rcnn
        return _ForkMessage("SmoothL1LossParameter", [_ForkField("sigma", "FLOAT")])
    if block_name == "center_loss_param":          # ydwen/caffe-face
        return _ForkMessage("CenterLossParameter", [
            _ForkField("num_output", "UINT32"),
            _ForkField("center_filler", "MESSAGE", caffe_pb2.FillerParameter.DESCRIPTOR),
            _ForkField("axis", "INT32")])
    return caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name[block_name].message_type


def _layer_field(name):
    from caffe.proto import caffe_pb2
    return caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name[name]


def _loss_weights(field):
    """A layer's loss_weight values as Caffe reads them (a bad one counts as 1: the net is refused anyway)."""
    out = []
    for w in field.all("loss_weight"):
        try:
            out.append(textproto.scalar(w, _layer_field("loss_weight")))
        except ValueError:
            out.append(1.0)
    return out


def _dumper():
    """A YAML dumper that quotes every string that either YAML 1.1 or param_str's loader reads otherwise."""
    class Dumper(yaml.SafeDumper):
        pass
    Dumper.yaml_implicit_resolvers = {}
    for source in (yaml.SafeDumper.yaml_implicit_resolvers, _Loader.yaml_implicit_resolvers):
        for first, resolvers in source.items():
            Dumper.yaml_implicit_resolvers.setdefault(first, []).extend(resolvers)
    return Dumper


def _param_str(params):
    """YAML flow mapping for ``param_str``, read back by the layers' own loader to the same dict."""
    text = yaml.dump(params, Dumper=_dumper(), default_flow_style=True, sort_keys=False, width=1 << 30,
                     allow_unicode=True).strip()
    if load_yaml(text) != params:   # never write what the layer would read differently
        raise MigrationError(f"internal error: param_str {text!r} does not read back as {params!r}")
    return text


def _show_params(params):
    return _param_str(params)[1:-1]


# ---------------------------------------------------------------------------
# Text edits (positions in the whole file)
# ---------------------------------------------------------------------------

class _Edits:
    def __init__(self, text):
        self.text = text
        self.items = []            # (start, end, replacement)

    def replace(self, start, end, new):
        self.items.append((start, end, new))

    def _line_start(self, pos):
        return self.text.rfind("\n", 0, pos) + 1

    def _rest_of_line(self, pos):
        end = self.text.find("\n", pos)
        return self.text[pos:] if end < 0 else self.text[pos:end]

    def alone(self, field):
        """Whether ``field`` has its lines to itself (only blanks and a comment around it)."""
        before = self.text[self._line_start(field.outer_start):field.outer_start]
        after = self._rest_of_line(field.outer_end)
        return not before.strip() and re.fullmatch(r"[ \t]*[,;]?[ \t]*(#.*)?\r?", after) is not None

    def indent(self, field):
        before = self.text[self._line_start(field.outer_start):field.outer_start]
        return before if not before.strip() else None

    def remove(self, field):
        if self.alone(field):
            start = self._line_start(field.start)
            end = field.end + len(self._rest_of_line(field.end))
            end = min(end + 1, len(self.text))      # the newline
        else:
            start = field.start
            end = field.end + len(re.match(r"[ \t]*[,;]?[ \t]*", self.text[field.end:]).group())
        self.replace(start, end, "")

    def insert_after(self, field, lines, inline):
        """Inserts ``lines`` (one field each) after ``field``: on new lines with its indentation
        when it ends its line, else ``inline`` on the same line."""
        end = field.outer_end              # after the whole list for an element of one
        rest = self._rest_of_line(end)
        indent = self.indent(field)
        if indent is not None and re.fullmatch(r"[ \t]*[,;]?[ \t]*(#.*)?\r?", rest):
            eol = "\r\n" if rest.endswith("\r") else "\n"     # the file's own line ends
            pos = end + len(rest.rstrip("\r"))
            self.replace(pos, pos, "".join(eol + indent + line for line in lines))
        else:
            self.replace(end, end, " " + inline)

    def apply(self):
        out, last = [], len(self.text)
        for start, end, new in sorted(self.items, key=lambda e: (e[0], e[1]), reverse=True):
            if end > last:
                raise MigrationError("internal error: overlapping edits")
            out.append(self.text[end:last])
            out.append(new)
            last = start
        out.append(self.text[:last])
        return "".join(reversed(out))


# ---------------------------------------------------------------------------
# The layer rewrites
# ---------------------------------------------------------------------------

class _Layer:
    """A layer of the tree, with what the rewrites need."""

    def __init__(self, field):
        self.f = field
        self.name = field.get("name") or ""
        self.type = field.get("type") or ""
        self.bottoms = [b.value for b in field.all("bottom")]
        self.tops = [t.value for t in field.all("top")]
        self.label = layer_label(self.name, self.tops)


def _subfields(ctx, layer, block, allowed, descriptor=None):
    """``block``'s fields {name: value (a Field for a message)}, read as Caffe reads them (its
    message type ``descriptor``, by default the block's own); a problem for any other sub-field."""
    descriptor = descriptor or _descriptor(block.name)
    values = {}
    for f in block.children:
        fd = descriptor.fields_by_name.get(f.name)
        if f.name not in allowed or fd is None:
            ctx.problem(layer, f"{block.name} {{ {f.name} }} has no counterpart here: "
                               f"cannot translate '{textproto.describe(ctx.text, f)}'")
            continue
        try:
            value = textproto.scalar(f, fd)
            if isinstance(value, float) and re.fullmatch(r"-?[ \t]*[0-9]+", f.value) and value.is_integer():
                value = int(value)      # a float field written as "3": param_str says 3, as the user did
            values[f.name] = value
        except ValueError as err:
            ctx.problem(layer, f"'{textproto.describe(ctx.text, f)}' in {block.name}: {err} "
                               f"(Caffe refuses the net too)")
    return values


def _loss_param(ctx, layer, keys):
    """loss_param -> {normalization, ignore_label} restricted to ``keys``."""
    block = layer.f.get("loss_param")
    if block is None:
        return {}
    v = _subfields(ctx, layer, block, ("normalization", "normalize", "ignore_label"))
    out = {}
    if "ignore_label" in v:
        out["ignore_label"] = v["ignore_label"]
    if "normalization" in v:            # a name, or its number (DIGITS writes 0 for FULL)
        out["normalization"] = v["normalization"]
    elif "normalize" in v:
        # Caffe's LossLayer: the old bool, read only when normalization is unset
        out["normalization"] = "VALID" if v["normalize"] else "BATCH_SIZE"
    for key in list(out):
        if key not in keys:
            ctx.problem(layer, f"loss_param {{ {key} }} has no counterpart in the migrated layer "
                               f"(its keys: {', '.join(keys)})")
            del out[key]
    return out


def _filler(ctx, layer, block):
    """center_filler { ... } -> the CenterLoss 'center_filler' value (None for zeros)."""
    from caffe.proto import caffe_pb2
    v = _subfields(ctx, layer, block, _FILLER_KEYS, caffe_pb2.FillerParameter.DESCRIPTOR)
    if v.get("sparse") == -1:
        del v["sparse"]                 # Caffe's default: not sparse
    spec = {key: v[key] for key in _FILLER_KEYS if key in v}
    kind = spec.get("type", "constant")
    if kind not in FILLER_TYPES:
        ctx.problem(layer, f"center_filler {{ type: {kind!r} }} is not supported (use one of "
                           f"{', '.join(FILLER_TYPES)})")
    if kind == "constant" and not spec.get("value", 0):
        return None                     # caffe-face's default: zeros, ours too
    return spec["type"] if list(spec) == ["type"] else spec


def _native_infogain(ctx, layer):
    block = layer.f.get("infogain_loss_param")
    v = _subfields(ctx, layer, block, ("source", "axis")) if block is not None else {}
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
    params.update(_loss_param(ctx, layer, ("ignore_label", "normalization")))
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


def _smooth_l1(ctx, layer):
    if not 2 <= len(layer.bottoms) <= 4:
        ctx.problem(layer, f"SmoothL1Loss with {len(layer.bottoms)} bottoms: expected 2 to 4 "
                           f"(pred, target, inside weights, outside weights)")
    block = layer.f.get("smooth_l1_loss_param")
    v = _subfields(ctx, layer, block, ("sigma",)) if block is not None else {}
    params = {}
    if "sigma" in v:
        params["sigma"] = v["sigma"]
    if layer.f.get("loss_param") is not None:
        ctx.notes.append(f"{layer.label}: the fork's SmoothL1Loss reads no loss_param "
                         f"(it divides by N): dropped")
    return "SmoothL1Loss", params


def _center(ctx, layer):
    block = layer.f.get("center_loss_param")
    if block is None:
        ctx.problem(layer, "CenterLoss without center_loss_param { num_output }: cannot tell the "
                           "number of classes")
        return "CenterLoss", {}
    v = _subfields(ctx, layer, block, ("num_output", "center_filler", "axis"))
    params = {}
    if "num_output" in v:
        params["num_classes"] = v["num_output"]
    else:
        ctx.problem(layer, "center_loss_param has no num_output: cannot tell the number of classes")
    if "axis" in v and v["axis"] != 1:
        ctx.problem(layer, f"center_loss_param {{ axis: {v['axis']} }}: CenterLoss here flattens the "
                           f"features from axis 1 (caffe-face's default); cannot translate another axis")
    if "center_filler" in v:
        spec = _filler(ctx, layer, v["center_filler"])
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


def _hed_sigmoid(ctx, layer):
    params = {"balance": "auto"}
    params.update(_loss_param(ctx, layer, ("ignore_label", "normalization")))
    return "WeightedSigmoidCrossEntropyLoss", params


_NATIVE = {
    "InfogainLoss": (_native_infogain, ("infogain_loss_param", "loss_param")),
    "SmoothL1Loss": (_smooth_l1, ("smooth_l1_loss_param", "loss_param")),
    "CenterLoss": (_center, ("center_loss_param", "loss_param")),
}
_HED = {"SigmoidCrossEntropyLoss": (_hed_sigmoid, ("loss_param",))}

# the blocks whose settings move into param_str -> {field: the param_str key it becomes}
_MOVABLE = {
    "loss_param": {"ignore_label": "ignore_label", "normalization": "normalization",
                   "normalize": "normalization"},     # read by _loss_param (normalize: the old bool)
    "infogain_loss_param": {"source": "source", "axis": "axis"},
    "smooth_l1_loss_param": {"sigma": "sigma"},
    "center_loss_param": {"num_output": "num_classes", "center_filler": "center_filler"},
}


def _schema_keys(cls_name):
    try:
        cls = getattr(caffe_losses, cls_name)
    except AttributeError:
        return None
    return [p.name for p in cls.PARAMS]


def _python_layer(ctx, layer):
    """A caffe_losses Python layer carrying blocks Caffe ignores: move them into param_str."""
    pp = layer.f.get("python_param")
    cls_name = pp.get("layer") if pp is not None else None
    blocks = [f for f in layer.f.children if f.is_message and f.name.endswith("_param")
              and f.name != "python_param"]
    if not blocks:
        return None
    keys = _schema_keys(cls_name)
    if keys is None:
        ctx.problem(layer, f"caffe_losses has no layer '{cls_name}'")
        return None
    existing_text = pp.get("param_str") or ""
    try:     # as the layer reads it (YAML 1.2 numbers: 0255 is 255)
        existing = load_yaml(existing_text) if existing_text.strip() else {}
    except yaml.YAMLError as err:
        ctx.problem(layer, f"its param_str is not valid YAML ({err}); fix it first")
        return None
    if not isinstance(existing, dict):
        ctx.problem(layer, f"its param_str {existing_text!r} is not a mapping; fix it first")
        return None
    moved = {}
    for block in blocks:
        if block.name == "loss_param":
            got = _loss_param(ctx, layer, [k for k in ("ignore_label", "normalization") if k in keys])
        elif block.name in _MOVABLE:
            got = {}
            v = _subfields(ctx, layer, block, tuple(_MOVABLE[block.name]))
            for old, new in _MOVABLE[block.name].items():
                if old not in v:
                    continue
                if new not in keys:
                    ctx.problem(layer, f"{block.name} {{ {old} }} has no counterpart in {cls_name} "
                                       f"(its keys: {', '.join(keys)})")
                elif old == "center_filler":
                    spec = _filler(ctx, layer, v[old])
                    if spec is not None:
                        got[new] = spec
                else:
                    got[new] = v[old]
        else:
            ctx.problem(layer, f"Caffe passes only python_param to a Python layer, and {block.name} "
                               f"has no counterpart in {cls_name}: cannot translate "
                               f"'{textproto.describe(ctx.text, block)}'")
            continue
        for key, value in got.items():
            if key in existing and existing[key] != value:
                ctx.problem(layer, f"{block.name} sets {key} to {value!r} but param_str sets "
                                   f"{existing[key]!r} (the value Caffe used): remove one")
            moved[key] = value
        ctx.change(layer, textproto.describe(ctx.text, block) + " (ignored by Caffe for Python layers)",
                   f"param_str {_show_params(got)}" if got else "removed")
    params = dict(existing)
    params.update({k: v for k, v in moved.items() if k not in existing})
    return cls_name, params, blocks, pp


class _Context:
    def __init__(self, text, hed):
        self.text, self.hed = text, hed
        self.result = Migration(text)
        self.producer = {}      # blob -> the layer that made it (in-place layers not counted)
        self.writer = {}        # blob -> the layer that wrote it last (in-place layers too)
        self.notes = self.result.notes

    def problem(self, layer, message):
        self.result.problems.append(f"{layer.label}: {message}")

    def change(self, layer, old, new):
        self.result.changes.append(Change(layer.label, old, new))


def _python_param_lines(cls_name, params, unit):
    lines = ["module: \"caffe_losses\"", f"layer: {textproto.quote(cls_name)}"]
    if params:
        lines.append(f"param_str: {textproto.quote(_param_str(params))}")
    block = ["python_param {"] + [unit + line for line in lines] + ["}"]
    return block, "python_param { " + " ".join(lines) + " }"


def _unit(edits, layer_field):
    outer = edits.indent(layer_field) or ""
    for f in layer_field.children:
        inner = edits.indent(f)
        if inner is not None and inner.startswith(outer) and len(inner) > len(outer):
            return inner[len(outer):]
    return "  "


def _not_text(ctx, layer, params):
    """A problem for each string setting that is not UTF-8 (pycaffe hands param_str to Python as text)."""
    for key, value in params.items():
        if isinstance(value, str) and textproto.encode(value).decode("utf-8", "replace") != value:
            ctx.problem(layer, f"{key} {textproto.quote(value)} is not UTF-8 text: Caffe hands param_str "
                               f"to a Python layer as UTF-8 text, so the layer could not read it "
                               f"(rename the file to UTF-8)")


def _rewrite_native(ctx, edits, layer, convert, blocks):
    n_problems = len(ctx.result.problems)
    cls_name, params = convert(ctx, layer)
    _not_text(ctx, layer, params)
    if len(ctx.result.problems) > n_problems:
        return
    f = layer.f
    old_type = layer.type
    ctx.change(layer, f"type {old_type}", f"Python caffe_losses.{cls_name}")
    type_field = f.all("type")[-1]
    edits.replace(type_field.value_start, type_field.value_end, '"Python"')
    for block in f.children:
        if block.name in blocks:
            ctx.change(layer, textproto.describe(ctx.text, block),
                       f"param_str {_show_params(_moved(block, params))}" if _moved(block, params)
                       else "dropped")
            edits.remove(block)
    if cls_name == "WeightedSigmoidCrossEntropyLoss":
        ctx.change(layer, "HED's class balance (the fork's SigmoidCrossEntropyLoss)", "param_str balance: auto")
    anchor = (f.all("top") or f.all("bottom") or [type_field])[-1]
    block_lines, inline = _python_param_lines(cls_name, params, _unit(edits, f))
    extra, extra_inline = [], ""
    if not f.all("loss_weight"):
        weights = [1] + [0] * (len(layer.tops) - 1)
        extra = [f"loss_weight: {w}" for w in weights]
        extra_inline = " " + " ".join(extra)
        ctx.change(layer, f"no loss_weight (native loss layers default to 1{', 0 for other tops' if len(weights) > 1 else ''})",
                   " ".join(extra) + " (Caffe gives Python layers none)")
    edits.insert_after(anchor, block_lines + extra, inline + extra_inline)
    ctx.result.migrated[layer.name] = (cls_name, params)


def _moved(block, params):
    """The param_str settings that ``block`` became (shown in its change line)."""
    keys = list(dict.fromkeys(_MOVABLE.get(block.name, {}).values()))
    if block.name == "center_loss_param":
        keys.append("update")       # the mode caffe-face's CenterLoss ran in (set by _center)
    return {k: params[k] for k in keys if k in params}


def _rewrite_python(ctx, edits, layer, weighted_later):
    n_problems = len(ctx.result.problems)
    got = _python_layer(ctx, layer)
    if got is not None:
        _not_text(ctx, layer, got[1])
    if got is None or len(ctx.result.problems) > n_problems:
        return
    cls_name, params, blocks, pp = got
    for block in blocks:
        edits.remove(block)
    ps = pp.all("param_str")
    new = textproto.quote(_param_str(params)) if params else '""'
    if ps:
        edits.replace(ps[-1].value_start, ps[-1].value_end, new)
    else:
        anchor = (pp.all("layer") or pp.all("module"))[-1]
        edits.insert_after(anchor, [f"param_str: {new}"], f"param_str: {new}")
    if cls_name.endswith("Loss") and not layer.f.all("loss_weight") and not weighted_later:
        # the net was written for a native loss layer (default weight 1); as a
        # Python layer without the line it computed the loss but never trained
        weights = " ".join(f"loss_weight: {w}" for w in [1] + [0] * (len(layer.tops) - 1))
        edits.insert_after(pp, [weights], weights)
        ctx.change(layer, "no loss_weight (Caffe gives Python layers none: this loss did not train)",
                   weights)
    ctx.result.migrated[layer.name] = (cls_name, params)


def _given_twice(ctx, root):
    """Caffe refuses a net whose non-repeated field is given twice (it does not keep the last)."""
    from caffe.proto import caffe_pb2
    found = textproto.repeated_twice(root, caffe_pb2.NetParameter.DESCRIPTOR)
    for layer in root.all("layer"):      # the forks' blocks, as their caffe.proto declares them
        for name in FORK_FIELDS:
            blocks = layer.all(name)
            found += [((layer,), b) for b in blocks[1:]]
            for b in blocks:
                found += [((layer, b) + path, f) for path, f in textproto.repeated_twice(b, _descriptor(name))]
    for path, f in found:
        owner, name = unknown_field_label(path, f, "the net")
        ctx.result.problems.append(
            f"{owner}: '{name}' is given twice; Caffe refuses the net (\"Non-repeated field "
            f"\"{f.name}\" is specified multiple times\"): keep one (merge the two)")


def _unknown_types(ctx, root, keep_unknown):
    """Layer types the Caffe in use does not register: Caffe would abort with "Unknown layer type"."""
    import caffe
    known = set(caffe.layer_type_list())
    for field in root.all("layer"):
        layer = _Layer(field)
        if not layer.type or layer.type in known:
            continue
        message = (f"{layer.label}: type '{layer.type}' is not a layer type of this Caffe "
                   f"(caffe.layer_type_list()), and migrate has no translation for it: Caffe would "
                   f"abort with \"Unknown layer type: {layer.type}\"")
        if keep_unknown:
            ctx.result.notes.append(message + "; kept (--keep-unknown): the net needs the Caffe that has it")
        else:
            ctx.result.problems.append(message + " (--keep-unknown keeps it, for the Caffe that has it)")


def _validate(ctx, keep_unknown):
    """Checks the migrated text: protobuf reads it, every param_str validates."""
    from caffe.proto import caffe_pb2
    result = ctx.result
    root = textproto.parse(result.text)
    unknown = textproto.unknown_fields(root, caffe_pb2.NetParameter.DESCRIPTOR)
    for path, f in unknown:
        owner, name = unknown_field_label(path, f, "the net")
        origin = FORK_FIELDS.get(f.name, "a fork of Caffe")
        message = (f"{owner}: '{name}' is not in BVLC Caffe's caffe.proto (it comes from {origin}) and "
                   f"migrate does not translate this layer")
        if keep_unknown:
            result.notes.append(message + "; kept (--keep-unknown): the net needs that fork's Caffe")
        else:
            result.problems.append(message)
    _unknown_types(ctx, root, keep_unknown)
    if not unknown and not result.problems:
        try:
            net = parse_text(result.text, caffe_pb2.NetParameter())
        except (text_format.ParseError, textproto.TextProtoError) as err:
            result.problems.append(f"the migrated net does not parse in BVLC Caffe ({err})")
            return
        for layer in net.layer:
            if layer.type != "Python" or layer.python_param.module != "caffe_losses":
                continue
            cls = getattr(caffe_losses, layer.python_param.layer, None)
            if layer.name in result.migrated and cls is not None:
                try:
                    parse_params(cls.__name__, cls.PARAMS, layer.python_param.param_str)
                except (ValueError, TypeError) as err:
                    result.problems.append(f"{layer_label(layer.name, list(layer.top))}: {err}")


def migrate_text(text, *, hed=False, keep_unknown=False):
    """Migrates the net prototxt ``text``.

    Args:
      text: the net prototxt, possibly with fork-only fields.
      hed: also treat ``SigmoidCrossEntropyLoss`` as HED's class-balanced loss.
      keep_unknown: keep fork-only fields of layers that are not translated
        (a note instead of a problem; the net then needs that fork's Caffe).

    Returns:
      :class:`Migration` (check ``problems`` before using ``text``).

    Raises:
      MigrationError when the text is not prototxt at all.
    """
    try:
        root = textproto.parse(text)
    except textproto.TextProtoError as err:
        raise MigrationError(f"not a prototxt: {err}") from None
    ctx = _Context(text, hed)
    _given_twice(ctx, root)
    if ctx.result.problems:     # Caffe refuses the net: no translation to show (it would read one of the two)
        return ctx.result
    edits = _Edits(text)
    if root.all("layers"):
        for v1 in root.all("layers"):
            kind = v1.get("type") or ""
            if kind in ("INFOGAIN_LOSS", "PYTHON") or (hed and kind == "SIGMOID_CROSS_ENTROPY_LOSS"):
                ctx.result.problems.append(
                    f"{layer_label(v1.get('name'), [t.value for t in v1.all('top')])}: the net uses "
                    f"the old 'layers' format (V1); convert it with Caffe's upgrade_net_proto_text "
                    f"tool first")
    table = dict(_NATIVE, **(_HED if hed else {}))
    layers = [_Layer(field) for field in root.all("layer")]
    records = [(layer.bottoms, layer.tops, _loss_weights(layer.f)) for layer in layers]
    for i, layer in enumerate(layers):
        if layer.type in table:
            convert, blocks = table[layer.type]
            _rewrite_native(ctx, edits, layer, convert, blocks)
        elif layer.type == "Python":
            pp = layer.f.get("python_param")
            if pp is not None and pp.get("module") == "caffe_losses":
                _rewrite_python(ctx, edits, layer, weighted_downstream(records, i))
        for top in layer.tops:
            ctx.writer[top] = layer
            if top not in layer.bottoms:
                ctx.producer[top] = layer
    result = ctx.result
    if result.problems:
        return result
    result.text = edits.apply()
    _validate(ctx, keep_unknown)
    return result


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------

def _stored_shape(blob):
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def _has_unknown_fields(message):
    clean = type(message)()
    clean.CopyFrom(message)
    clean.DiscardUnknownFields()
    return clean.ByteSize() != message.ByteSize()


def inspect_weights(model_bytes, net_param, migration):
    """Whether a ``.caffemodel`` trained with the original net loads into the migrated one.

    Caffe copies blobs layer by layer, by name (``Net::CopyTrainedLayersFrom``),
    and needs the same number of blobs and the same shapes.  The layers that
    migrate did not touch are the same layers, so their blobs load as they
    did; this checks the rewritten ones (caffe-face's centers, no blobs for
    the other losses).

    Args:
      model_bytes: the ``.caffemodel`` file's bytes (a binary NetParameter;
        its layers may carry fields BVLC's caffe.proto lacks, e.g.
        caffe-face's ``center_loss_param``: protobuf keeps them as unknown
        fields, and Caffe loads such a model as well).
      net_param: the migrated net as a ``caffe_pb2.NetParameter``.
      migration: the :class:`Migration` that made it.

    Returns:
      (lines, problems, new_model): a report line per stored layer with
      blobs; what cannot load; and, when something had to change (centers
      stored in Caffe's legacy 1 x 1 x N x K shape, or a migrated layer
      stored with a fork's fields), the model to write: the same blobs, the
      migrated layers' stored definitions replaced by the new ones.  None
      when the model loads as it is.
    """
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    try:
        model.ParseFromString(model_bytes)
    except Exception as err:   # protobuf's DecodeError
        raise MigrationError(f"not a binary .caffemodel ({err})") from None
    v1 = not len(model.layer) and len(model.layers)
    stored = list(model.layers if v1 else model.layer)
    new_layers = {layer.name: layer for layer in net_param.layer}
    lines, problems, changed = [], [], False
    for layer in stored:
        label = layer_label(layer.name, list(layer.top))
        shapes = [_stored_shape(b) for b in layer.blobs]
        shown = ", ".join("x".join(map(str, s)) for s in shapes)
        if layer.name not in new_layers:
            if shapes:
                lines.append(f"{label}: not in the migrated net, ignored as Caffe does "
                             f"({len(shapes)} blob(s))")
            continue
        if layer.name not in migration.migrated:
            if shapes:
                lines.append(f"{label}: copied, {len(shapes)} blob(s) ({shown}), layer unchanged")
            continue
        cls_name, params = migration.migrated[layer.name]
        if cls_name == "CenterLoss":
            shape = shapes[0] if len(shapes) == 1 else ()
            if len(shape) == 4 and shape[:2] == (1, 1):          # Caffe's legacy 1 x 1 x N x K
                shape = shape[2:]
            if len(shapes) != 1 or len(shape) != 2 or shape[0] != params.get("num_classes"):
                problems.append(f"{label}: the model holds {len(shapes)} blob(s) ({shown}) there, but "
                                f"the migrated CenterLoss (num_classes: {params.get('num_classes')}) "
                                f"keeps one, the centers, {params.get('num_classes')} x D")
                continue
            if shapes[0] != shape:
                blob = layer.blobs[0]
                for legacy in ("num", "channels", "height", "width"):
                    blob.ClearField(legacy)
                blob.shape.dim[:] = list(shape)
                changed = True
            lines.append(f"{label}: copied, the centers ({shape[0]}x{shape[1]})")
        elif shapes:
            problems.append(f"{label}: the model holds {len(shapes)} blob(s) ({shown}) there, but "
                            f"the migrated {cls_name} has none")
            continue
        if _has_unknown_fields(layer):
            changed = True
            lines.append(f"{label}: stored with fields BVLC's caffe.proto lacks; "
                         f"its stored definition becomes the migrated one")
    if changed and not v1:
        for layer in stored:     # the migrated layers' stored definitions: the new ones
            if layer.name in migration.migrated and layer.name in new_layers:
                blobs = [type(b)() for b in layer.blobs]
                for copy, b in zip(blobs, layer.blobs):
                    copy.CopyFrom(b)
                layer.CopyFrom(new_layers[layer.name])
                layer.blobs.extend(blobs)
    present = {layer.name for layer in stored}
    for name, (cls_name, _) in migration.migrated.items():
        if cls_name == "CenterLoss" and name not in present:
            lines.append(f"{layer_label(name, [])}: no centers in the model: initialised as the "
                         f"migrated layer says (center_filler, or zeros)")
    return lines, problems, (model if changed and not problems else None)
