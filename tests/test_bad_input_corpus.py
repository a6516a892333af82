"""A table of bad inputs across every layer and tool, each run in its own process.

Each must end in a Python exception (or, for tools, a non-zero exit) whose
message names the layer or tool and what is wrong: never a signal, an abort,
a NaN loss, or silence.  A few entries are *valid* edge cases (every label
ignored, under every normalization) that must give a finite loss of 0.
"""

import json
import os
import subprocess
import sys

import pytest

from corpus_train import TRAIN_CASES

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "corpus_runner.py")

S45 = {"scores": [4, 5], "label": [4]}
GOOD = {"scores": "np.random.RandomState(0).randn(4, 5)", "label": "np.array([0, 1, 2, 4])"}
H5 = {"H5.npy": "np.save(path, np.eye(5))"}
SAVE_H5 = {"H5.binaryproto": "from caffe_losses.hmatrix import save_h; save_h(path, np.eye(5))"}
SIG = {"scores": [4, 3], "target": [4, 3]}
SIG_DATA = {"scores": "np.random.RandomState(0).randn(4, 3)", "target": "np.zeros((4, 3))"}
REG = {"pred": [4, 2], "target": [4, 2]}
CEN = {"feat": [4, 2], "label": [4]}


def swil(param_str, data=GOOD, bottoms=S45, files=H5, layer="SoftmaxWithInfogainLoss"):
    return {"layer": layer, "param_str": param_str, "bottoms": bottoms, "data": data, "files": files}


