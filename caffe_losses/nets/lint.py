"""Lint a Caffe net for the mistakes users of these losses make.

:func:`lint_net` reads a ``NetParameter`` (prototxt text) and returns
:class:`Finding` s; ``caffe-losses check`` prints them.  Rules:

* ``python-loss-weight``: a Python loss layer with no ``loss_weight``.
  Caffe gives Python layers no default loss weight, so the loss is computed
  and printed but never trains the net.  Not when a
  later layer fed by the loss (a ``Power`` or ``Scale``) carries the weight:
  the gradient reaches the loss through it.
* ``python-ignored-param``: a Python layer carrying ``loss_param`` or
  another ``*_param`` block: Caffe hands a Python
  layer only ``python_param``, so the settings are silently ignored (an
  error for ``caffe_losses`` layers, a warning for others).
* ``data-source``: a data layer's source (HDF5 list, image list, LMDB)
  that is missing, checked as ``caffe-losses train`` checks it before Caffe
  would abort.
* ``param-str``: a ``caffe_losses`` layer whose ``param_str`` does not parse
  or validate, or an unknown ``caffe_losses`` layer class.
* ``double-softmax``: a layer that applies softmax itself (Caffe's
  ``SoftmaxWithLoss``, and the families' layers that say so) fed by a
  ``Softmax``.
* ``layer-type``: a layer type the Caffe in use does not register
  (``caffe.layer_type_list()``): Caffe aborts with "Unknown layer type".
  The message says whether ``caffe-losses migrate`` translates it.
* ``fork-field``: a field BVLC's ``caffe.proto`` lacks (a fork's, e.g. one
  kept by ``migrate --keep-unknown``): Caffe refuses the net.  The rest of
  the net is read without it and checked.

The loss families add their own rules (``h-file``, ``native-infogain``,
``raw-scores``, ``center-update`` ...): each family's ``lint`` module, listed
in its declaration (:class:`caffe_losses.losses.family.Family` ``lint``),
holds functions ``rule(ctx, layer)`` called for every layer of a phase with
a :class:`RuleContext`.

Rules are checked per phase (TRAIN and TEST, honouring include/exclude
phase rules); relative paths (H files, data sources) are resolved against
the working directory, as Caffe does, and messages name the file read.
Unnamed layers are named by their first top.  The net is read as Caffe's
parser reads it (:mod:`caffe_losses.nets.prototxt`); fields of a fork inside
layers are reported (``fork-field``) and the rest checked.
"""

import os
from types import SimpleNamespace

from google.protobuf import text_format

import caffe_losses
from caffe_losses.glue.params import parse_params
from caffe_losses.losses import FAMILIES
from caffe_losses.nets import textproto
from caffe_losses.nets.preflight import PreflightError, check_data_sources, check_net_structure, in_phase, typo_of, solver_preflight, solver_problems
from caffe_losses.nets.prototxt import FORK_FIELDS, layer_label, parse_text, read_net_param, read_prototxt, read_text, solver_nets, unknown_field_label, weighted_downstream
from caffe_losses.nets.rewrite import LOSS_PARAM_KEYS

# caffe (pycaffe) is imported inside the functions that use it: the CLI
# imports this module, and must run without pycaffe to say that it is missing.

__all__ = ["Finding", "lint_net", "lint_file", "weighted_downstream", "layer_label"]

ERROR, WARNING, NOTE = "error", "warning", "note"
CLASSIFIER_TYPES = ("InnerProduct", "Convolution", "Deconvolution")
SOFTMAX_INSIDE_NATIVE = ("SoftmaxWithLoss",)     # Caffe's own; the families' layers: their rules


def _who(layer):
    return layer_label(layer.name, list(layer.top))


class Finding:
    """One problem: severity, rule id, layer name, message.

    ``layer`` is a ``LayerParameter`` (its name is kept, and an unnamed
    layer is shown by its top) or a layer name.
    """

    __slots__ = ("severity", "rule", "layer", "message", "label")

    def __init__(self, severity, rule, layer, message):
        if layer is None:                  # the file as a whole (a solver setting, the net's structure)
            self.layer, self.label = None, ""
        elif isinstance(layer, str):
            self.layer, self.label = layer, layer_label(layer, [])
        else:
            self.layer, self.label = layer.name, _who(layer)
        self.severity, self.rule, self.message = severity, rule, message

    def __repr__(self):
        return f"Finding({self.severity!r}, {self.rule!r}, {self.layer!r})"

    def __str__(self):
        where = f"{self.label}: " if self.label else ""
        return f"{self.severity.upper()} [{self.rule}] {where}{self.message}"

    def key(self):
        return (self.severity, self.rule, self.label, self.message)


