"""Runs one tool module as a script (used by the thin files in ``tools/``)."""

import argparse
import importlib
import os
import sys

from caffe_losses.cli import SUBCOMMANDS, _report_missing_pycaffe, allow_user_modules, plain, run_command


def main(module_name, argv=None):
    os.environ.setdefault("GLOG_minloglevel", "2")     # as `caffe-losses`: no INFO flood
    module = importlib.import_module(f"caffe_losses.cli.{module_name}")
    parser = argparse.ArgumentParser(prog=f"{module_name}.py", description=plain(module.__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    args.command = next((c for c, m in SUBCOMMANDS.items() if m == module_name), module_name)
    try:
        allow_user_modules(args)
    except ImportError as err:      # pycaffe not importable: one line, as `caffe-losses` says it
        sys.exit(_report_missing_pycaffe(args.command, err))
    sys.exit(run_command(args.command, module.run, args))
