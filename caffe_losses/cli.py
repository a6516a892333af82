"""The ``caffe-losses`` command: one entry point for the package's tools.

Each subcommand lives in ``caffe_losses/tools/<module>.py`` with
``add_arguments(parser)`` and ``run(args) -> exit status``; ``tools/*.py`` in
the repository are thin scripts over the same functions.
"""

import argparse
import importlib
import importlib.util
import os
import sys

# subcommand -> module under caffe_losses.tools
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


def build_parser():
    parser = argparse.ArgumentParser(prog="caffe-losses", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(f"caffe_losses.tools.{module_name}")
        except ModuleNotFoundError as err:
            if err.name != f"caffe_losses.tools.{module_name}":
                raise
            continue  # tool not written yet
        doc = (module.__doc__ or name).strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
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
    from caffe_losses.prototxt import python_modules
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


def main(argv=None):
    # Caffe's INFO log is very long; `--caffe-log` (train) or an explicit
    # GLOG_minloglevel brings it back.
    os.environ.setdefault("GLOG_minloglevel", "2")
    args = build_parser().parse_args(argv)
    module, extra = EXTRAS.get(args.command, (None, None))
    if module and importlib.util.find_spec(module) is None:
        print(f"caffe-losses {args.command}: needs {module}, which the base install leaves out: "
              f"pip install 'caffe-losses[{extra}]'", file=sys.stderr)
        return 2
    allow_user_modules(args)
    try:
        return args._run(args) or 0
    except MemoryError:
        # the tools check the big allocations they can foresee; this is the rest
        print(f"caffe-losses {args.command}: out of memory: the input is too large for the "
              f"memory available", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
