"""Reading prototxt files, naming what is in them, and running code from a template's folder.

Caffe resolves the relative paths inside a prototxt (data sources, H files,
the solver's ``net:``) against the working directory, so tools that run a
template change into its folder with :func:`working_directory`.

How messages name a layer (:func:`layer_label`) and a field of a fork
(:func:`unknown_field_label`, :data:`FORK_FIELDS`, :func:`fork_fields_hint`)
lives here, below ``lint`` and ``migrate``, which both use it.

caffe (pycaffe) is imported inside the functions that need ``caffe_pb2``:
the CLI imports this module, and must run without pycaffe to say that it is
missing in one line.
"""

import contextlib
import os

from google.protobuf import text_format

from caffe_losses.nets import textproto
from caffe_losses.nets.textproto import TextProtoError, caffe_spelling, decode, for_protobuf

__all__ = ["read_text", "parse_text", "read_net_param", "read_solver_param", "read_prototxt", "read_nets", "solver_nets", "python_modules",
           "working_directory", "layer_label", "weighted_downstream", "FORK_FIELDS", "unknown_field_label",
           "fork_fields_hint"]

# fork-only LayerParameter fields -> where they come from: the families' fork_blocks,
# filled in by the registry (caffe_losses.losses), which every import of the package
# runs first; this module is below the families (their rules read nets with it)
FORK_FIELDS = {}


def layer_label(name, tops):
    """How messages name a layer: ``layer 'loss'``, or by its top when it has no name."""
    if name:
        return f"layer '{name}'"
    return f"unnamed layer (top '{tops[0]}')" if tops else "unnamed layer"


def weighted_downstream(layers, index):
    """Whether a later layer fed (directly or not) by layer ``index``'s tops has a loss weight.

    Caffe back-propagates into every layer below a loss (``Net::Init``'s
    ``blobs_under_loss``), so a loss layer without ``loss_weight`` whose top
    feeds a ``Power`` or ``Scale`` that carries one does train.

    Args:
      layers: a list of ``(bottoms, tops, loss_weights)`` in net order.
      index: the layer whose tops are followed.
    """
    reached = set(layers[index][1])
    for bottoms, tops, weights in layers[index + 1:]:
        if reached.intersection(bottoms):
            if any(float(w) != 0 for w in weights):
                return True
            reached.update(tops)
    return False


def unknown_field_label(path, field, top):
    """How messages name a field of :func:`textproto.unknown_fields`: ``(owner, dotted name)``.

    The owner is its layer with the layer's type (``layer 'loss' (CenterLoss)``),
    or ``top`` for a field outside the layers.
    """
    name = ".".join([p.name for p in path[1:]] + [field.name])
    if path and path[0].name in ("layer", "layers"):
        layer = path[0]
        kind = f" ({layer.get('type')})" if layer.get("type") else ""
        return layer_label(layer.get("name"), [t.value for t in layer.all("top")]) + kind, name
    return top, name


def fork_fields_hint(text, descriptor, path):
    """Why protobuf refused ``text``, when the reason is fields BVLC Caffe lacks.

    Returns:
      a message naming each unknown field, its layer and the fork it comes
      from, with the ``caffe-losses migrate`` command to run; None when the
      text has no unknown fields (or is not prototxt at all).
    """
    try:
        unknown = textproto.unknown_fields(textproto.parse(text), descriptor)
    except TextProtoError:
        return None
    if not unknown:
        return None
    parts = []
    for where, f in unknown:
        owner, name = unknown_field_label(where, f, "the top level")
        origin = FORK_FIELDS.get(f.name)
        parts.append(f"{owner}: '{name}' is not in BVLC Caffe's caffe.proto"
                     + (f" (it comes from {origin})" if origin else " (a fork's field?)"))
    if all(f.name not in FORK_FIELDS for _, f in unknown):    # nothing migrate translates: no loop
        return ("; ".join(parts) + ". The net needs the Caffe (a fork) that has "
                + ("this field" if len(unknown) == 1 else "these fields")
                + "; caffe-losses migrate does not translate it")
    stem = os.path.splitext(os.path.basename(path))[0]
    return ("; ".join(parts) + f". To carry the net over to caffe_losses' layers: caffe-losses migrate "
            f"{path} -o {stem}_migrated.prototxt")


