"""Test set-up: real Caffe, quiet logs, the helper layers importable.

Real Caffe only: every layer test builds a real ``caffe.Net`` from prototxt text.
"""

import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (HERE, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)
# Python layers named in prototxts are imported by Caffe through sys.path;
# the `caffe` tool gets it from PYTHONPATH.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [HERE, ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import caffe  # noqa: E402  (fails loudly if the build is missing: never skipped)

caffe.set_mode_cpu()


def pytest_terminal_summary(terminalreporter):
    """What tests/test_doc_examples.py ran and skipped (its inventory)."""
    for line in getattr(sys.modules.get("test_doc_examples"), "SUMMARY", []):
        terminalreporter.write_line(line)