def _python_class(layer):
    if layer.type != "Python":
        return None, None
    return layer.python_param.module, layer.python_param.layer


def _our_class(name):
    try:
        return getattr(caffe_losses, name)
    except AttributeError:
        return None


def _lr_mults(layer):
    return [p.lr_mult if p.HasField("lr_mult") else 1.0 for p in layer.param]


def _classifier_outputs(layer):
    if layer.type == "InnerProduct":
        return layer.inner_product_param.num_output
    if layer.type in ("Convolution", "Deconvolution"):
        return layer.convolution_param.num_output
    return None


def _parse(cls, param_str):
    return parse_params(cls.__name__, cls.PARAMS, param_str)


# Caffe hands a Python layer only python_param (param_str); what its other
# blocks would set, and where it goes in param_str
_IGNORED_BLOCK_KEYS = {"loss_param": LOSS_PARAM_KEYS}
for _family in FAMILIES:
    _IGNORED_BLOCK_KEYS.update(_family.movable)


def _ignored_blocks(findings, layer, ours, cls_name):
    for fd, value in layer.ListFields():
        if fd.message_type is None or not fd.name.endswith("_param") or fd.name == "python_param":
            continue
        keys = _IGNORED_BLOCK_KEYS.get(fd.name, {})
        put = sorted({keys[f.name] for f, _ in value.ListFields() if f.name in keys})
        where = f"put {', '.join(put)} in param_str" if put else "move its settings into param_str"
        findings.append(Finding(
            ERROR if ours else WARNING, "python-ignored-param", layer,
            f"Caffe does not pass {fd.name} to Python layers: {fd.name} {{ ... }} on "
            f"{'caffe_losses.' if ours else ''}{cls_name} is silently ignored. {where[0].upper() + where[1:]}"
            + (", or run caffe-losses migrate." if ours else ".")))


# layer types that caffe-losses migrate translates (the families' ForkLayers) -> their family
MIGRATED_TYPES = {fl.type: family for family in FAMILIES for fl in family.migrate if not fl.python and not fl.hed}


def _unknown_type(findings, layer, known):
    if layer.type in known or not layer.type:
        return
    family = MIGRATED_TYPES.get(layer.type)
    if family is not None and layer.type in family.layers:
        what = f"caffe-losses migrate translates it into caffe_losses.{layer.type}"
    elif family is not None:
        what = (f"caffe-losses migrate translates it into one of caffe_losses' {family.name} layers "
                f"({', '.join(family.layers)})")
    else:
        what = ("No translation in caffe-losses migrate: the net needs the Caffe (a fork) that has "
                "this layer")
    close = typo_of(layer.type, known)   # a typo? (not a fork's ROIPooling for Pooling)
    if close:
        what = f"Did you mean '{close[0]}'?"
    else:
        what += "."
    findings.append(Finding(ERROR, "layer-type", layer,
                            f"type '{layer.type}' is not a layer type of this Caffe "
                            f"(caffe.layer_type_list()): Caffe aborts with \"Unknown layer type: "
                            f"{layer.type}\". {what}"))


class RuleContext:
    """What a family's ``rule(ctx, layer)`` reads and reports to, for the layer checked now.

    Attributes:
      phase: ``caffe_pb2.TRAIN`` or ``TEST``; weight_decay: the solver's (None without one).
      producer, writer: {blob: the layer (``LayerParameter``) that made it / wrote it last}
        among the layers before this one (in-place layers count only for ``writer``).
      module, cls_name: the Python layer's module and class (None for other layers);
        ours: whether it is a ``caffe_losses`` layer; params: its parsed ``param_str``
        (None when it does not parse, or the layer is not ours).
      src: the layer whose output feeds bottom 0 (a ``Softmax`` in place counts).
      classes: ``num_output`` of the classifier feeding bottom 0 (through a ``Softmax``), or None.
      memo: a dict kept for the whole phase, for rules that need an earlier layer's facts.
    """

    CLASSIFIER_TYPES = CLASSIFIER_TYPES

    def __init__(self, findings, phase, weight_decay):
        self.findings, self.phase, self.weight_decay = findings, phase, weight_decay
        self.producer, self.writer, self.memo = {}, {}, {}
        self.layer = self.module = self.cls_name = self.params = self.src = self.classes = None
        self.ours = False

    def error(self, rule, message, layer=None):
        self.findings.append(Finding(ERROR, rule, layer if layer is not None else self.layer, message))

    def warning(self, rule, message, layer=None):
        self.findings.append(Finding(WARNING, rule, layer if layer is not None else self.layer, message))

    def note(self, rule, message, layer=None):
        self.findings.append(Finding(NOTE, rule, layer if layer is not None else self.layer, message))

    @staticmethod
    def label(layer):
        """How messages name ``layer`` (an unnamed one by its first top)."""
        return _who(layer)

    @staticmethod
    def lr_mults(layer):
        return _lr_mults(layer)

    def double_softmax(self, fix="", after=""):
        """``double-softmax``: the layer applies softmax itself; an error when a Softmax feeds it.
        ``fix`` is added to the fix, ``after`` to the message."""
        layer, src = self.layer, self.src
        if src is None or src.type != "Softmax":
            return
        what = f"{self.module}.{self.cls_name}" if self.module else f"native {layer.type}"
        in_place = bool(src.bottom) and src.bottom[0] == layer.bottom[0]
        how = (f"Remove the in-place Softmax {_who(src)} (it overwrites the raw scores "
               f"'{src.bottom[0]}')" if in_place else f"Feed it the raw scores ('{src.bottom[0]}')")
        self.error("double-softmax",
                   f"{what} applies softmax itself, but its input '{layer.bottom[0]}' comes from Softmax "
                   f"{_who(src)}" + (" (in place)" if in_place else "") + ": softmax is applied twice. "
                   + how + fix + after + ".")


