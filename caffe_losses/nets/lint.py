"""Lint a Caffe net for the mistakes users of these losses make.

:func:`lint_net` reads a ``NetParameter`` (prototxt text) and returns
:class:`Finding` s; ``caffe-losses check`` prints them.  Rules:

* ``python-loss-weight``: a Python loss layer with no ``loss_weight``.
  Caffe gives Python layers no default loss weight, so the loss is computed
  and printed but never trains the net.  Not when a
  later layer fed by the loss (a ``Power`` or ``Scale``) carries the weight:
  the gradient reaches the loss through it.
* ``python-ignored-param``: a Python layer carrying ``loss_param``,
  ``infogain_loss_param`` or another ``*_param`` block: Caffe hands a Python
  layer only ``python_param``, so the settings are silently ignored (an
  error for ``caffe_losses`` layers, a warning for others).
* ``data-source``: a data layer's source (HDF5 list, image list, LMDB)
  that is missing, checked as ``caffe-losses train`` checks it before Caffe
  would abort.
* ``param-str``: a ``caffe_losses`` layer whose ``param_str`` does not parse
  or validate, or an unknown ``caffe_losses`` layer class.
* ``h-file``: an infogain H ``source`` that is missing, malformed, or not
  L x L for the L classes of the classifier feeding the loss; likewise the
  file of a ``Constant`` layer feeding the loss's H bottom.
* ``native-infogain``: a native ``InfogainLoss`` that Caffe's layer aborts
  on while setting up: ``loss_param { normalize }`` (refused since Caffe
  1.0), or no H (neither ``source`` nor a third bottom).
* ``constant-source``: a ``Constant`` layer's ``source`` that the layer
  could not read (missing, malformed, more axes than a Caffe blob has).
* ``double-softmax``: a layer that applies softmax itself
  (``SoftmaxWithInfogainLoss``, native ``InfogainLoss`` and
  ``SoftmaxWithLoss``, ``Expectation`` by default) fed by a ``Softmax``.
* ``raw-scores``: the classic ``InfogainLoss`` (ours), which expects
  probabilities, fed straight by a classifier (InnerProduct/Convolution).
* ``expectation-kernel-lr``: an expectation computed by a fixed kernel
  (the age recipe's Convolution/InnerProduct with one output and no bias on
  top of a Softmax, its kernel set to 0..K-1 by ``caffe-losses
  net-surgery``) without ``param { lr_mult: 0 }``: the kernel would drift
  during training.
* ``layer-type``: a layer type the Caffe in use does not register
  (``caffe.layer_type_list()``): Caffe aborts with "Unknown layer type".
  The message says whether ``caffe-losses migrate`` translates it.
* ``fork-field``: a field BVLC's ``caffe.proto`` lacks (a fork's, e.g. one
  kept by ``migrate --keep-unknown``): Caffe refuses the net.  The rest of
  the net is read without it and checked.
* ``center-update``: a ``CenterLoss`` with ``update: direct`` whose centers
  the solver would also move, or with ``update: solver`` whose centers the
  solver never moves (lr_mult 0).  In direct mode the layer writes no diff
  to the centers, so the solver moves them only through weight decay: an
  error needs ``lr_mult`` and ``decay_mult`` non-zero (and, when a solver
  is checked, its ``weight_decay``).

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
from caffe_losses.losses.infogain.core import square_shape
from caffe_losses.nets import textproto
from caffe_losses.files.hmatrix import load_blob, load_h, zero_row_note
from caffe_losses.glue.params import parse_params
from caffe_losses.nets.preflight import PreflightError, check_data_sources, check_net_structure, in_phase, typo_of, solver_preflight, solver_problems
from caffe_losses.nets.prototxt import FORK_FIELDS, layer_label, parse_text, read_net_param, read_prototxt, read_text, solver_nets, unknown_field_label, weighted_downstream
from caffe_losses.files.safety import shown_path

# caffe (pycaffe) is imported inside the functions that use it: the CLI
# imports this module, and must run without pycaffe to say that it is missing.

__all__ = ["Finding", "lint_net", "lint_file", "weighted_downstream", "layer_label"]

ERROR, WARNING, NOTE = "error", "warning", "note"
CLASSIFIER_TYPES = ("InnerProduct", "Convolution", "Deconvolution")
SOFTMAX_INSIDE_NATIVE = ("InfogainLoss", "SoftmaxWithLoss")


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


def _check_h_file(findings, layer, source, classes, owner):
    try:
        H = load_h(source, owner=owner, key="source")
    except (OSError, ValueError, TypeError) as err:
        findings.append(Finding(ERROR, "h-file", layer, str(err)))
        return
    note = zero_row_note(H, name=f"H in {shown_path(source)}")
    if note:   # valid (a class weighted 0): Caffe's InfogainLoss runs it
        findings.append(Finding(NOTE, "h-zero-row", layer, note))
    if classes is not None and H.shape[0] != classes:
        findings.append(Finding(ERROR, "h-file", layer,
                                f"H in {shown_path(source)} is {H.shape[0]} x {H.shape[1]} but the classifier "
                                f"feeding the loss has {classes} outputs: expected {classes} x {classes}"))


# Caffe hands a Python layer only python_param (param_str); what its other
# blocks would set, and where it goes in param_str
_IGNORED_BLOCK_KEYS = {
    "loss_param": {"normalization": "normalization", "normalize": "normalization",
                   "ignore_label": "ignore_label"},
    "infogain_loss_param": {"source": "source", "axis": "axis"},
}


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


# layer types of the forks that caffe-losses migrate translates
MIGRATED_TYPES = ("SmoothL1Loss", "CenterLoss")


def _unknown_type(findings, layer, known):
    if layer.type in known or not layer.type:
        return
    if layer.type in MIGRATED_TYPES:
        what = f"caffe-losses migrate translates it into caffe_losses.{layer.type}"
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


def _native_infogain_setup(findings, layer):
    """Caffe's ``InfogainLossLayer::LayerSetUp`` CHECKs: ``normalize`` refused, an H required."""
    if layer.loss_param.HasField("normalize"):
        mode = "VALID" if layer.loss_param.normalize else "BATCH_SIZE"
        findings.append(Finding(
            ERROR, "native-infogain", layer,
            f"native InfogainLoss refuses loss_param {{ normalize: "
            f"{'true' if layer.loss_param.normalize else 'false'} }} (the field from before Caffe 1.0): "
            f"Caffe aborts with \"normalize is deprecated. use \"normalization\"\". Write "
            f"'normalization: {mode}' instead (as Caffe's other loss layers read normalize), or run "
            f"caffe-losses migrate, which does"))
    if len(layer.bottom) < 3 and not layer.infogain_loss_param.source:
        findings.append(Finding(
            ERROR, "native-infogain", layer,
            "native InfogainLoss has neither infogain_loss_param { source } nor a third bottom H: "
            "Caffe aborts with \"Infogain matrix source must be specified.\". Give the H file "
            "(caffe-losses make-h writes one) or the H blob as a third bottom"))