def read_text(path, what="net"):
    """A prototxt file's text, as Caffe reads the file: bytes, UTF-8 where they are.

    A byte that is not UTF-8 (a Latin-1 comment) is kept as a surrogate
    escape (:func:`caffe_losses.nets.textproto.decode`): Caffe's parser takes any
    byte in a comment or a string, so such a file is text, not "a binary file".
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ValueError(f"{path}: cannot be read: {err.strerror or err}") from None
    return decode(data)


def parse_text(text, message):
    """Merges prototxt ``text`` (from :func:`read_text`) into ``message`` as Caffe's parser reads it.

    Protobuf's Python parser, with the values it reads otherwise than
    Caffe's C++ one respelt (:func:`caffe_losses.nets.textproto.caffe_spelling`)
    and the escapes Caffe refuses refused; ``Parse``, not ``Merge``: Caffe
    refuses a non-repeated field given twice.

    Raises:
      google.protobuf.text_format.ParseError, or
      :class:`caffe_losses.nets.textproto.TextProtoError` (a ValueError) for an
      escape Caffe refuses.
    """
    try:
        spelt = caffe_spelling(text, message.DESCRIPTOR)
    except TextProtoError as err:
        if "escape" in str(err):
            raise
        spelt = text         # protobuf says what is wrong
    return text_format.Parse(for_protobuf(spelt), message)


def _read(path, message, what):
    text = read_text(path, what)
    try:
        parse_text(text, message)
    except TextProtoError as err:
        raise ValueError(f"{path}: not a valid {what} prototxt ({err})") from None
    except text_format.ParseError as err:
        if "codec can't decode" in str(err):     # Caffe reads such a string; Python's protobuf cannot
            where = str(err).split(" : ", 1)[0]
            raise ValueError(f"{path}: a string at {where} is not UTF-8 text (a Latin-1 file name?): "
                             f"Caffe reads it as bytes, but Python's protobuf, which caffe-losses reads "
                             f"{what} files with, refuses it. Write it in UTF-8 (rename the file it "
                             f"names), or run Caffe's own tools on this file") from None
        if "\0" in text:
            raise ValueError(f"{path}: not a valid {what} prototxt (not text: a binary file?)") from None
        hint = fork_fields_hint(text, message.DESCRIPTOR, path)   # a fork's field? name it
        raise ValueError(f"{path}: not a valid {what} prototxt ({err})"
                         + (f". {hint}" if hint else "")) from None
    return message


def read_net_param(path):
    """Parses a net prototxt into a ``caffe_pb2.NetParameter``.

    Raises:
      FileNotFoundError ("net file not found: ..."), ValueError ("...: not a
      valid net prototxt (...)").
    """
    from caffe.proto import caffe_pb2
    return _read(path, caffe_pb2.NetParameter(), "net")


def read_solver_param(path):
    """Parses a solver prototxt into a ``caffe_pb2.SolverParameter`` (errors as above)."""
    from caffe.proto import caffe_pb2
    return _read(path, caffe_pb2.SolverParameter(), "solver")


def solver_nets(solver, path, reader=None):
    """The nets of the solver ``solver`` (read from ``path``), as Caffe's ``Solver::Init`` builds them.

    A solver's ``net``, ``train_net`` and ``test_net`` must be net prototxts
    (Caffe reads them as ``NetParameter``): one that is a solver prototxt
    (e.g. the solver itself, or a solver naming another solver) is an error,
    not a loop.

    Returns:
      list of ``(where, NetParameter, phase)``: the train net (``net``,
      ``net_param``, ``train_net`` or ``train_net_param``) in TRAIN, then the
      test nets in TEST: each ``test_net_param``, each ``test_net``, and the
      generic net (``net``/``net_param``, the same object) once for each
      ``test_iter`` beyond those.  ``where`` is the net's file, or
      ``"PATH (FIELD)"`` for a net written inside the solver.

    ``reader`` reads a net file (default :func:`read_net_param`).

    Raises:
      FileNotFoundError, ValueError naming the file.
    """
    from caffe.proto import caffe_pb2
    reader = reader or read_net_param

    def read(name):
        try:
            return reader(name)
        except ValueError as err:
            try:
                read_solver_param(name)
            except (ValueError, OSError):
                raise err from None
        what = "itself" if os.path.realpath(name) == os.path.realpath(path) else f"'{name}', a solver prototxt"
        raise ValueError(f"{path}: the solver's net is {what}; 'net' (or 'train_net', "
                         f"'test_net') must name a net prototxt such as train_val.prototxt") from None

    train = []
    for field, inline in (("net", "net_param"), ("train_net", "train_net_param")):
        if solver.HasField(field):
            train.append((getattr(solver, field), read(getattr(solver, field))))
        elif solver.HasField(inline):
            train.append((f"{path} ({inline})", getattr(solver, inline)))
    tests = [(f"{path} (test_net_param)", n) for n in solver.test_net_param]
    tests += [(name, read(name)) for name in solver.test_net]
    if train and (solver.HasField("net") or solver.HasField("net_param")):
        tests += [train[0]] * max(len(solver.test_iter) - len(tests), 0)
    return [(where, net, caffe_pb2.TRAIN) for where, net in train] + \
        [(where, net, caffe_pb2.TEST) for where, net in tests]


def read_prototxt(path, reader=None):
    """A net prototxt, or a solver prototxt and its nets: ``(SolverParameter or None, nets)``.

    ``nets`` is a list of ``(where, NetParameter)``: ``[(path, net)]`` for a
    net prototxt; for a solver, each of :func:`solver_nets` once.

    ``reader`` reads a net file (default :func:`read_net_param`).

    Raises:
      FileNotFoundError, ValueError naming the file.
    """
    reader = reader or read_net_param
    try:
        return None, [(path, reader(path))]
    except ValueError as net_err:
        try:
            solver = read_solver_param(path)
        except ValueError:
            raise net_err from None
    nets, seen = [], set()
    for where, net, _ in solver_nets(solver, path, reader):
        if id(net) not in seen:         # the generic net, once
            seen.add(id(net))
            nets.append((where, net))
    if not nets:
        raise ValueError(f"{path}: a solver prototxt with no 'net' or 'train_net'")
    return solver, nets


def read_nets(path):
    """The nets of a net prototxt, or of the solver prototxt ``path``: list of (path, NetParameter).

    See :func:`read_prototxt` (which also returns the solver).

    Raises:
      FileNotFoundError, ValueError naming the file.
    """
    return read_prototxt(path)[1]


def python_modules(path):
    """The ``python_param { module }`` names of the nets of a net or solver prototxt.

    Empty when the file cannot be read (the command reports that itself).
    """
    try:
        nets = read_nets(path)
    except (OSError, ValueError):
        return set()
    return {layer.python_param.module for _, net in nets for layer in net.layer
            if layer.type == "Python" and layer.python_param.module}


@contextlib.contextmanager
def working_directory(folder):
    """Runs the block with ``folder`` as the working directory, then goes back."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(old)
