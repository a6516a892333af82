"""Runs one bad-input case in a fresh process (used by test_bad_input_corpus.py).

Usage: python corpus_runner.py CASE_JSON WORKDIR

A case is {"kind": "layer", "layer", "param_str", "bottoms": {name: shape},
"data": {name: numpy expression}, "tops": [...]} (build the net, forward,
backward) or {"kind": "files"} with "files": {name: python expression that
writes it} followed by a layer or a "cli" argv.  The process prints one line
"RESULT <json>" with what happened; a crash (signal, abort) prints nothing,
which the test reports.

Options:
  "solver_count": N   set Caffe's multi-GPU state as python/train.py does
                      (solver count N, rank 0, multiprocess) before the net;
  "then_backward"     after a refused forward, run backward too and report
                      whether the layers' parameter blobs (e.g. CenterLoss's
                      centers) kept their values;
  "keep": [names]     report whether these files kept their bytes;
  "unreadable": [names]  chmod 000 (and, as root, drop to uid 65534 after the
                      imports, so that the files really cannot be read).
"""

import hashlib
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
        os.makedirs(os.path.dirname(path), exist_ok=True)
        eval(compile(expr, f"<file {name}>", "exec"), {"np": np, "path": path, "os": os,
                                                          "pickle": pickle})


def digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def make_unreadable(names):
    if not names:
        return
    for name in names:
        os.chmod(name, 0)
    if os.getuid() == 0:        # root reads anything: become nobody (imports are done)
        os.chmod(".", 0o755)    # ... who may look into this folder, not read the files
        os.setgid(65534)
        os.setuid(65534)


def run_layer(case):
    import caffe
    import caffe_losses.losses.center.layer, caffe_losses.losses.infogain.layer  # noqa: E401,F401  (before any uid drop)
    import caffe_losses.losses.regression.layer, caffe_losses.losses.sigmoid.layer  # noqa: E401,F401
    from caffe_losses.glue.testing import layer_net
    caffe.set_mode_cpu()
    if case.get("solver_count"):
        # what Caffe's python/train.py sets in each of its solver processes
        caffe.set_solver_count(case["solver_count"])
        caffe.set_solver_rank(0)
        caffe.set_multiprocess(True)
    make_unreadable(case.get("unreadable", []))
    net = layer_net("caffe_losses", case["layer"], {k: tuple(v) for k, v in case["bottoms"].items()},
                    tops=tuple(case.get("tops", ["loss"])), param_str=case.get("param_str", ""),
                    loss_weight=case.get("loss_weight", 1.0))
    for name, expr in case.get("data", {}).items():
        net.blobs[name].data[...] = eval(expr, {"np": np})
    params = {k: [b.data.copy() for b in v] for k, v in net.params.items()}
    try:
        out = net.forward()
    except Exception as err:
        if not case.get("then_backward"):
            raise
        # a refused batch must not change the layer's state
        try:
            net.backward()
            backward = "ran"
        except Exception as berr:
            backward = str(berr)
        kept = all(np.array_equal(b.data, params[k][i]) for k, v in net.params.items()
                   for i, b in enumerate(v))
        return {"outcome": "exception", "type": type(err).__name__, "message": str(err),
                "backward": backward, "params_kept": bool(kept)}
    net.backward()
    loss = float(np.asarray(out[case.get("tops", ["loss"])[0]]).ravel()[0])
    diffs_finite = all(np.all(np.isfinite(net.blobs[n].diff)) for n in case["bottoms"])
    return {"outcome": "ok", "loss": loss, "diffs_finite": bool(diffs_finite)}


def run_cli(case):
    cli = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
    before = {name: digest(name) for name in case.get("keep", [])}
    proc = subprocess.run([cli] + case["cli"], capture_output=True, text=True,
                          timeout=case.get("timeout", 300))
    kept = all(digest(name) == h and h is not None for name, h in before.items())
    return {"outcome": "exit", "code": proc.returncode, "stdout": proc.stdout[-2000:],
            "stderr": proc.stderr[-2000:], "kept": kept}


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
