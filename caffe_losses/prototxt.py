"""Reading prototxt files, and running code from a template's folder.

Caffe resolves the relative paths inside a prototxt (data sources, H files,
the solver's ``net:``) against the working directory, so tools that run a
template change into its folder with :func:`working_directory`.
"""

import contextlib
import os

__all__ = ["read_text", "parse_text", "read_net_param", "read_solver_param", "read_prototxt", "read_nets", "solver_nets", "python_modules",
           "working_directory"]


def read_text(path, what="net"):
    """A prototxt file's text, as Caffe reads the file: bytes, UTF-8 where they are.

    A byte that is not UTF-8 (a Latin-1 comment) is kept as a surrogate
    escape (:func:`caffe_losses.textproto.decode`): Caffe's parser takes any
    byte in a comment or a string, so such a file is text, not "a binary file".
    """
    from caffe_losses.textproto import decode
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
    Caffe's C++ one respelt (:func:`caffe_losses.textproto.caffe_spelling`)
    and the escapes Caffe refuses refused; ``Parse``, not ``Merge``: Caffe
    refuses a non-repeated field given twice.

    Raises:
      google.protobuf.text_format.ParseError, or
      :class:`caffe_losses.textproto.TextProtoError` (a ValueError) for an
      escape Caffe refuses.
    """
    from google.protobuf import text_format

    from caffe_losses.textproto import TextProtoError, caffe_spelling, for_protobuf
    try:
        spelt = caffe_spelling(text, message.DESCRIPTOR)
    except TextProtoError as err:
        if "escape" in str(err):
            raise
        spelt = text         # protobuf says what is wrong
    return text_format.Parse(for_protobuf(spelt), message)


def _read(path, message, what):
    from google.protobuf import text_format

    from caffe_losses.textproto import TextProtoError
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
        from caffe_losses.migrate import fork_fields_hint
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
