"""Carry a user's net over to this package's layers: the engine of ``caffe-losses migrate``.

:func:`migrate_text` reads a net prototxt with the tolerant reader
(:mod:`caffe_losses.nets.textproto`), so fields that only Caffe's forks know do
not stop it, and rewrites the loss layers that the loss families declare
(:class:`caffe_losses.losses.family.ForkLayer`: a native Caffe layer, a
fork's C++ layer, or a fork's Python layer, matched by its ``python_param``
module and layer) into the package's layers with the same behaviour; their
rules live in each family's ``migrate`` module and use the toolkit
:mod:`caffe_losses.nets.rewrite`.  ``docs/migrate.md`` lists them (its
table is generated from the declarations).  A ``caffe_losses`` Python layer
carrying ``loss_param`` & co (Caffe ignores them) keeps its class, the
settings moved into ``param_str`` (the families' ``movable`` blocks).

The blocks a rule reads (``loss_param``, the families' ``fork_blocks``)
are removed and their settings moved into ``param_str``.  A native loss
layer's default ``loss_weight: 1`` is written out (Caffe gives Python layers
none).  Every other layer, and every byte of the file outside the rewritten
layers, stays as it was; migrating a migrated net changes nothing.

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
from caffe_losses.glue.params import _Loader, load_yaml, parse_params
from caffe_losses.losses import FAMILIES
from caffe_losses.nets import textproto
from caffe_losses.nets.prototxt import FORK_FIELDS, fork_fields_hint, layer_label, parse_text, unknown_field_label, weighted_downstream
from caffe_losses.nets.rewrite import (LOSS_PARAM_KEYS, Change, Context, Layer, Migration, MigrationError, filler,
                                       loss_param, subfields)

# caffe (pycaffe) is imported inside the functions that read caffe.proto: the
# CLI imports this module, and must run without pycaffe to say that it is missing.

__all__ = ["MigrationError", "Change", "Migration", "migrate_text", "FORK_FIELDS",
           "fork_fields_hint", "inspect_weights", "update_docs"]

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


def _fork_message(block):
    """A fork's block as its caffe.proto declares it (a :class:`caffe_losses.losses.family.ForkBlock`)."""
    from caffe.proto import caffe_pb2
    fields = [_ForkField(f[0], f[1], getattr(caffe_pb2, f[2]).DESCRIPTOR if f[1] == "MESSAGE" else None)
              for f in block.fields]
    for f in fields:
        f.is_repeated = f.name in block.repeated
    return _ForkMessage(block.message, fields)


def _descriptor(name):
    """The message type of a block migrate reads (BVLC's, or the fork's as the families' fork_blocks
    declare it), or of a message of BVLC's caffe.proto named ``name`` (``"FillerParameter"``)."""
    from caffe.proto import caffe_pb2
    if name in _FORK_BLOCKS:
        return _fork_message(_FORK_BLOCKS[name])
    field = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name.get(name)
    if field is not None:
        return field.message_type
    return getattr(caffe_pb2, name).DESCRIPTOR


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

# the families' declarations: {type: ForkLayer}, {(module, layer): ForkLayer} of forks'
# Python layers, the --hed ones, {block: its ForkBlock}, {block: {field: param_str key}}
_NATIVE = {fl.type: fl for family in FAMILIES for fl in family.migrate if not fl.hed and not fl.python}
_PYTHON = {tuple(fl.python): fl for family in FAMILIES for fl in family.migrate if fl.python}
_HED = {fl.type: fl for family in FAMILIES for fl in family.migrate if fl.hed and not fl.python}
_FORK_BLOCKS = {block.name: block for family in FAMILIES for block in family.fork_blocks}
_WEIGHTS = {cls: carry for family in FAMILIES for cls, carry in family.weights.items()}
_MOVABLE = {"loss_param": LOSS_PARAM_KEYS}          # read by loss_param (normalize: the old bool)
for _family in FAMILIES:
    _MOVABLE.update(_family.movable)