# (id, case, expected): expected is ("raise", regex) for a layer exception,
# ("exit", regex) for a tool's non-zero exit with the message on stderr/stdout,
# ("finite", value) for a valid edge case.
CORPUS = [
    # --- param_str -------------------------------------------------------
    ("yaml-syntax", swil("{source: H5.npy"), ("raise", r"SoftmaxWithInfogainLoss: param_str is not valid YAML/JSON")),
    ("not-a-mapping", swil("[H5.npy]"), ("raise", r"SoftmaxWithInfogainLoss: param_str must be a mapping")),
    ("misspelt-key", swil("{sorce: H5.npy}"), ("raise", r"unknown key 'sorce'.*Did you mean 'source'")),
    ("python-code", swil("__import__('os').getcwd()"), ("raise", r"SoftmaxWithInfogainLoss: param_str must be a mapping")),
    ("bad-normalization", swil("{source: H5.npy, normalization: MEAN}"),
     ("raise", r"'normalization' must be one of FULL, VALID, BATCH_SIZE, NONE")),
    ("axis-type", swil("{source: H5.npy, axis: one}"), ("raise", r"'axis' must be an integer")),
    ("axis-range", swil("{source: H5.npy, axis: 3}"), ("raise", r"SoftmaxWithInfogainLoss.*axis")),
    # --- H files -----------------------------------------------------------
    ("h-missing", swil("{source: nope.binaryproto}", files={}), ("raise", r"SoftmaxWithInfogainLoss.*nope\.binaryproto.*not found")),
    ("h-corrupt", swil("{source: bad.binaryproto}", files={"bad.binaryproto": "open(path, 'wb').write(b'not a blob \\xff\\xff\\xff\\x07')"}),
     ("raise", r"SoftmaxWithInfogainLoss.*bad\.binaryproto")),
    ("h-pickled", swil("{source: evil.npy}", files={"evil.npy": "np.save(path, np.array([{'a': 1}], dtype=object), allow_pickle=True)"}),
     ("raise", r"SoftmaxWithInfogainLoss.*evil\.npy.*pickle")),
    ("h-not-square", swil("{source: H34.npy}", files={"H34.npy": "np.save(path, np.ones((3, 4)))"}),
     ("raise", r"SoftmaxWithInfogainLoss.*(L x L|square|3, 4)")),
    ("h-wrong-size", swil("{source: H3.npy}", files={"H3.npy": "np.save(path, np.eye(3))"}),
     ("raise", r"SoftmaxWithInfogainLoss.*5")),
    ("h-negative", swil("{source: Hneg.npy}", files={"Hneg.npy": "np.save(path, -np.eye(5))"}),
     ("raise", r"SoftmaxWithInfogainLoss.*negative")),
    ("h-nan", swil("{source: Hnan.npy}", files={"Hnan.npy": "np.save(path, np.full((5, 5), np.nan))"}),
     ("raise", r"SoftmaxWithInfogainLoss.*finite")),
    ("h-source-and-bottom", swil("{source: H5.npy}", bottoms={"scores": [4, 5], "label": [4], "H": [5, 5]},
                                 data=dict(GOOD, H="np.eye(5)")),
     ("raise", r"SoftmaxWithInfogainLoss: H is given twice")),
    ("h-binaryproto-ok-for-native-size", swil("{source: H5.binaryproto}", files=SAVE_H5, bottoms={"scores": [4, 6], "label": [4]},
                                              data={"scores": "np.zeros((4, 6))", "label": "np.zeros(4)"}),
     ("raise", r"SoftmaxWithInfogainLoss.*6")),
    # --- labels and scores ---------------------------------------------------
    ("label-out-of-range", swil("{source: H5.npy}", data=dict(GOOD, label="np.array([0, 1, 7, 2])")),
     ("raise", r"SoftmaxWithInfogainLoss: bottom 'label' holds 7(\.0)? at index \(2,\)")),
    ("label-negative", swil("{source: H5.npy}", data=dict(GOOD, label="np.array([0, -1, 2, 2])")),
     ("raise", r"bottom 'label' holds -1(\.0)? at index \(1,\)")),
    ("label-fraction", swil("{source: H5.npy}", data=dict(GOOD, label="np.array([0, 1, 2.5, 2])")),
     ("raise", r"bottom 'label' holds 2\.5")),
    ("label-count", swil("{source: H5.npy}", bottoms={"scores": [4, 5], "label": [3]}, data={}),
     ("raise", r"SoftmaxWithInfogainLoss.*label")),
    ("scores-nan", swil("{source: H5.npy}", data=dict(GOOD, scores="np.full((4, 5), np.nan)")),
     ("raise", r"SoftmaxWithInfogainLoss.*(finite|nan|NaN)")),
    ("scores-inf", swil("{source: H5.npy}", data=dict(GOOD, scores="np.full((4, 5), np.inf)")),
     ("raise", r"SoftmaxWithInfogainLoss.*(finite|inf)")),
    ("bottom-count", swil("{source: H5.npy}", bottoms={"scores": [4, 5]}, data={}),
     ("raise", r"SoftmaxWithInfogainLoss: expected 2 to 3 bottom")),
    # every label ignored: a valid batch whose loss is 0 under every normalization
    *[(f"all-ignored-{mode}", swil(f"{{source: H5.npy, ignore_label: 255, normalization: {mode}}}",
                                   data=dict(GOOD, label="np.full(4, 255.0)")), ("finite", 0.0))
      for mode in ("FULL", "VALID", "BATCH_SIZE", "NONE")],
    # --- classic InfogainLoss -------------------------------------------------
    ("infogain-raw-scores", swil("{source: H5.npy}", layer="InfogainLoss",
                                 data=dict(GOOD, scores="np.random.RandomState(0).randn(4, 5) * 5")),
     ("raise", r"InfogainLoss.*SoftmaxWithInfogainLoss")),
    ("infogain-eps", swil("{source: H5.npy, eps: 2}", layer="InfogainLoss"), ("raise", r"InfogainLoss: 'eps' must be")),
    # --- Constant ------------------------------------------------------------
    ("constant-missing", {"layer": "Constant", "param_str": "{source: none.npy}", "bottoms": {}, "tops": ["H"],
                          "loss_weight": None}, ("raise", r"Constant.*none\.npy.*not found")),
    ("constant-no-source", {"layer": "Constant", "param_str": "", "bottoms": {}, "tops": ["H"], "loss_weight": None},
     ("raise", r"Constant: param_str must set 'source'")),
    # --- weighted sigmoid -------------------------------------------------------
    ("sigmoid-target-range", {"layer": "WeightedSigmoidCrossEntropyLoss", "bottoms": SIG,
                              "data": dict(SIG_DATA, target="np.full((4, 3), 2.0)")},
     ("raise", r"WeightedSigmoidCrossEntropyLoss.*target.*\[0, 1\]")),
    ("sigmoid-negative-weight", {"layer": "WeightedSigmoidCrossEntropyLoss", "param_str": "{pos_weight: -2}",
                                 "bottoms": SIG, "data": SIG_DATA},
     ("raise", r"WeightedSigmoidCrossEntropyLoss: 'pos_weight' must be >= 0")),
    ("sigmoid-weight-list-length", {"layer": "WeightedSigmoidCrossEntropyLoss", "param_str": "{pos_weight: [1, 2]}",
                                    "bottoms": SIG, "data": SIG_DATA},
     ("raise", r"WeightedSigmoidCrossEntropyLoss.*pos_weight.*(2|3)")),
    ("sigmoid-shape", {"layer": "WeightedSigmoidCrossEntropyLoss", "bottoms": {"scores": [4, 3], "target": [4, 2]}},
     ("raise", r"WeightedSigmoidCrossEntropyLoss.*target")),
    ("sigmoid-both-aliases", {"layer": "WeightedSigmoidCrossEntropyLoss", "param_str": "{pos_weight: 2, cls_weight: 3}",
                              "bottoms": SIG}, ("raise", r"'pos_weight' given twice")),
    ("sigmoid-balance", {"layer": "WeightedSigmoidCrossEntropyLoss", "param_str": "{balance: sometimes}",
                         "bottoms": SIG}, ("raise", r"WeightedSigmoidCrossEntropyLoss: 'balance'")),
    ("sigmoid-nan-scores", {"layer": "WeightedSigmoidCrossEntropyLoss", "bottoms": SIG,
                            "data": dict(SIG_DATA, scores="np.full((4, 3), np.nan)")},
     ("raise", r"WeightedSigmoidCrossEntropyLoss.*(finite|nan|NaN)")),
    # --- regression ----------------------------------------------------------
    ("smoothl1-sigma", {"layer": "SmoothL1Loss", "param_str": "{sigma: 0}", "bottoms": REG},
     ("raise", r"SmoothL1Loss: 'sigma' must be > 0\. Received: sigma=0")),
    ("smoothl1-shape", {"layer": "SmoothL1Loss", "bottoms": {"pred": [4, 2], "target": [4, 3]}},
     ("raise", r"SmoothL1Loss.*target")),
    ("smoothl1-weights-shape", {"layer": "SmoothL1Loss", "bottoms": {"pred": [4, 2], "target": [4, 2], "w_in": [4, 1]}},
     ("raise", r"SmoothL1Loss.*inside_weights")),
    ("smoothl1-bottoms", {"layer": "SmoothL1Loss", "bottoms": {"a": [2], "b": [2], "c": [2], "d": [2], "e": [2]}},
     ("raise", r"SmoothL1Loss: expected 2 to 4 bottom")),
    ("smoothl1-nan", {"layer": "SmoothL1Loss", "bottoms": REG,
                      "data": {"pred": "np.full((4, 2), np.nan)", "target": "np.zeros((4, 2))"}},
     ("raise", r"SmoothL1Loss: bottom 'pred' holds a non-finite value nan at index \(0, 0\)")),
    ("smoothl1-inf-target", {"layer": "SmoothL1Loss", "bottoms": REG,
                             "data": {"pred": "np.zeros((4, 2))", "target": "np.array([[0, 0], [0, np.inf], [0, 0], [0, 0]])"}},
     ("raise", r"SmoothL1Loss: bottom 'target' holds a non-finite value inf at index \(1, 1\)")),
    ("smoothl1-overflow", {"layer": "SmoothL1Loss", "bottoms": REG,
                           "data": {"pred": "np.full((4, 2), 3e38)", "target": "np.full((4, 2), -3e38)"}},
     ("raise", r"SmoothL1Loss: the loss overflowed to inf although every input is finite")),
    ("smoothl1-target-other-shape", {"layer": "SmoothL1Loss",            # valid: equal counts, other shapes
                                     "bottoms": {"pred": [4, 1, 1, 1], "target": [4, 1], "w_in": [4, 1],
                                                 "w_out": [4, 1, 1, 1]},
                                     "data": {"pred": "np.zeros((4, 1, 1, 1))", "target": "np.zeros((4, 1))",
                                              "w_in": "np.ones((4, 1))", "w_out": "np.ones((4, 1, 1, 1))"}},
     ("finite", 0.0)),
    ("smoothl1-negative-outside-weight", {"layer": "SmoothL1Loss", "bottoms": dict(REG, w_in=[4, 2], w_out=[4, 2]),
                                          "data": {"pred": "np.ones((4, 2))", "target": "np.zeros((4, 2))",
                                                   "w_in": "np.ones((4, 2))",
                                                   "w_out": "np.array([[1, 1], [1, 1], [1, -0.5], [1, 1]])"}},
     ("raise", r"SmoothL1Loss: bottom 'outside_weights' holds -0\.5 at index \(2, 1\); expected finite weights >= 0")),
    ("smoothl1-negative-inside-weight", {"layer": "SmoothL1Loss", "bottoms": dict(REG, w_in=[4, 2]),
                                         "data": {"pred": "np.ones((4, 2))", "target": "np.zeros((4, 2))",
                                                  "w_in": "np.array([[1, -2], [1, 1], [1, 1], [1, 1]])"}},
     ("raise", r"SmoothL1Loss: bottom 'inside_weights' holds -2\.0 at index \(0, 1\); expected finite weights >= 0")),
    ("expectation-values", {"layer": "Expectation", "param_str": "{values: [1, 2, 3]}", "bottoms": {"scores": [4, 5]},
                            "tops": ["age"], "loss_weight": None}, ("raise", r"Expectation.*values.*(3|5)")),
    ("expectation-shape", {"layer": "Expectation", "bottoms": {"scores": [4, 5, 2, 2]}, "tops": ["age"],
                           "loss_weight": None}, ("raise", r"Expectation.*scores")),
    ("mean-variance-label", {"layer": "MeanVarianceLoss", "bottoms": {"scores": [4, 5], "label": [4]},
                             "data": {"scores": "np.zeros((4, 5))", "label": "np.array([0, 1, 9, 2])"}},
     ("raise", r"MeanVarianceLoss.*label.*9")),
    # --- center loss -----------------------------------------------------------
    ("center-no-classes", {"layer": "CenterLoss", "bottoms": CEN}, ("raise", r"CenterLoss: param_str must set 'num_classes'")),
    ("center-label", {"layer": "CenterLoss", "param_str": "{num_classes: 3}", "bottoms": CEN,
                      "data": {"feat": "np.zeros((4, 2))", "label": "np.array([0, 1, 3, 2])"}},
     ("raise", r"CenterLoss: bottom 'label' holds 3(\.0)? at index \(2,\)")),
    ("center-count", {"layer": "CenterLoss", "param_str": "{num_classes: 3}", "bottoms": {"feat": [4, 2], "label": [5]}},
     ("raise", r"CenterLoss.*label")),
    ("center-nan-features", {"layer": "CenterLoss", "param_str": "{num_classes: 3}", "bottoms": CEN,
                             "data": {"feat": "np.array([[0, 0], [np.nan, 0], [0, 0], [0, 0]])", "label": "np.zeros(4)"}},
     ("raise", r"CenterLoss: bottom 'features' holds a non-finite value nan at index \(1, 0\)")),
    ("center-alpha", {"layer": "CenterLoss", "param_str": "{num_classes: 3, alpha: 1.5}", "bottoms": CEN},
     ("raise", r"CenterLoss: 'alpha' must be <= 1")),
    # --- tools -------------------------------------------------------------------
    ("tool-make-h-pickle", {"files": {"evil.npy": "np.save(path, np.array([{'a': 1}], dtype=object), allow_pickle=True)"},
                            "cli": ["make-h", "--matrix", "evil.npy", "-o", "H.binaryproto"]}, ("exit", r"pickle")),
    ("tool-make-h-show-missing", {"cli": ["make-h", "--show", "nope.binaryproto"]}, ("exit", r"nope\.binaryproto")),
    ("tool-make-h-zero-count", {"cli": ["make-h", "--counts", "10", "0", "5", "-o", "H.binaryproto"]},
     ("exit", r"(zero|0 samples|no samples)")),
    ("tool-pos-weight-range", {"files": {"t.npy": "np.save(path, np.array([[0., 2.], [1., 0.]]))"},
                               "cli": ["make-pos-weight", "t.npy"]}, ("exit", r"\[0, 1\]")),
    ("tool-surgery-values", {"files": {"m.prototxt": "open(path, 'w').write('layer { name: \"x\" type: \"Input\" top: \"x\" "
                                                     "input_param { shape { dim: 1 dim: 3 } } }\\nlayer { name: \"p\" type: "
                                                     "\"InnerProduct\" bottom: \"x\" top: \"p\" param { lr_mult: 0 } "
                                                     "inner_product_param { num_output: 1 bias_term: false } }\\n')"},
                             "cli": ["net-surgery", "--model", "m.prototxt", "--layer", "p", "--values", "0:5",
                                     "--output", "w.caffemodel"]}, ("exit", r"--values")),
    ("tool-check-bad-prototxt", {"files": {"bad.prototxt": "open(path, 'w').write('layer { name: ')"},
                                 "cli": ["check", "bad.prototxt"]}, ("exit", r"not a valid net prototxt")),
    ("tool-train-missing-solver", {"cli": ["train", "nope.prototxt"]}, ("exit", r"solver file not found")),
]

CORPUS += TRAIN_CASES     # caffe-losses train's bad inputs (tests/corpus_train.py)


def run_case(case, tmp_path):
    env = dict(os.environ, GLOG_minloglevel="2")
    proc = subprocess.run([sys.executable, RUNNER, json.dumps(case), str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("case, expected", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_input(case, expected, tmp_path):
    import re
    result = run_case(case, tmp_path)
    kind, want = expected
    if kind == "raise":
        assert result["outcome"] == "exception", f"expected an exception, got {result}"
        assert re.search(want, result["message"], re.S), result["message"]
    elif kind == "exit":
        assert result["outcome"] == "exit" and result["code"] not in (0,) and result["code"] > 0, result
        assert "Traceback" not in result["stderr"], result["stderr"]
        assert re.search(want, result["stderr"] + result["stdout"], re.S | re.I), result
    else:
        assert result["outcome"] == "ok", result
        assert result["loss"] == want and result["diffs_finite"], result
