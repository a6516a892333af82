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
import pytest  # noqa: E402

import demo_run as _demo_run  # noqa: E402  (tests/demo_run.py)

caffe.set_mode_cpu()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The whole small demo, once per session: (out folder, stdout, results.json's content).
    tests/test_demo.py and each family's tests/test_<family>_demo.py read it."""
    return _demo_run.run_small(tmp_path_factory.mktemp("demo") / "run")


def pytest_terminal_summary(terminalreporter):
    """What tests/test_doc_examples.py ran and skipped (its inventory)."""
    for line in getattr(sys.modules.get("test_doc_examples"), "SUMMARY", []):
        terminalreporter.write_line(line)
