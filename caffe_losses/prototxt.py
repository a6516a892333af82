"""Reading prototxt files, and running code from a template's folder.

Caffe resolves the relative paths inside a prototxt (data sources, H files,
the solver's ``net:``) against the working directory, so tools that run a
template change into its folder with :func:`working_directory`.
"""

import contextlib
import os

__all__ = ["read_net_param", "read_solver_param", "working_directory"]


def _read(path, message, what):
    from google.protobuf import text_format
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    with open(path) as f:
        text = f.read()
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as err:
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


@contextlib.contextmanager
def working_directory(folder):
    """Runs the block with ``folder`` as the working directory, then goes back."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(old)
