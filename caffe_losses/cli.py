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


def main(argv=None):
    # Like the `caffe` wrapper and `python -m`: Python layers named in a
    # prototxt may live in the current folder.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    # Caffe's INFO log is very long; `--caffe-log` (train) or an explicit
    # GLOG_minloglevel brings it back.
    os.environ.setdefault("GLOG_minloglevel", "2")
    args = build_parser().parse_args(argv)
    module, extra = EXTRAS.get(args.command, (None, None))
    if module and importlib.util.find_spec(module) is None:
        print(f"caffe-losses {args.command}: needs {module}, which the base install leaves out: "
              f"pip install 'caffe-losses[{extra}]'", file=sys.stderr)
        return 2
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
