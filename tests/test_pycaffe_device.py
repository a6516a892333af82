"""pycaffe's device-memory properties (tools/install_caffe.sh's _caffe.cpp patch).

GPU Python layers read a blob's device pointers; these tests hold what the
CPU_ONLY build (the one `make test` uses) must do with them: name the
missing GPU in a Python exception, never Caffe's FATAL abort, and report
where each blob's valid copy lives (``data_head`` / ``diff_head``) so that a
GPU run can prove that a layer made no host copy.  Each case runs in its own
process, since a wrong patch would abort the interpreter.
"""

import json
import subprocess
import sys
import textwrap

import caffe
import numpy as np
import pytest

from caffe_losses.glue.testing import net_from_text

NET = """
force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
"""


def run_isolated(code):
    """Run `code` in a fresh interpreter; returns (returncode, the JSON it printed last)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else None), proc.stderr


@pytest.mark.parametrize("prop", ["gpu_data_ptr", "gpu_diff_ptr"])
def test_cpu_only_pointer_is_a_clear_python_error(prop):
    code, out, err = run_isolated(f"""
        import json, caffe
        from caffe_losses.glue.testing import net_from_text
        net = net_from_text({NET!r})
        try:
            value = net.blobs["x"].{prop}
            print(json.dumps({{"raised": None, "value": value}}))
        except Exception as e:
            print(json.dumps({{"raised": type(e).__name__, "message": str(e)}}))
    """)
    assert code == 0, f"the interpreter died (exit {code}): {err[-2000:]}"
    assert out["raised"] == "RuntimeError", out
    assert f"caffe.Blob.{prop}" in out["message"] and "CPU_ONLY" in out["message"], out["message"]


def test_heads_follow_host_access():
    net = net_from_text(NET)
    x = net.blobs["x"]
    assert x.gpu_device is None  # no GPU memory in a CPU_ONLY build
    x.data[...] = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert x.data_head == "cpu"
    net.forward()
    assert net.blobs["ip"].data_head == "cpu"
    # nothing has touched the top's diff before backward
    assert net.blobs["ip"].diff_head == "uninitialized"
    net.blobs["ip"].diff[...] = 1.0
    net.backward()
    assert net.blobs["ip"].diff_head == "cpu" and x.diff_head == "cpu"
    assert net.params["ip"][0].diff_head == "cpu"


def test_empty_blob_has_no_head():
    net = net_from_text('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 0 dim: 3 } } }')
    assert net.blobs["x"].data_head == "uninitialized" and net.blobs["x"].diff_head == "uninitialized"


def test_pointer_error_does_not_change_the_head():
    net = net_from_text(NET)
    x = net.blobs["x"]
    x.data[...] = 1.0
    with pytest.raises(RuntimeError, match="CPU_ONLY"):
        x.gpu_data_ptr
    assert x.data_head == "cpu"
    assert float(x.data.sum()) == 12.0
    assert caffe.layer_type_list()  # the module is still usable afterwards