_RULES = tuple(rule for family in FAMILIES for rule in family.lint)


def _lint_phase(net, phase, weight_decay=None):
    import caffe
    known = set(caffe.layer_type_list())
    findings = []
    ctx = RuleContext(findings, phase, weight_decay)
    producer, writer = ctx.producer, ctx.writer
    layers = [layer for layer in net.layer if in_phase(layer, phase)]
    records = [(list(layer.bottom), list(layer.top), list(layer.loss_weight)) for layer in layers]
    for layer in layers:      # train's pre-check, one data layer at a time
        try:
            check_data_sources(SimpleNamespace(layer=[layer]), phase)
        except PreflightError as err:
            findings.append(Finding(ERROR, "data-source", layer, str(err)))
    for index, layer in enumerate(layers):
        _unknown_type(findings, layer, known)
        module, cls_name = _python_class(layer)
        src = producer.get(layer.bottom[0]) if layer.bottom else None
        last = writer.get(layer.bottom[0]) if layer.bottom else None
        if last is not None and last.type == "Softmax":
            src = last          # a Softmax in place (top == bottom) makes probabilities too
        ours = module == "caffe_losses"
        cls = _our_class(cls_name) if ours else None
        params = None

        # param-str ------------------------------------------------------
        if ours and cls is None:
            findings.append(Finding(ERROR, "param-str", layer,
                                    f"caffe_losses has no layer '{cls_name}'. Layers: "
                                    f"{', '.join(caffe_losses.__all__)}"))
        elif cls is not None:
            try:
                params = _parse(cls, layer.python_param.param_str)
            except (ValueError, TypeError) as err:
                findings.append(Finding(ERROR, "param-str", layer, str(err)))
        if module is not None:
            _ignored_blocks(findings, layer, ours, cls_name)

        # python-loss-weight ------------------------------------------------
        if module is not None:
            is_loss = (cls_name.endswith("Loss") if ours
                       else "loss" in cls_name.lower() or "loss" in layer.name.lower())
            if is_loss and not any(w != 0 for w in layer.loss_weight) \
                    and not weighted_downstream(records, index):
                findings.append(Finding(
                    ERROR if ours else WARNING, "python-loss-weight", layer,
                    f"Python loss layer {module}.{cls_name} has no loss_weight: Caffe gives Python "
                    f"layers none, so this loss is printed but does not train the net. "
                    f"Add 'loss_weight: 1' to the layer."))

        # the classifier feeding the loss (through a Softmax), for the families' rules
        classifier = src
        if classifier is not None and classifier.type == "Softmax" and classifier.bottom:
            classifier = producer.get(classifier.bottom[0])
        classes = _classifier_outputs(classifier) if classifier is not None else None

        ctx.layer, ctx.module, ctx.cls_name, ctx.ours, ctx.params = layer, module, cls_name, ours, params
        ctx.src, ctx.classes = src, classes
        # double-softmax (Caffe's own layers; the families' rules say which of theirs)
        if layer.type in SOFTMAX_INSIDE_NATIVE:
            ctx.double_softmax()
        for rule in _RULES:           # the families' rules (losses/<family>/lint.py)
            rule(ctx, layer)

        for top in layer.top:
            writer[top] = layer
            if top not in layer.bottom:      # in-place layers keep the original producer
                producer[top] = layer
    return findings