def _v1_name(layer_type):
    """A layer type's name in the old 'layers' format (V1): EuclideanLoss -> EUCLIDEAN_LOSS
    (a type V1 did not have gets a name no V1 net uses)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", layer_type).upper()


# the types above in the old 'layers' format (V1), whose layers migrate asks to upgrade first
_V1_TYPES = {"PYTHON"} | {_v1_name(t) for t in _NATIVE}
_V1_HED_TYPES = {_v1_name(t) for t in _HED}


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
            got = loss_param(ctx, layer, [k for k in ("ignore_label", "normalization") if k in keys])
        elif block.name in _MOVABLE:
            got = {}
            v = subfields(ctx, layer, block, tuple(_MOVABLE[block.name]))
            for old, new in _MOVABLE[block.name].items():
                if old not in v:
                    continue
                fd = ctx.descriptor(block.name).fields_by_name[old]
                if new not in keys:
                    ctx.problem(layer, f"{block.name} {{ {old} }} has no counterpart in {cls_name} "
                                       f"(its keys: {', '.join(keys)})")
                elif fd.message_type is not None and fd.message_type.name == "FillerParameter":
                    spec = filler(ctx, layer, v[old])
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


def _rewrite_native(ctx, edits, layer, fork, weighted_later):
    """Rewrites a layer of a type a family's :class:`ForkLayer` ``fork`` translates."""
    n_problems, n_changes = len(ctx.result.problems), len(ctx.result.changes)
    cls_name, params = fork.convert(ctx, layer)
    _not_text(ctx, layer, params)
    if len(ctx.result.problems) > n_problems:
        del ctx.result.changes[n_changes:]
        return
    own = ctx.result.changes[n_changes:]          # the rule's own change lines: after the blocks'
    del ctx.result.changes[n_changes:]
    f = layer.f
    type_field = f.all("type")[-1]
    if fork.python:
        ctx.change(layer, f"type Python {'.'.join(fork.python)}", f"Python caffe_losses.{cls_name}")
        for pp in f.all("python_param"):
            edits.remove(pp)
    else:
        ctx.change(layer, f"type {layer.type}", f"Python caffe_losses.{cls_name}")
        edits.replace(type_field.value_start, type_field.value_end, '"Python"')
    for block in f.children:
        if block.name in fork.blocks:
            moved = _moved(block, params, fork)
            ctx.change(layer, textproto.describe(ctx.text, block),
                       f"param_str {_show_params(moved)}" if moved else "dropped")
            edits.remove(block)
    ctx.result.changes.extend(own)
    anchor = (f.all("top") or f.all("bottom") or [type_field])[-1]
    block_lines, inline = _python_param_lines(cls_name, params, _unit(edits, f))
    extra, extra_inline = [], ""
    specs = ctx.params.pop(id(f), [])            # param { } specs the rule adds (rewrite.Context.add_param)
    if specs and f.all("param"):
        edits.insert_after(f.all("param")[-1], specs, " ".join(specs))
    elif specs:
        extra, extra_inline = list(specs), " " + " ".join(specs)
    # a layer that is not a loss (MarginProduct's logits) gets no loss_weight
    if not f.all("loss_weight") and not (fork.python and weighted_later) and cls_name.endswith("Loss"):
        weights = [1] + [0] * (len(layer.tops) - 1)
        extra += [f"loss_weight: {w}" for w in weights]
        extra_inline += " " + " ".join(f"loss_weight: {w}" for w in weights)
        if fork.python:
            ctx.change(layer, "no loss_weight (Caffe gives Python layers none: this loss did not train)",
                       " ".join(f"loss_weight: {w}" for w in weights))
        else:
            ctx.change(layer, f"no loss_weight (native loss layers default to 1"
                              f"{', 0 for other tops' if len(weights) > 1 else ''})",
                       " ".join(f"loss_weight: {w}" for w in weights) + " (Caffe gives Python layers none)")
    edits.insert_after(anchor, block_lines + extra, inline + extra_inline)
    ctx.result.migrated[layer.name] = (cls_name, params)


def _moved(block, params, fork):
    """The param_str settings that ``block`` became (shown in its change line): its movable
    fields', and, on a fork's own block, the settings the rule adds that no block gives
    (e.g. the mode the fork's layer ran in)."""
    keys = list(dict.fromkeys(_MOVABLE.get(block.name, {}).values()))
    if block.name in _FORK_BLOCKS and block.name == next((b for b in fork.blocks if b in _FORK_BLOCKS), None):
        given = {key for b in fork.blocks for key in _MOVABLE.get(b, {}).values()}
        keys += [k for k in params if k not in given]
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
        layer = Layer(field)
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
      hed: also translate the types the families declare with ``hed=True`` (Caffe has them
        natively, HED changed them: its class-balanced sigmoid loss).
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
    ctx = Context(text, hed, _descriptor)
    _given_twice(ctx, root)
    if ctx.result.problems:     # Caffe refuses the net: no translation to show (it would read one of the two)
        return ctx.result
    edits = _Edits(text)
    if root.all("layers"):
        for v1 in root.all("layers"):
            kind = v1.get("type") or ""
            if kind in _V1_TYPES or (hed and kind in _V1_HED_TYPES):
                ctx.result.problems.append(
                    f"{layer_label(v1.get('name'), [t.value for t in v1.all('top')])}: the net uses "
                    f"the old 'layers' format (V1); convert it with Caffe's upgrade_net_proto_text "
                    f"tool first")
    table = dict(_NATIVE, **(_HED if hed else {}))
    layers = [Layer(field) for field in root.all("layer")]
    records = [(layer.bottoms, layer.tops, _loss_weights(layer.f)) for layer in layers]
    for i, layer in enumerate(layers):
        if layer.type in table:
            _rewrite_native(ctx, edits, layer, table[layer.type], False)
        elif layer.type == "Python":
            pp = layer.f.get("python_param")
            module, name = (pp.get("module"), pp.get("layer")) if pp is not None else (None, None)
            if module == "caffe_losses":
                _rewrite_python(ctx, edits, layer, weighted_downstream(records, i))
            elif (module, name) in _PYTHON and (hed or not _PYTHON[module, name].hed):
                _rewrite_native(ctx, edits, layer, _PYTHON[module, name], weighted_downstream(records, i))
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
# docs/migrate.md's tables, from the declarations
# ---------------------------------------------------------------------------

