"""Runs one tool module as a script (used by the thin files in ``tools/``)."""

import argparse
import importlib
import sys


def main(module_name, argv=None):
    module = importlib.import_module(f"caffe_losses.tools.{module_name}")
    parser = argparse.ArgumentParser(prog=f"{module_name}.py", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    sys.exit(module.run(args) or 0)
