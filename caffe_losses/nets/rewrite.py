"""The toolkit of a loss family's ``migrate`` rules (its ``migrate.py``).

A family declares :class:`caffe_losses.losses.family.ForkLayer` rules; the
engine (:mod:`caffe_losses.nets.migrate`) walks the net and, for a layer of a
declared type, calls the rule's ``convert(ctx, layer)`` with

* ``layer``, a :class:`Layer`: the layer's textproto field ``.f`` and its
  ``.name``, ``.type``, ``.bottoms``, ``.tops``, ``.label`` (how messages
  name it);
* ``ctx``, a :class:`Context`: ``ctx.problem(layer, message)`` for what
  cannot be carried over (then nothing is written), ``ctx.notes`` for
  remarks that need no action, ``ctx.change(layer, old, new)`` for a
  change line of its own (shown after the layer's type and blocks lines),
  ``ctx.writer`` / ``ctx.producer`` ({blob: the layer that wrote it last /
  made it} among the layers before this one), ``ctx.hed``.

and writes ``python_param { module: "caffe_losses" layer: <class> param_str:
<params> }`` from what ``convert`` returns: ``(our layer class name,
{param_str key: value})``.  The helpers below read a layer's blocks as Caffe
reads them.  This module imports neither the registry nor the engine (the
engine imports the registry, whose families import this).
"""

import re

from caffe_losses.glue.fillers import FILLER_TYPES
from caffe_losses.nets import textproto
from caffe_losses.nets.prototxt import layer_label

__all__ = ["MigrationError", "Change", "Migration", "Layer", "Context", "subfields", "loss_param",
           "filler", "fork_param_str", "FILLER_KEYS", "LOSS_PARAM_KEYS"]

FILLER_KEYS = ("type", "value", "min", "max", "mean", "std", "variance_norm", "sparse")

# loss_param's fields -> the param_str key each becomes (normalize: Caffe's old bool)
LOSS_PARAM_KEYS = {"ignore_label": "ignore_label", "normalization": "normalization",
                   "normalize": "normalization"}


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
    """The result of :func:`caffe_losses.nets.migrate.migrate_text`.

    Attributes:
      text: the migrated prototxt (equal to the input when nothing changed).
      changes: list of :class:`Change`, in file order.
      problems: what could not be translated (empty when the migration is good).
      notes: remarks that need no action.
      migrated: {layer name: (class, params)} of the layers rewritten
        (used by :func:`caffe_losses.nets.migrate.inspect_weights`).
    """

    def __init__(self, text):
        self.text = text
        self.changes, self.problems, self.notes = [], [], []
        self.migrated = {}


class Layer:
    """A layer of the tree, with what the rules need."""

    def __init__(self, field):
        self.f = field
        self.name = field.get("name") or ""
        self.type = field.get("type") or ""
        self.bottoms = [b.value for b in field.all("bottom")]
        self.tops = [t.value for t in field.all("top")]
        self.label = layer_label(self.name, self.tops)


class Context:
    """What a rule reports to, and what it may read of the layers before its own.

    ``descriptor(block name)`` is the block's message type as Caffe (or the
    fork that added it, from the families' ``fork_blocks``) declares it.
    """

    def __init__(self, text, hed, descriptor):
        self.text, self.hed, self.descriptor = text, hed, descriptor
        self.result = Migration(text)
        self.producer = {}      # blob -> the layer that made it (in-place layers not counted)
        self.writer = {}        # blob -> the layer that wrote it last (in-place layers too)
        self.notes = self.result.notes
        self.params = {}        # id(layer.f) -> param { } specs a rule adds (add_param)

    def add_param(self, layer, spec):
        """Appends ``spec`` (``"param { lr_mult: 0 decay_mult: 0 }"``) after the layer's own
        ``param`` blocks: for a layer that keeps more blobs than the fork's (a count the solver
        must not move).  The rule writes its own change line."""
        self.params.setdefault(id(layer.f), []).append(spec)

    def problem(self, layer, message):
        self.result.problems.append(f"{layer.label}: {message}")

    def change(self, layer, old, new):
        self.result.changes.append(Change(layer.label, old, new))


def subfields(ctx, layer, block, allowed, descriptor=None):
    """``block``'s fields {name: value (a Field for a message)}, read as Caffe reads them (its
    message type ``descriptor``, by default the block's own); a problem for any other sub-field."""
    descriptor = descriptor or ctx.descriptor(block.name)
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


def loss_param(ctx, layer, keys):
    """The layer's loss_param -> {normalization, ignore_label} restricted to ``keys`` (a problem
    for a setting outside them)."""
    block = layer.f.get("loss_param")
    if block is None:
        return {}
    v = subfields(ctx, layer, block, tuple(LOSS_PARAM_KEYS))
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


def filler(ctx, layer, block):
    """A ``FillerParameter`` block (a fork's ``*_filler { ... }``) -> the param_str value the
    package's fillers read (:mod:`caffe_losses.glue.fillers`); None for zeros."""
    v = subfields(ctx, layer, block, FILLER_KEYS, ctx.descriptor("FillerParameter"))
    if v.get("sparse") == -1:
        del v["sparse"]                 # Caffe's default: not sparse
    spec = {key: v[key] for key in FILLER_KEYS if key in v}
    kind = spec.get("type", "constant")
    if kind not in FILLER_TYPES:
        ctx.problem(layer, f"{block.name} {{ type: {kind!r} }} is not supported (use one of "
                           f"{', '.join(FILLER_TYPES)})")
    if kind == "constant" and not spec.get("value", 0):
        return None                     # Caffe's default: zeros
    return spec["type"] if list(spec) == ["type"] else spec


def fork_param_str(layer):
    """The ``param_str`` text of a fork's Python layer ("" when it has none)."""
    pp = layer.f.get("python_param")
    return (pp.get("param_str") or "") if pp is not None else ""


def stored_shapes(stored):
    """A ``.caffemodel`` layer's blob shapes, Caffe's legacy num/channels/height/width read as 4-D."""
    return [tuple(b.shape.dim) if b.HasField("shape") else (b.num, b.channels, b.height, b.width)
            for b in stored.blobs]


def reshape_stored(blob, shape):
    """Gives a stored blob ``shape`` (its legacy 4-D fields cleared), as a family's ``weights`` rule does."""
    for legacy in ("num", "channels", "height", "width"):
        blob.ClearField(legacy)
    blob.shape.dim[:] = list(shape)