_DOCS_BLOCK = re.compile(r"(<!-- migrate-table: (?P<name>[a-z]+) -->\n)(.*?)(<!-- /migrate-table -->)", re.S)


def _forks_table(families):
    rows = ["| layer type | what `migrate` does, and why |", "|---|---|"]
    for family in families:
        for fl in family.migrate:
            what = f"`{fl.type}`" + (f" (`{'.'.join(fl.python)}`)" if fl.python else "")
            what += " with `--hed`" if fl.hed else ""
            rows.append(f"| {what}: {fl.fork} | {fl.doc} |")
    rows += [
        "| `Python` layers of `caffe_losses` carrying `loss_param` & co | the same layer, the settings in "
        "`param_str` (the table above): Caffe ignores those blocks on a Python layer |",
        "| any other type this Caffe lacks (even with only BVLC's `loss_param`), e.g. HED's "
        "`ImageLabelmapData`, AM-Softmax's `Normalize`, R-FCN's `SmoothL1LossOHEM`, py-faster-rcnn's "
        "`ROIPooling` | refused: named, nothing written (exit status 1); with `--keep-unknown` kept as it "
        "is, and said in a note. No layer here computes what the fork's does; a guess would train "
        "silently wrong |",
        "| a fork's field on a layer not translated (`roi_pooling_param`, ...) | refused, or kept with "
        "`--keep-unknown`: BVLC's `caffe.proto` lacks it, and Caffe refuses the whole net |",
        "| V1 nets (`layers { type: INFOGAIN_LOSS }`) | refused: convert them with Caffe's "
        "`upgrade_net_proto_text` first |",
    ]
    return "\n".join(rows) + "\n"


def _movable_table(families):
    rows = ["| block on a `caffe_losses` Python layer | moves into `param_str` as |", "|---|---|",
            "| `loss_param { normalization / normalize / ignore_label }` | `normalization`, `ignore_label` "
            "(when the layer has them) |"]
    for family in families:
        for block, keys in family.movable.items():
            shown = ", ".join(f"`{k}`" for k in dict.fromkeys(keys.values()))
            rows.append(f"| `{block} {{ {' '.join(keys)} }}` | {shown} |")
    rows += [
        "| any other `*_param` block | not translated (the layer has no such setting) |",
        "| a key set both in a block and in `param_str`, differently | not translated: Caffe used "
        "`param_str`'s; remove one |",
        "| no `loss_weight`, and no later layer carrying one | `loss_weight: 1` (without it the loss "
        "never trained) |",
    ]
    return "\n".join(rows) + "\n"


DOCS_TABLES = {"forks": _forks_table, "movable": _movable_table}


def update_docs(text, families=FAMILIES):
    """``text`` with each ``<!-- migrate-table: NAME -->`` block of ``docs/migrate.md``
    regenerated from the families' declarations (``forks``: their :class:`ForkLayer` s'
    ``doc``; ``movable``: their ``movable`` blocks).  Returns (new text, the names replaced)."""
    names = []

    def replace(match):
        names.append(match.group("name"))
        return match.group(1) + DOCS_TABLES[match.group("name")](families) + match.group(4)
    return _DOCS_BLOCK.sub(replace, text), names


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
    did; this checks the rewritten ones: a layer with blobs of its own has its
    family's ``weights`` rule (:class:`caffe_losses.losses.family.Family`:
    a fork's trained centers or class weights); the others keep none.

    Args:
      model_bytes: the ``.caffemodel`` file's bytes (a binary NetParameter;
        its layers may carry fields BVLC's caffe.proto lacks, a fork's
        blocks: protobuf keeps them as unknown fields, and Caffe loads such a
        model as well).
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
        carry = _WEIGHTS.get(cls_name)
        if carry is not None:             # a layer with blobs of its own (its family's ``weights``)
            line, problem, did = carry(label, params, layer)
            if problem:
                problems.append(problem)
                continue
            changed |= bool(did)
            lines.append(line)
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
    for name, (cls_name, params) in migration.migrated.items():
        carry = _WEIGHTS.get(cls_name)
        if carry is not None and name not in present:
            lines.append(carry(layer_label(name, []), params, None)[0])
    return lines, problems, (model if changed and not problems else None)