def lint_net(net, solver=None):
    """All findings for a ``NetParameter``, TRAIN then TEST, without duplicates.

    ``solver`` (a ``SolverParameter``), when known, tells rules its settings
    (the weight decay the center-update rule depends on).
    """
    from caffe.proto import caffe_pb2
    weight_decay = solver.weight_decay if solver is not None else None
    seen, out = set(), []
    for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        for f in _lint_phase(net, phase, weight_decay):
            if f.key() not in seen:
                seen.add(f.key())
                out.append(f)
    return out


def _structure(nets):
    """``Net::Init``'s aborts (missing bottoms, a top made twice), as train checks them.

    Unknown layer types are the ``layer-type`` rule's (per layer, with migrate's translation).
    """
    out = []
    for where, net, phase in nets:
        try:
            check_net_structure(net, phase, where, types=False)
        except PreflightError as err:
            out.append((where, Finding(ERROR, "net-structure", None, str(err))))
    return out


def _solver_findings(solver, path):
    """Every pre-check ``caffe-losses train`` makes on the solver (shared code), and the solver warnings."""
    found = [(path, Finding(ERROR, "solver", None, str(err))) for err in solver_preflight(solver, path)]
    found += [(path, Finding(WARNING, "solver", None, f"solver {path}: {w}")) for w in solver_problems(solver)[1]]
    return found


def _fork_finding(path, field, net_path):
    owner, name = unknown_field_label(path, field, "the net")
    layer = path[0]
    who = SimpleNamespace(name=layer.get("name") or "", top=[t.value for t in layer.all("top")])
    origin = FORK_FIELDS.get(field.name)
    if origin and (layer.get("type") or "") in MIGRATED_TYPES:
        stem = os.path.splitext(os.path.basename(net_path))[0]
        what = (f"To carry the layer over to caffe_losses' layers: caffe-losses migrate {net_path} -o "
                f"{stem}_migrated.prototxt")
    else:
        what = ("It needs that fork's Caffe (caffe-losses migrate --keep-unknown keeps it); the rest "
                "of the net is checked without it.")
    return Finding(ERROR, "fork-field", who,
                   f"'{name}' is not in BVLC Caffe's caffe.proto (it comes from "
                   f"{origin or 'a fork of Caffe'}): this Caffe refuses the net. {what}")


def read_net_tolerant(path, found):
    """Reads a net prototxt as Caffe does, and a net whose layers carry a fork's fields without them.

    The fork's fields (inside layers only) are left out and reported in
    ``found`` (``{id(net): [Finding]}``); anything else protobuf refuses is
    an error as :func:`caffe_losses.nets.prototxt.read_net_param` raises it.
    """
    from caffe.proto import caffe_pb2
    try:
        return read_net_param(path)
    except ValueError as err:
        error = err
    text = read_text(path)
    try:
        unknown = textproto.unknown_fields(textproto.parse(text), caffe_pb2.NetParameter.DESCRIPTOR)
    except textproto.TextProtoError:
        raise error from None
    if not unknown or any(not p or p[0].name != "layer" for p, _ in unknown):
        raise error
    chars = list(text)
    for _, f in unknown:        # blanked out, so that positions in messages stay the file's
        for i in range(f.outer_start, f.outer_end):
            if chars[i] not in "\r\n":
                chars[i] = " "
    try:
        net = parse_text("".join(chars), caffe_pb2.NetParameter())
    except (text_format.ParseError, textproto.TextProtoError):
        raise error from None
    found[id(net)] = [_fork_finding(p, f, path) for p, f in unknown]
    return net


def lint_file(path):
    """Findings for a net or solver prototxt: list of (net path, Finding).

    Nets are read as Caffe reads them; a fork's fields inside layers are left
    out and reported (``fork-field``), and the rest of the net is checked.  A
    solver also gets every check ``caffe-losses train`` makes before training
    (:func:`caffe_losses.nets.preflight.solver_preflight`: its learning settings,
    ``snapshot_prefix``, ``weights`` files), and each net the structure checks
    of ``Net::Init``.
    """
    from caffe.proto import caffe_pb2
    forks, cache = {}, {}

    def reader(name):                 # each file read once, its fork findings kept
        if name not in cache:
            cache[name] = read_net_tolerant(name, forks)
        return cache[name]

    solver, nets = read_prototxt(path, reader=reader)
    if solver is None:
        phased = [(p, net, phase) for p, net in nets for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST)]
        found = []
    else:
        phased = solver_nets(solver, path, reader)
        found = _solver_findings(solver, path)
    seen = set()
    for where, finding in _structure(phased):
        if (where, finding.message) not in seen:
            seen.add((where, finding.message))
            found.append((where, finding))
    return found + [(p, f) for p, net in nets for f in forks.get(id(net), []) + lint_net(net, solver)]
