"""Runs one bad-input case in a fresh process (used by test_bad_input_corpus.py).

Usage: python corpus_runner.py CASE_JSON WORKDIR

A case is {"kind": "layer", "layer", "param_str", "bottoms": {name: shape},
"data": {name: numpy expression}, "tops": [...]} (build the net, forward,
backward) or {"kind": "files"} with "files": {name: python expression that
writes it} followed by a layer or a "cli" argv.  The process prints one line
"RESULT <json>" with what happened; a crash (signal, abort) prints nothing,
which the test reports.
"""

import json
import os
import pickle  # noqa: F401  (used by file expressions)
import subprocess
import sys
import traceback

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402


def write_files(files, workdir):
    for name, expr in files.items():
        path = os.path.join(workdir, name)
        eval(compile(expr, f"<file {name}>", "exec"), {"np": np, "path": path, "os": os,
                                                          "pickle": pickle})


def run_layer(case):
    import caffe
    from caffe_losses.testing import layer_net
    caffe.set_mode_cpu()
    net = layer_net("caffe_losses", case["layer"], {k: tuple(v) for k, v in case["bottoms"].items()},
                    tops=tuple(case.get("tops", ["loss"])), param_str=case.get("param_str", ""),
                    loss_weight=case.get("loss_weight", 1.0))
    for name, expr in case.get("data", {}).items():
        net.blobs[name].data[...] = eval(expr, {"np": np})
    out = net.forward()
    net.backward()
    loss = float(np.asarray(out[case.get("tops", ["loss"])[0]]).ravel()[0])
    diffs_finite = all(np.all(np.isfinite(net.blobs[n].diff)) for n in case["bottoms"])
    return {"outcome": "ok", "loss": loss, "diffs_finite": bool(diffs_finite)}


def run_cli(case):
    cli = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
    proc = subprocess.run([cli] + case["cli"], capture_output=True, text=True)
    return {"outcome": "exit", "code": proc.returncode, "stdout": proc.stdout[-2000:],
            "stderr": proc.stderr[-2000:]}


def main():
    case = json.loads(sys.argv[1])
    workdir = sys.argv[2]
    os.chdir(workdir)
    write_files(case.get("files", {}), workdir)
    try:
        result = run_cli(case) if "cli" in case else run_layer(case)
    except Exception as err:  # the expected path: a Python exception with a message
        result = {"outcome": "exception", "type": type(err).__name__, "message": str(err),
                  "trace": traceback.format_exc()[-1500:]}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
