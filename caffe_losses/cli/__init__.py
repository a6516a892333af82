"""The ``caffe-losses`` command: one entry point for the package's tools.

Each subcommand lives in ``caffe_losses/cli/<module>.py`` with
``add_arguments(parser)`` and ``run(args) -> exit status``; ``tools/*.py`` in
the repository are thin scripts over the same functions.
"""

import argparse
import importlib
import importlib.util
import os
import re
import sys

from caffe_losses.nets.prototxt import python_modules

# subcommand -> module under caffe_losses.cli
SUBCOMMANDS = {
    "train": "train",
    "demo": "demo",
    "template": "template",
    "make-h": "make_infogain_h",
    "make-pos-weight": "make_pos_weight",
    "net-surgery": "net_surgery",
    "plot-features": "plot_features",
    "check": "check",
    "gradcheck": "gradcheck",
    "migrate": "migrate",
}

# subcommand -> (a module it needs beyond the base install, the extra that brings it)
EXTRAS = {
    "demo": ("matplotlib", "demo"),
    "plot-features": ("matplotlib", "demo"),
}


def plain(text):
    """Help text without reStructuredText's literal markup: ``caffe-losses`` -> caffe-losses."""
    return re.sub(r"``([^`]+)``", r"\1", text or "")


def build_parser():
    parser = argparse.ArgumentParser(prog="caffe-losses", description=plain(__doc__.splitlines()[0]))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"caffe_losses.cli.{module_name}")
        doc = plain((module.__doc__ or name).strip().splitlines()[0])
        p = sub.add_parser(name, help=doc, description=plain(module.__doc__),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def _prototxts(args):
    """The net/solver prototxts a command builds nets from (whose Python layers it imports)."""
    if args.command == "train":      # positional, or -solver / --solver
        return [p for p in (args.solver, getattr(args, "solver_flag", None)) if p]
    if args.command == "net-surgery":
        return [args.model]
    if args.command == "plot-features":
        return [prototxt for prototxt, _ in args.model]
    return []


def needs_user_modules(args):
    """Whether the command imports a Python module of the user's (not this package's).

    gradcheck imports ``--module``; train, net-surgery and plot-features build
    nets whose Python layers Caffe imports.  Every other command runs only
    this package's code.
    """
    if args.command == "gradcheck":
        return args.module.split(".")[0] != "caffe_losses"
    return any(m.split(".")[0] != "caffe_losses" for p in _prototxts(args) for m in python_modules(p))


def allow_user_modules(args):
    """Puts the current folder on ``sys.path`` for a command that imports the user's modules.

    The current folder is not trusted code: a ./h5py.py or ./caffe.py there
    must not run.  Only a command that imports the user's own layer module
    looks there (like the `caffe` wrapper and `python -m`), and after the
    installed packages, so that it can never shadow one.
    """
    if needs_user_modules(args) and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


# where the README tells how to make pycaffe importable
PYCAFFE_HELP = "README.md, section 'Into the Caffe you already have'"


def _in_pycaffe(err):
    """Whether an ImportError came from ``import caffe``: pycaffe itself, or one of pycaffe's imports."""
    if (getattr(err, "name", None) or "").split(".")[0] == "caffe":
        return True
    tb = err.__traceback__
    while tb is not None:
        parts = os.path.normpath(tb.tb_frame.f_code.co_filename).split(os.sep)
        if len(parts) >= 2 and parts[-2] == "caffe" and parts[-1].endswith(".py"):
            return True          # raised inside caffe/__init__.py, pycaffe.py, io.py...
        tb = tb.tb_next
    return False


def missing_pycaffe(err):
    """The one line for an ImportError of pycaffe (None when ``err`` is not one)."""
    if not isinstance(err, ImportError) or not _in_pycaffe(err):
        return None
    name = getattr(err, "name", None) or ""
    if name.split(".")[0] == "caffe" or not name:
        what = f"pycaffe (Caffe's Python module): `import caffe` failed ({err})"
    else:
        what = (f"pycaffe, whose own import of '{name}' failed ({err}): install pycaffe's "
                f"requirements in this Python")
    return f"needs {what}. See {PYCAFFE_HELP}"


def _quiet_broken_pipe():
    """A reader that stopped early (``| head``): no traceback, as Python's docs advise."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class _StdoutFailed(OSError):
    """Writing the standard output failed (a full disk or ``/dev/full`` behind ``>``, an I/O error)."""


class _CheckedStdout:
    """``sys.stdout`` as it was, with its write errors told apart from those of the tool's files."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise _StdoutFailed(err.errno, err.strerror or str(err)) from None

    def flush(self):
        try:
            return self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as err:
            raise _StdoutFailed(err.errno, err.strerror or str(err)) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def run_command(command, run, args):
    """Runs a tool's ``run(args)``, turning what no tool can report itself into one line.

    Out of memory, pycaffe not importable (``pip install .`` before pycaffe
    is set up), and a closed output pipe (``caffe-losses template --list |
    head -1``).
    """
    stdout = sys.stdout
    if stdout is not None and not isinstance(stdout, _CheckedStdout):
        sys.stdout = _CheckedStdout(stdout)
    try:
        status = run(args) or 0
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 1
    except _StdoutFailed as err:
        # `caffe-losses template --list > /dev/full`: one line, not a traceback
        _quiet_broken_pipe()
        print(f"caffe-losses {command}: cannot write the standard output: {err.strerror}", file=sys.stderr)
        return 1
    except MemoryError:
        # the tools check the big allocations they can foresee; this is the rest
        print(f"caffe-losses {command}: out of memory: the input is too large for the "
              f"memory available", file=sys.stderr)
        return 2
    except ImportError as err:
        return _report_missing_pycaffe(command, err)
    finally:
        if isinstance(sys.stdout, _CheckedStdout):
            sys.stdout = stdout


def _report_missing_pycaffe(command, err):
    """Prints the one line for pycaffe missing and returns 2; re-raises any other ImportError."""
    line = missing_pycaffe(err)
    if line is None:
        raise err
    print(f"caffe-losses {command}: {line}", file=sys.stderr)
    return 2


def main(argv=None):
    # Caffe's INFO log is very long; `--caffe-log` (train) or an explicit
    # GLOG_minloglevel brings it back.
    os.environ.setdefault("GLOG_minloglevel", "2")
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:      # named by the subcommand's own usage, not the top-level one
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    module, extra = EXTRAS.get(args.command, (None, None))
    if module and importlib.util.find_spec(module) is None:
        print(f"caffe-losses {args.command}: needs {module}, which the base install leaves out: "
              f"pip install 'caffe-losses[{extra}]'", file=sys.stderr)
        return 2
    try:
        allow_user_modules(args)
    except ImportError as err:
        return _report_missing_pycaffe(args.command, err)
    return run_command(args.command, args._run, args)

