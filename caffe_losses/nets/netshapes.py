"""The learnable blob shapes of a net prototxt, as Caffe builds it (in a child process).

``migrate --weights`` compares every blob a ``.caffemodel`` stores with the
migrated net's, which only Caffe knows (an InnerProduct's weights take their
width from the blob below it).  Caffe aborts the process on a net it cannot
build (a missing data source, a layer whose module does not import), so the
net is built in a child Python process, once per phase, from the current
folder (relative paths as Caffe reads them); a phase that cannot be built is
reported, not fatal.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

from caffe_losses.nets.preflight import PreflightError, check_data_sources

__all__ = ["NetBuildError", "build_shapes"]

_SCRIPT = """\
import json, os, sys
os.environ.setdefault("GLOG_minloglevel", "2")
import caffe
from caffe_losses.nets.preflight import net_shapes
caffe.set_mode_cpu()
net = caffe.Net(sys.argv[1], getattr(caffe, sys.argv[2]))
print("SHAPES " + json.dumps({name: [[list(shape), owned] for shape, owned in blobs]
                              for name, blobs in net_shapes(net).items()}))
"""


class NetBuildError(RuntimeError):
    """The net could not be built in any phase (the reasons, one per phase)."""


def _last_message(stderr):
    """The last glog error (``F20261206 12:00:00.0 123 net.cpp:1] message``), else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    glog = [line.split("] ", 1)[1] for line in lines
            if re.match(r"^[EF]\d{4,8} ", line) and "] " in line]
    if glog:
        return glog[-1]
    return lines[-1] if lines else ""


def _phase_reason(net_param, phase):
    from caffe.proto import caffe_pb2
    try:
        check_data_sources(net_param, getattr(caffe_pb2, phase))
    except PreflightError as err:
        return str(err)
    return None


def build_shapes(text, net_param, *, timeout=300):
    """``{layer name: [(shape, owned), ...]}`` of the net ``text`` over its TRAIN and TEST phases.

    Args:
      text: the net prototxt (BVLC fields only).
      net_param: the same, parsed (a ``caffe_pb2.NetParameter``).

    Raises:
      NetBuildError when no phase builds; its message gives each phase's reason.
    """
    shapes, reasons = {}, []
    fd, path = tempfile.mkstemp(suffix=".prototxt", prefix="caffe_losses_shapes_", text=True)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        for phase in ("TRAIN", "TEST"):
            reason = _phase_reason(net_param, phase)
            if reason is None:
                env = dict(os.environ)
                env.setdefault("GLOG_minloglevel", "2")
                try:
                    proc = subprocess.run([sys.executable, "-P", "-c", _SCRIPT, path, phase],
                                          capture_output=True, text=True, timeout=timeout, env=env)
                except subprocess.TimeoutExpired:
                    reason = f"building it took more than {timeout} s"
                else:
                    lines = [line for line in proc.stdout.splitlines() if line.startswith("SHAPES ")]
                    if proc.returncode == 0 and lines:
                        for name, blobs in json.loads(lines[-1][len("SHAPES "):]).items():
                            shapes.setdefault(name, [(tuple(s), bool(owned)) for s, owned in blobs])
                        continue
                    how = (f"Caffe aborted (signal {-proc.returncode})" if proc.returncode < 0
                           else "Caffe could not build it")
                    why = _last_message(proc.stderr)
                    reason = how + (f": {why}" if why else "")
            reasons.append(f"{phase}: {reason}")
    finally:
        os.unlink(path)
    if len(reasons) == 2:
        raise NetBuildError("; ".join(reasons))
    return shapes
