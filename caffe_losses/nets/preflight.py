"""Checks before handing files to Caffe, which aborts the process on them.

Caffe ``LOG(FATAL)`` s (SIGABRT, no Python exception) when a data layer's
source file is missing, when a ``.caffemodel`` or ``.solverstate`` does not
fit the net, when a solver's test nets and ``test_iter`` disagree, and at
the first snapshot when ``snapshot_prefix``'s folder is missing (the run is
lost).  These functions look first and raise :class:`PreflightError` (a
``ValueError``) with a message naming the layer and file.  Used by
``caffe-losses train`` and ``net-surgery``.

caffe (pycaffe) is imported inside the functions that use it: the CLI
imports this module, and must run without pycaffe to say that it is missing.
"""

import difflib
import math
import os
import re
import stat
import subprocess
import sys
import tempfile

import h5py
import numpy as np

from caffe_losses.files.safety import format_bytes, not_a_file, read_bytes

__all__ = ["PreflightError", "in_phase", "check_data_sources", "check_net_structure", "check_weights",
           "check_solver", "check_snapshot_prefix", "check_solverstate", "net_shapes", "model_layer_names",
           "unmatched_layers", "weights_layers", "check_model", "solver_problems", "solver_preflight",
           "read_list_file", "snapshot_prefix", "SOLVER_TYPES", "LR_POLICIES"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class PreflightError(ValueError):
    """A file Caffe would abort on."""


def _rule_met(rule, phase):
    """Caffe's ``Net::StateMeetsRule`` for the state ``{phase, level 0, no stages}``.

    That is the state of ``caffe.Net(path, phase)`` and of a solver's nets
    unless the prototxt sets ``state``: a rule that needs a stage, or a level
    range excluding 0, is not met; ``not_stage`` always is.
    """
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and rule.min_level > 0:
        return False
    if rule.HasField("max_level") and rule.max_level < 0:
        return False
    return not len(rule.stage)


def in_phase(layer, phase):
    """Whether Caffe builds ``layer`` in ``phase`` (its include/exclude rules)."""
    if len(layer.include):
        return any(_rule_met(r, phase) for r in layer.include)
    return not any(_rule_met(r, phase) for r in layer.exclude)


# A list file names .h5 files (HDF5Data) or images with labels (ImageData), one a line:
# anything bigger is not one (and is not read whole: /dev/zero, a huge file given by mistake)
MAX_LIST_BYTES = 64 * 2 ** 20


def _file_kind(st):
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(st.st_mode):
            return name
    return None if stat.S_ISREG(st.st_mode) else "not a regular file"


def read_list_file(path, who):
    """The lines of a data layer's list file: a regular text file, read to a bound, never blocking."""
    st = os.stat(path)
    kind = _file_kind(st)
    if kind:
        raise PreflightError(f"{who}: source '{path}' is {kind}, not a regular file: give the text file "
                             f"that lists the data files")
    try:
        # O_NONBLOCK: a FIFO swapped in after the stat above does not hang the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_LIST_BYTES + 1)
    except OSError as err:
        raise PreflightError(f"{who}: source '{path}' cannot be read: {err.strerror or err}") from None
    if any(data[at:at + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for at in (0, 512, 1024, 2048)):
        raise PreflightError(f"{who}: source '{path}' is an HDF5 file; source must be a text file listing "
                             f".h5 files, one a line (e.g. a '{os.path.splitext(os.path.basename(path))[0]}.txt' "
                             f"holding the line {path})")
    if len(data) > MAX_LIST_BYTES:
        raise PreflightError(f"{who}: source '{path}' is larger than {format_bytes(MAX_LIST_BYTES)}: not a list "
                             f"of data files (source must be a text file naming them, one a line)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PreflightError(f"{who}: source '{path}' is not a text file (byte {err.start} is not UTF-8): "
                             f"source must be a text file naming the data files, one a line") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _quoted(name, limit=120):
    """A list file's line for a message: quoted, and shortened when it is long (never a 50 MB line)."""
    if len(name) <= limit:
        return f"'{name}'"
    return f"'{name[:limit]}...' (a line of {len(name)} characters)"


def check_data_sources(param, phase):
    """Caffe aborts the process when a data layer's source is missing, and blocks on a FIFO: check first."""
    for layer in param.layer:
        if not in_phase(layer, phase):
            continue
        source = None
        if layer.type == "HDF5Data":
            source = layer.hdf5_data_param.source
        elif layer.type == "ImageData":
            source = layer.image_data_param.source
        elif layer.type == "Data":
            source = layer.data_param.source
        if source is None:
            continue
        if not os.path.exists(source):
            raise PreflightError(
                f"data layer '{layer.name}' ({layer.type}) reads '{source}', which does not exist "
                f"(relative to {os.getcwd()}): write the data first, or run from the folder the "
                f"prototxt's paths are relative to")
        who = f"data layer '{layer.name}' ({layer.type})"
        if layer.type == "ImageData":
            read_list_file(source, who)
        if layer.type == "HDF5Data":
            files = read_list_file(source, who)
            if not files:
                raise PreflightError(f"{who}: list file '{source}' is empty")
            for name in files:
                if not os.path.exists(name):
                    raise PreflightError(f"{who}: list file '{source}' names a missing file {_quoted(name)}")
                kind = _file_kind(os.stat(name))
                if kind:
                    raise PreflightError(f"{who}: list file '{source}' names {_quoted(name)}, which is {kind}, not an "
                                         f"HDF5 file")
                try:
                    with open(name, "rb") as f:
                        f.read(8)      # an unreadable file (EIO, /proc/self/mem) is named by the OS's words
                    hdf5 = h5py.is_hdf5(name)      # the signature at 0, 512, 1024... (a user block)
                except OSError as err:
                    raise PreflightError(f"{who}: list file '{source}' names {_quoted(name)}, which cannot be read: "
                                         f"{err.strerror or err}") from None
                if not hdf5:
                    raise PreflightError(f"{who}: list file '{source}' names {_quoted(name)}, which is not an HDF5 file "
                                         f"(Caffe would abort)")


_PHASES = {0: "TRAIN", 1: "TEST"}   # caffe_pb2.Phase values, for messages


def _uses_state_rules(param):
    """Whether some layer is included or excluded by stage or level (not only by phase)."""
    return any(rule.HasField("min_level") or rule.HasField("max_level") or len(rule.stage) or len(rule.not_stage)
               for layer in param.layer for rule in list(layer.include) + list(layer.exclude))


def typo_of(layer_type, known, cutoff=0.8):
    """``[the registered type]`` that ``layer_type`` is a typo of, else ``[]``.

    A fork's type that is a registered one with more around it (``ROIPooling``,
    ``PSROIPooling``, ``SmoothL1LossOHEM``) is another layer, not a typo:
    "Did you mean 'Pooling'?" would send the user to a layer that computes
    something else.
    """
    close = difflib.get_close_matches(layer_type, sorted(known), n=1, cutoff=cutoff)
    return [] if close and close[0].lower() in layer_type.lower() else close


def check_net_structure(param, phase, where, types=True):
    """What Caffe's ``Net::Init`` aborts on: unknown layer types, bottoms no earlier layer makes,
    a top made by two layers (other than in place).

    ``types=False`` leaves unknown layer types to the caller (``check``'s
    ``layer-type`` rule names each with migrate's translation).

    Nets in the old V1 format, and nets that pick layers by stage or level
    (which depend on the solver's net states), are left to Caffe.
    """
    import caffe
    if len(param.layers) or _uses_state_rules(param):
        return
    known = set(caffe.layer_type_list())
    blobs = set(param.input)
    for layer in param.layer:
        if not in_phase(layer, phase):
            continue
        name = layer.name or (layer.top[0] if len(layer.top) else "")
        if types and layer.type not in known:
            close = typo_of(layer.type, known, cutoff=0.6)
            raise PreflightError(f"{where}: layer '{name}' has type '{layer.type}', which this Caffe does "
                                 f"not have" + (f". Did you mean '{close[0]}'?" if close else ""))
        for j, bottom in enumerate(layer.bottom):
            if bottom not in blobs:
                raise PreflightError(f"{where}: layer '{name}' reads bottom '{bottom}', which no layer "
                                     f"before it makes in the {_PHASES[phase]} net (Caffe would abort)")
        for j, top in enumerate(layer.top):
            in_place = j < len(layer.bottom) and layer.bottom[j] == top
            if top in blobs and not in_place:
                raise PreflightError(f"{where}: layer '{name}' makes top '{top}', which an earlier layer "
                                     f"of the {_PHASES[phase]} net already makes (Caffe would abort); only "
                                     f"in-place layers (bottom and top at the same index) may reuse a name")
            blobs.add(top)


def _blob_shape(blob_proto):
    if blob_proto.HasField("shape"):
        return tuple(blob_proto.shape.dim), False
    return (blob_proto.num, blob_proto.channels, blob_proto.height, blob_proto.width), True


def _legacy(shape):
    # Caffe's Blob::LegacyShape: axes beyond the blob's are 1.
    return tuple(shape[i] if i < len(shape) else 1 for i in range(4))


def _parse(message, data):
    """``message`` parsed from ``data``, or None when the bytes are not that message."""
    try:
        message.ParseFromString(data)
    except Exception:  # protobuf's DecodeError (the class moved between versions)
        return None
    return message


def _what_else(data):
    """Names what a file that holds no weights is, for messages (or None)."""
    from caffe.proto import caffe_pb2
    state = _parse(caffe_pb2.SolverState(), data)
    if state is not None and (state.HasField("iter") or state.learned_net or len(state.history)):
        return "a solver state (.solverstate), not weights: resume from it with --snapshot"
    blob = _parse(caffe_pb2.BlobProto(), data)
    if blob is not None and (blob.HasField("shape") or len(blob.data) or blob.num):
        return "a single blob (.binaryproto: a mean image or an H matrix?), not a net's weights"
    return None


def _file_bytes(path, option):
    """The bytes of the file an ``option`` names; a missing file or a folder is an error."""
    if not os.path.exists(path):
        raise PreflightError(f"{option}: file not found: {path}")
    if not os.path.isfile(path):
        raise PreflightError(f"{option} {path}: not a file")
    return read_bytes(path, f"{option} {path}")


def _weights_file(path, option):
    """Reads a .caffemodel, refusing what Caffe would abort on or load as nothing."""
    from caffe.proto import caffe_pb2
    data = _file_bytes(path, option)
    if not data:
        raise PreflightError(f"{option} {path}: the file is empty")
    source = _parse(caffe_pb2.NetParameter(), data)
    layers = [] if source is None else list(source.layer) or list(source.layers)
    if not any(len(layer.blobs) for layer in layers):
        other = _what_else(data)
        if other:
            raise PreflightError(f"{option} {path}: is {other}")
        if any(data[at:at + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for at in (0, 512, 1024, 2048)):
            raise PreflightError(f"{option} {path}: is an HDF5 file: Caffe reads HDF5 weights only from "
                                 f"a name ending in .h5")
        raise PreflightError(f"{option} {path}: not a binary .caffemodel (" +
                             ("Caffe could not parse it and would abort)" if source is None else
                              "no layer with learned blobs in it)"))
    return layers


def net_shapes(net):
    """``{layer name: [(blob shape, owned), ...]}`` of a built pycaffe net.

    ``owned`` is False for a blob shared with an earlier layer (``param {
    name }``): Caffe copies such a blob through its owner.
    """
    shapes, seen = {}, set()
    for name, layer in zip(net._layer_names, net.layers):
        blobs = []
        for i in range(len(layer.blobs)):
            data = layer.blobs[i].data
            key = data.__array_interface__["data"][0]
            blobs.append((tuple(int(d) for d in data.shape), key not in seen))
            seen.add(key)
        shapes[name] = blobs
    return shapes


def _h5_file(path, option):
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise PreflightError(f"{option} {path}: named .h5 but not a readable HDF5 file ({err}); "
                             f"Caffe would abort on it") from None


def _h5_model(path, option):
    """The layers of a ``.caffemodel.h5`` (Caffe's ``Net::ToHDF5``): ``[(name, {"0": shape, ...})]``."""
    with _h5_file(path, option) as f:
        data = f.get("data")
        if not isinstance(data, h5py.Group):
            what = ("a solver state (.solverstate.h5), not weights: resume from it with --snapshot"
                    if "history" in f else "an HDF5 file without Caffe's 'data' group, not a "
                    ".caffemodel.h5 (Caffe would abort on it)")
            raise PreflightError(f"{option} {path}: is {what}")
        layers = []
        for name, group in data.items():
            if not isinstance(group, h5py.Group):
                raise PreflightError(f"{option} {path}: 'data/{name}' is not a group of blobs: not a "
                                     f".caffemodel.h5 (Caffe would abort on it)")
            layers.append((name, {k: tuple(int(d) for d in v.shape) for k, v in group.items()
                                  if isinstance(v, h5py.Dataset)}))
    return layers


def model_layer_names(path, option):
    """Names of the layers with stored blobs in a weights file (.caffemodel or .caffemodel.h5)."""
    if path.endswith(".h5"):
        return [name for name, blobs in _h5_model(path, option) if blobs]
    return [layer.name for layer in _weights_file(path, option) if len(layer.blobs)]


def weights_layers(path, option):
    """The stored layers of a binary ``.caffemodel`` (refusing what holds no weights; see :func:`check_weights`)."""
    return _weights_file(path, option)


def _check_layers(layers, shapes, path, option):
    """Caffe's ``CopyTrainedLayersFrom`` checks of stored ``layers`` against ``shapes``; returns how many match."""
    matched = 0
    for layer in layers:
        if layer.name not in shapes:
            continue   # Caffe skips layers the net does not have
        ours = [shape for shape, _ in shapes[layer.name]]
        if len(layer.blobs) != len(ours):
            raise PreflightError(f"{option}: layer '{layer.name}' has {len(layer.blobs)} blob(s) in "
                                 f"{path} but {len(ours)} in the model (bias_term differs?)")
        for i, blob in enumerate(layer.blobs):
            theirs, legacy = _blob_shape(blob)
            if (_legacy(ours[i]) != theirs) if legacy else (ours[i] != theirs):
                raise PreflightError(f"{option}: layer '{layer.name}' blob {i} has shape {theirs} in "
                                     f"{path} but {ours[i]} in the model")
        matched += bool(ours)
    return matched


def _nothing_copied(names, path, option):
    shown = ", ".join(f"'{n}'" for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return PreflightError(f"{option} {path}: none of its layers with weights ({shown}) is a layer "
                          f"of this net with weights, so Caffe would copy nothing: another net's "
                          f"weights?")


def check_model(layers, shapes, path, option):
    """Refuses stored ``layers`` (``NetParameter`` layers) that do not fit ``shapes`` (:func:`net_shapes`)
    or of which nothing would be copied."""
    if not _check_layers(layers, shapes, path, option):
        raise _nothing_copied([layer.name for layer in layers if len(layer.blobs)], path, option)


def check_weights(path, net, option="weights", *, require_match=False):
    """Caffe aborts when a .caffemodel does not fit the net: compare blob shapes first.

    Also refuses a file that is not a ``.caffemodel`` (a solver state, a
    single blob, an empty or unparsable file).  With ``require_match``, a
    file none of whose weighted layers is in ``net`` (another net's weights,
    which Caffe would silently skip) is refused too.  ``net`` is a built
    pycaffe net, or its :func:`net_shapes`.  A name ending in ``.h5`` is
    read as Caffe's HDF5 weights (``.caffemodel.h5``), with Caffe's rules
    for them (shapes equal axis by axis; fewer stored blobs only where the
    net shares them).
    """
    shapes = net if isinstance(net, dict) else net_shapes(net)
    matched = 0
    if path.endswith(".h5"):
        if not _file_bytes(path, option).startswith(HDF5_SIGNATURE):
            raise PreflightError(f"{option} {path}: named .h5 but not an HDF5 file")
        stored = _h5_model(path, option)
        for name, blobs in stored:
            if name not in shapes:
                continue   # Caffe skips layers the net does not have
            ours = shapes[name]
            if len(blobs) > len(ours):
                raise PreflightError(f"{option}: layer '{name}' has {len(blobs)} blob(s) in {path} but "
                                     f"{len(ours)} in the model (bias_term differs?)")
            for j, (shape, owned) in enumerate(ours):
                if str(j) not in blobs:
                    if owned:
                        raise PreflightError(f"{option}: layer '{name}' has no blob {j} in {path}; the "
                                             f"model's is {shape} (bias_term differs?)")
                    continue
                if blobs[str(j)] != shape:
                    raise PreflightError(f"{option}: layer '{name}' blob {j} has shape {blobs[str(j)]} "
                                         f"in {path} but {shape} in the model")
            matched += bool(ours and blobs)
        names = [name for name, blobs in stored if blobs]
    else:
        layers = _weights_file(path, option)
        matched = _check_layers(layers, shapes, path, option)
        names = [layer.name for layer in layers if len(layer.blobs)]
    if require_match and not matched:
        raise _nothing_copied(names, path, option)


def unmatched_layers(path, net, option):
    """The net's layers that own learnable blobs and get none from the weights file ``path``."""
    stored = set(model_layer_names(path, option))
    shapes = net if isinstance(net, dict) else net_shapes(net)
    return [name for name, blobs in shapes.items()
            if any(owned for _, owned in blobs) and name not in stored]


def snapshot_prefix(param, solver_path):
    """The prefix Caffe snapshots to (``UpgradeSnapshotPrefixProperty``).

    No ``snapshot_prefix``: the solver file's path without its extension
    (``caffe train -solver models/solver.prototxt`` writes
    ``models/solver_iter_N.caffemodel``). A prefix naming an existing folder:
    that folder plus the solver file's stem.
    """
    stem = os.path.splitext(solver_path)[0]
    if not param.HasField("snapshot_prefix"):
        return stem
    if os.path.isdir(param.snapshot_prefix):
        return os.path.join(param.snapshot_prefix, os.path.basename(stem))
    return param.snapshot_prefix


def check_snapshot_prefix(prefix):
    """Caffe writes ``PREFIX_iter_N.caffemodel``: its folder must exist and take new files.

    Caffe checks this only when ``snapshot`` is set, and otherwise aborts at
    the first snapshot after training for hours.  The check writes and
    removes a probe file, as Caffe does (permissions alone do not tell:
    root, read-only mounts).
    """
    folder = os.path.dirname(prefix) or "."
    where = f"snapshot_prefix '{prefix}': folder '{folder}'"
    if not os.path.exists(folder):
        raise PreflightError(f"{where} does not exist (relative to {os.getcwd()}): create it, or "
                             f"change snapshot_prefix in the solver")
    if not os.path.isdir(folder):
        raise PreflightError(f"{where} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=os.path.basename(prefix) + "_probe", dir=folder)
    except OSError as err:
        raise PreflightError(f"{where} is not writable ({err.strerror}): Caffe could not save "
                             f"snapshots there") from None
    os.close(fd)
    os.remove(probe)


def check_solver(param, path):
    """The checks Caffe's ``Solver::Init`` makes with ``CHECK`` (an abort): nets and test_iter."""
    where = f"solver {path}"
    train_nets = [f for f in ("net", "net_param", "train_net", "train_net_param") if param.HasField(f)]
    if len(train_nets) != 1:
        raise PreflightError(f"{where}: needs exactly one of net, net_param, train_net, train_net_param; "
                             f"got {len(train_nets)}" + (f" ({', '.join(train_nets)})" if train_nets else ""))
    if param.HasField("net") and param.HasField("net_param"):
        raise PreflightError(f"{where}: give net or net_param, not both")
    explicit = len(param.test_net) + len(param.test_net_param)
    generic = param.HasField("net") or param.HasField("net_param")
    if (len(param.test_iter) < explicit) if generic else (len(param.test_iter) != explicit):
        raise PreflightError(f"{where}: test_iter must be given once for each test net: "
                             f"{len(param.test_iter)} test_iter for {explicit} test_net(s)")
    if len(param.test_state) and len(param.test_state) != len(param.test_iter):
        raise PreflightError(f"{where}: test_state must be given once per test net or not at all")
    if len(param.test_iter) and param.test_interval <= 0:
        raise PreflightError(f"{where}: has test nets (test_iter) but no test_interval > 0")
    if param.average_loss < 1:
        raise PreflightError(f"{where}: average_loss must be >= 1, got {param.average_loss}")


# BVLC's solver types (SolverRegistry) and learning-rate policies (SGDSolver::GetLearningRate,
# with the fields each reads). A name outside these is asked of this Caffe itself
# (:func:`_caffe_refuses`): a fork may register more.
SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
LR_POLICIES = {
    "fixed": ("base_lr", ()),
    "step": ("base_lr * gamma ^ floor(iter / stepsize)", ("gamma", "stepsize")),
    "exp": ("base_lr * gamma ^ iter", ("gamma",)),
    "inv": ("base_lr * (1 + gamma * iter) ^ -power", ("gamma", "power")),
    "multistep": ("base_lr * gamma ^ (stepvalues passed)", ("gamma", "stepvalue")),
    "poly": ("base_lr * (1 - iter / max_iter) ^ power", ("power", "max_iter")),
    "sigmoid": ("base_lr / (1 + exp(-gamma * (iter - stepsize)))", ("gamma", "stepsize")),
}
_PROBED = {}


def _caffe_refuses(field, value):
    """Caffe's own fatal message when it runs one iteration with ``field: value`` (None: it ran).

    Only asked for a name BVLC does not know (a fork's solver type or
    policy); Caffe aborts the process on a name it does not know, so a child
    process tries, on a one-layer net.
    """
    key = (field, value)
    if key not in _PROBED:
        code = ("import caffe, os, sys, tempfile\n"
                "from caffe.proto import caffe_pb2\n"
                "from google.protobuf import text_format\n"
                "caffe.set_mode_cpu()\n"
                "s = caffe_pb2.SolverParameter(base_lr=0.01, max_iter=1, lr_policy='fixed', gamma=0.5, power=1,\n"
                "    stepsize=1, snapshot_after_train=False)\n"
                "s.stepvalue.append(1)\n"
                "setattr(s, sys.argv[1], sys.argv[2])\n"
                "text_format.Merge('layer { name: \"d\" type: \"DummyData\" top: \"x\" dummy_data_param { shape { dim: 2 dim: 3 } "
                "data_filler { type: \"constant\" value: 1 } } } layer { name: \"fc\" type: \"InnerProduct\" bottom: \"x\" "
                "top: \"y\" inner_product_param { num_output: 1 } } layer { name: \"l\" type: \"Reduction\" bottom: \"y\" "
                "top: \"l\" loss_weight: 1 }', s.net_param)\n"
                "d = tempfile.mkdtemp()\n"
                "p = os.path.join(d, 's.prototxt')\n"
                "open(p, 'w').write(text_format.MessageToString(s))\n"
                "caffe.get_solver(p).step(1)\n")
        env = dict(os.environ, GLOG_minloglevel="2")
        try:
            proc = subprocess.run([sys.executable, "-c", code, field, value], env=env, capture_output=True,
                                  text=True, timeout=120)
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
            fatal = [ln.split("] ", 1)[-1] for ln in lines if ln.startswith("F")]
            _PROBED[key] = None if proc.returncode == 0 else (fatal or lines or [f"exit {proc.returncode}"])[0]
        except subprocess.TimeoutExpired:
            _PROBED[key] = "asking Caffe timed out"
    return _PROBED[key]


def _close(name, names):
    lower = {n.lower(): n for n in names}
    if name.lower() in lower:
        return lower[name.lower()]
    close = difflib.get_close_matches(name, list(names), n=1)
    return close[0] if close else None


def solver_problems(param):
    """What Caffe would abort on in a solver's learning settings, and what it would silently ignore.

    Caffe aborts (``LOG(FATAL)``/``CHECK``, no message to Python) on an
    unknown ``type`` (case matters: ``sgd`` is not ``SGD``) or ``lr_policy``
    (``Step``, or none at all), on ``stepsize`` not > 0 for ``step`` and
    ``sigmoid``, on a negative ``gamma``, on ``momentum`` with AdaGrad or
    RMSProp, on ``rms_decay`` outside [0, 1), on an unknown
    ``regularization_type`` with weight decay, and on ``solver_type`` and
    ``type`` given together.

    Returns:
      ``(errors, warnings)``: lists of one-line messages, each naming the
      field, its value and the valid values.
    """
    errors, warnings = [], []
    kind = param.type
    if param.HasField("solver_type") and param.HasField("type"):
        errors.append("give type or the old solver_type, not both (Caffe would abort)")
    elif kind not in SOLVER_TYPES and not param.HasField("solver_type"):
        why = _caffe_refuses("type", kind)
        if why is not None:
            close = _close(kind, SOLVER_TYPES)
            errors.append(f"type: \"{kind}\" is not a solver type of this Caffe (it would abort: {why}); "
                          f"valid: {', '.join(SOLVER_TYPES)}" + (f". Did you mean \"{close}\"?" if close else ""))
    policy = param.lr_policy
    valid = ", ".join(f'"{p}"' for p in LR_POLICIES)
    if policy not in LR_POLICIES:
        why = _caffe_refuses("lr_policy", policy)
        if why is not None:
            close = _close(policy, LR_POLICIES) if policy else None
            what = f"lr_policy: \"{policy}\" is not a learning rate policy" if policy else "lr_policy is not set"
            errors.append(f"{what} (Caffe would abort at the first iteration: {why}); valid: {valid}"
                          + (f". Did you mean \"{close}\"?" if close else ""))
    else:
        formula, fields = LR_POLICIES[policy]
        where = f"lr_policy \"{policy}\" ({formula})"
        if "stepsize" in fields and param.stepsize <= 0:
            errors.append(f"{where} needs stepsize > 0, " +
                          ("and stepsize is not set" if not param.HasField("stepsize") else
                           f"got stepsize: {param.stepsize}") + " (Caffe would abort at the first iteration)")
        if "gamma" in fields and param.gamma < 0:
            errors.append(f"{where} needs gamma >= 0, got gamma: {param.gamma:g} (Caffe would abort at the "
                          f"first iteration)")
        unset = [f for f in fields if f != "max_iter" and not (param.stepvalue if f == "stepvalue"
                                                                 else param.HasField(f))]
        for f in unset:
            if f == "stepsize":
                continue        # an error above
            effect = {"gamma": "0", "power": "0", "stepvalue": "none"}[f]
            warnings.append(f"{where}: {f} is not set ({effect}), so the learning rate "
                            + ("drops to 0 at the first step" if f == "gamma" and policy in ("step", "multistep", "exp")
                               else "never changes"))
    for f in ("base_lr", "momentum", "momentum2", "weight_decay", "gamma", "power", "delta", "rms_decay",
              "clip_gradients"):
        value = getattr(param, f)
        if param.HasField(f) and not math.isfinite(value):
            warnings.append(f"{f}: {value} is not a finite number: Caffe trains with it, and the weights "
                            f"become NaN or inf at the first update (the first error then names a blob, "
                            f"not this field)")
    if kind == "AdaGrad" or kind == "RMSProp":
        if param.momentum != 0:
            errors.append(f"type \"{kind}\" takes no momentum (Caffe would abort): remove momentum: "
                          f"{param.momentum:g}")
    if kind == "RMSProp" and not 0 <= param.rms_decay < 1:
        errors.append(f"type \"RMSProp\" needs 0 <= rms_decay < 1, got rms_decay: {param.rms_decay:g} "
                      f"(Caffe would abort)")
    if param.weight_decay != 0 and param.regularization_type not in ("L1", "L2"):
        errors.append(f"regularization_type: \"{param.regularization_type}\" is not one of \"L1\", \"L2\" "
                      f"(Caffe would abort at the first iteration with weight_decay {param.weight_decay:g})")
    return errors, warnings


def solver_preflight(param, path, *, weights_field=True):
    """Every check ``caffe-losses train`` makes on a solver before building its nets.

    Shared by ``train`` (which stops at the first) and ``check`` (which
    lists them all): the solver's structure (:func:`check_solver`), its
    learning settings (:func:`solver_problems`' errors), ``snapshot_prefix``
    (its folder exists and takes files), and the files of its ``weights``
    field (``weights_field=False``: train, whose ``--weights`` replaces it,
    checks those itself).

    Returns:
      a list of :class:`PreflightError`, empty when the solver passes.
    """
    problems = []
    try:
        check_solver(param, path)
    except PreflightError as err:
        problems.append(err)
    errors, _ = solver_problems(param)
    problems += [PreflightError(f"solver {path}: {e}") for e in errors]
    prefix = snapshot_prefix(param, path)
    try:
        if os.path.isdir(prefix):
            raise PreflightError(f"snapshot_prefix '{prefix}' (from {path}) names a folder: set "
                                 f"snapshot_prefix in the solver to the snapshots' path and name prefix")
        check_snapshot_prefix(prefix)
        _check_snapshot_names(prefix, param)
    except PreflightError as err:
        problems.append(err)
    if weights_field:
        for entry in param.weights:
            for name in (n.strip() for n in entry.split(",")):
                if name and not os.path.isfile(name):
                    problems.append(PreflightError(f"solver weights: weights file not found: {name} (from "
                                                   f"{path}, relative to {os.getcwd()})"))
                elif name and not name.endswith(".h5"):
                    try:        # a .caffemodel at all (train also matches it to the net, once built)
                        _weights_file(name, "solver weights")
                    except PreflightError as err:
                        problems.append(err)
    return problems


def _check_snapshot_names(prefix, param):
    """A snapshot name of the solver's schedule (every ``snapshot`` iterations, and ``max_iter``) that
    is taken by something other than a regular file (a FIFO, a device, a symbolic link, a folder):
    the snapshot would replace it, so it is refused before training."""
    folder = os.path.dirname(prefix) or "."
    pattern = re.compile(re.escape(os.path.basename(prefix)) + r"_iter_(\d+)\.(caffemodel|solverstate)(\.h5)?")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in sorted(names):
        found = pattern.fullmatch(name)
        if not found:
            continue
        it = int(found.group(1))
        if not ((param.snapshot > 0 and it % param.snapshot == 0 and it <= param.max_iter)
                or it == param.max_iter):
            continue
        path = os.path.join(folder, name) if os.path.dirname(prefix) else name
        problem = not_a_file(path)
        if problem:
            raise PreflightError(f"snapshot_prefix '{prefix}': the snapshot of iteration {it} would be written "
                                 f"as {path}, which {problem}: move it away, or change snapshot_prefix (a "
                                 f"snapshot never replaces anything but a regular file)")


# history blobs per learnable parameter, by solver type (Caffe's *Solver constructors)
_HISTORY_PER_PARAM = {"SGD": 1, "Nesterov": 1, "AdaGrad": 1, "RMSProp": 1, "AdaDelta": 2, "Adam": 2}


def _h5_state(path, option):
    """``(iter, learned_net, [history shapes])`` of a ``.solverstate.h5`` (Caffe's SnapshotSolverStateToHDF5)."""
    with _h5_file(path, option) as f:
        history = f.get("history")
        if not isinstance(history, h5py.Group) or "iter" not in f:
            if "data" in f:
                raise PreflightError(f"{option} {path}: is a .caffemodel.h5 (weights), not a solver "
                                     f"state: fine-tune from it with --weights")
            raise PreflightError(f"{option} {path}: not a .solverstate.h5 (no 'iter' and 'history' in "
                                 f"it; Caffe would abort on it)")
        shapes = []
        for i in range(len(history)):
            blob = history.get(str(i))
            if not isinstance(blob, h5py.Dataset):
                raise PreflightError(f"{option} {path}: history blob {i} is missing: not a "
                                     f".solverstate.h5 Caffe can read")
            shapes.append(tuple(int(d) for d in blob.shape))
        learned = f["learned_net"][()] if "learned_net" in f else b""
        learned = learned.decode("utf-8", "replace") if isinstance(learned, bytes) else str(learned)
        iteration = int(np.asarray(f["iter"]).ravel()[0]) if np.asarray(f["iter"]).size else 0
    return iteration, learned, shapes


def check_solverstate(path, net, solver_type="SGD", option="--snapshot"):
    """Caffe aborts on a state that is not a ``.solverstate`` of this net and solver type.

    Also refused: a state whose weights file leaves a learnable layer of the
    net with nothing (layers renamed since the snapshot): Caffe would resume
    at the state's iteration with those layers as initialised.  A name
    ending in ``.h5`` is read as Caffe's HDF5 state (``.solverstate.h5``).
    """
    from caffe.proto import caffe_pb2
    data = _file_bytes(path, option)
    if path.endswith(".h5"):
        if not data.startswith(HDF5_SIGNATURE):
            raise PreflightError(f"{option} {path}: named .h5 but not an HDF5 file")
        iteration, learned_net, history = _h5_state(path, option)
        history = [(shape, False) for shape in history]         # HDF5: shapes compared exactly
    else:
        state = _parse(caffe_pb2.SolverState(), data)
        if state is None or not (state.HasField("iter") or state.learned_net or len(state.history)):
            net_param = _parse(caffe_pb2.NetParameter(), data)
            if net_param is not None and any(len(layer.blobs) for layer in list(net_param.layer) + list(net_param.layers)):
                raise PreflightError(f"{option} {path}: is a .caffemodel (weights), not a solver state: "
                                     f"fine-tune from it with --weights")
            raise PreflightError(f"{option} {path}: not a .solverstate (" +
                                 ("the file is empty)" if not data else
                                  "Caffe could not parse it and would abort)" if state is None else
                                  "no iteration, weights or history in it)"))
        iteration, learned_net = state.iter, state.learned_net
        history = [_blob_shape(blob) for blob in state.history]
    shapes = net if isinstance(net, dict) else net_shapes(net)
    if learned_net:
        if not os.path.isfile(learned_net):
            raise PreflightError(f"{option} {path}: its weights file '{learned_net}' does not exist "
                                 f"(relative to {os.getcwd()}; Caffe reads it from the folder training "
                                 f"ran in): keep the .caffemodel beside the .solverstate and run from there")
        check_weights(learned_net, shapes, option=f"{option} {path}: its weights")
        missing = unmatched_layers(learned_net, shapes, f"{option} {path}: its weights")
        if missing:
            shown = ", ".join(f"'{n}'" for n in missing[:8]) + (", ..." if len(missing) > 8 else "")
            raise PreflightError(f"{option} {path}: the net's learnable layer(s) {shown} get nothing from "
                                 f"it: its weights file '{learned_net}' has no layer of that name "
                                 f"(renamed since the snapshot?). Caffe would resume at iteration "
                                 f"{iteration} with them untrained. Give them their old names, or "
                                 f"start from the weights with --weights instead")
    # the learnable parameters in Caffe's order, a shared one once (its owner's)
    ours_all = [shape for blobs in shapes.values() for shape, owned in blobs if owned]
    per = _HISTORY_PER_PARAM.get(solver_type, 1)
    if len(history) != per * len(ours_all):
        raise PreflightError(f"{option} {path}: holds {len(history)} history blob(s) but this net's "
                             f"solver (type {solver_type}) keeps {per * len(ours_all)} "
                             f"({len(ours_all)} learnable blob(s)): a state of another net or solver type")
    for i, (theirs, legacy) in enumerate(history):
        ours = ours_all[i % len(ours_all)]
        if (_legacy(ours) != theirs) if legacy else (ours != theirs):
            raise PreflightError(f"{option} {path}: history blob {i} has shape {theirs} but the "
                                 f"net's learnable blob {i % len(ours_all)} has {ours}: a state of another net")