def _lint_phase(net, phase, weight_decay=None):
    import caffe
    known = set(caffe.layer_type_list())
    findings = []
    producer = {}
    writer = {}         # blob -> the layer that wrote it last (in-place layers too)
    constant_shapes = {}    # blob -> (Constant layer, its source, the file's shape)
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

        # double-softmax / raw-scores ---------------------------------------
        softmax_inside = layer.type in SOFTMAX_INSIDE_NATIVE or (
            ours and cls_name == "SoftmaxWithInfogainLoss") or (
            ours and cls_name == "Expectation" and (params or {}).get("softmax", True))
        if softmax_inside and src is not None and src.type == "Softmax":
            what = f"{module}.{cls_name}" if module else f"native {layer.type}"
            in_place = bool(src.bottom) and src.bottom[0] == layer.bottom[0]
            fix = (f"Remove the in-place Softmax {_who(src)} (it overwrites the raw scores "
                   f"'{src.bottom[0]}')" if in_place else f"Feed it the raw scores ('{src.bottom[0]}')")
            findings.append(Finding(
                ERROR, "double-softmax", layer,
                f"{what} applies softmax itself, but its input '{layer.bottom[0]}' comes from Softmax "
                f"{_who(src)}" + (" (in place)" if in_place else "") + ": softmax is applied twice. "
                + fix + (" or set 'softmax: false'" if cls_name == "Expectation" else "")
                + ("; a net written for Caffe before 1.0 (when InfogainLoss took probabilities): "
                   "caffe-losses migrate carries it over" if layer.type == "InfogainLoss" else "")
                + "."))
        if ours and cls_name == "InfogainLoss" and src is not None and src.type in CLASSIFIER_TYPES:
            findings.append(Finding(
                ERROR, "raw-scores", layer,
                f"caffe_losses.InfogainLoss expects probabilities, but its input '{layer.bottom[0]}' "
                f"is raw scores from {src.type} {_who(src)}. Use SoftmaxWithInfogainLoss on "
                f"the scores (stable, one layer), or put a Softmax in between."))

        # h-file -------------------------------------------------------------
        classifier = src
        if classifier is not None and classifier.type == "Softmax" and classifier.bottom:
            classifier = producer.get(classifier.bottom[0])
        classes = _classifier_outputs(classifier) if classifier is not None else None
        if ours and cls_name in ("SoftmaxWithInfogainLoss", "InfogainLoss") and params \
                and params.get("source"):
            _check_h_file(findings, layer, params["source"], classes, cls_name)
        if layer.type == "InfogainLoss" and layer.infogain_loss_param.source:
            _check_h_file(findings, layer, layer.infogain_loss_param.source, classes, "InfogainLoss")
        if ours and cls_name in ("SoftmaxWithInfogainLoss", "InfogainLoss") and len(layer.bottom) >= 3 \
                and not (params and params.get("source")) and classes is not None \
                and layer.bottom[2] in constant_shapes:
            # H as the third bottom, from a Constant layer's file: the shape the layer will refuse
            maker, source, shape = constant_shapes[layer.bottom[2]]
            if square_shape(shape) != (classes, classes):
                findings.append(Finding(
                    ERROR, "h-file", layer,
                    f"bottom '{layer.bottom[2]}' (H) comes from Constant {_who(maker)}, whose file "
                    f"{shown_path(source)} holds shape {shape}, but the classifier feeding the loss has "
                    f"{classes} outputs: expected {classes} x {classes} (or 1 x 1 x {classes} x {classes})"))

        # native-infogain: what the native layer's LayerSetUp aborts on
        if layer.type == "InfogainLoss":
            _native_infogain_setup(findings, layer)

        # constant-source: the file the Constant layer emits, read as the layer reads it
        if ours and cls_name == "Constant" and params and params.get("source"):
            try:
                blob = load_blob(params["source"], owner="Constant", key="source")
            except (OSError, ValueError, TypeError) as err:
                findings.append(Finding(ERROR, "constant-source", layer, str(err)))
            else:
                for top in layer.top[:1]:
                    constant_shapes[top] = (layer, params["source"], tuple(blob.shape))

        # expectation-kernel-lr ---------------------------------------------
        if layer.type in ("Convolution", "InnerProduct") and src is not None and src.type == "Softmax":
            p = layer.convolution_param if layer.type == "Convolution" else layer.inner_product_param
            if p.num_output == 1 and not p.bias_term:
                mults = _lr_mults(layer)
                if not mults or mults[0] != 0:
                    findings.append(Finding(
                        ERROR, "expectation-kernel-lr", layer,
                        f"{layer.type} {_who(layer)} computes an expectation over the Softmax "
                        f"{_who(src)} with a fixed kernel, but its kernel is learnable "
                        f"(lr_mult {mults[0] if mults else 1:g}): the 0..K-1 values set by net surgery "
                        f"would drift. Add 'param {{ lr_mult: 0 }}' (or use the Expectation layer)."))

        # center-update --------------------------------------------------------
        if ours and cls_name == "CenterLoss" and params is not None:
            mults = _lr_mults(layer)
            lr = mults[0] if mults else 1.0
            decay = layer.param[0].decay_mult if len(layer.param) and layer.param[0].HasField(
                "decay_mult") else 1.0
            # direct: the layer writes no diff to the centers, so the solver's
            # step there is lr * (momentum of) weight decay alone
            if params.get("update") == "direct" and lr != 0 and decay != 0 and weight_decay != 0:
                findings.append(Finding(
                    ERROR, "center-update", layer,
                    f"CenterLoss with update: direct moves its centers itself, and the solver would "
                    f"move them too: with lr_mult {lr:g} and decay_mult {decay:g} weight decay "
                    f"shrinks them every step. Add 'param {{ lr_mult: 0 decay_mult: 0 }}' (or "
                    f"decay_mult: 0), or set 'update: solver'."))
            if params.get("update") == "solver" and lr == 0:
                findings.append(Finding(
                    WARNING, "center-update", layer,
                    "CenterLoss with update: solver leaves the centers to the solver, but lr_mult is 0: "
                    "the centers never move. Set lr_mult to alpha / base_lr, or use update: direct."))

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
