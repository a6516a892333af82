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
SAVE_H5 = {"H5.binaryproto": "from caffe_losses.files.hmatrix import save_h; save_h(path, np.eye(5))"}
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
    # negative weights are valid, as in fast-rcnn (issue 18): tests/test_i18_smooth_l1_weights.py
    ("smoothl1-nan-outside-weight", {"layer": "SmoothL1Loss", "bottoms": dict(REG, w_in=[4, 2], w_out=[4, 2]),
                                     "data": {"pred": "np.ones((4, 2))", "target": "np.zeros((4, 2))",
                                              "w_in": "np.ones((4, 2))",
                                              "w_out": "np.array([[1, 1], [1, 1], [1, np.nan], [1, 1]])"}},
     ("raise", r"SmoothL1Loss: bottom 'outside_weights' holds nan at index \(2, 1\); expected finite weights")),
    ("smoothl1-inf-inside-weight", {"layer": "SmoothL1Loss", "bottoms": dict(REG, w_in=[4, 2]),
                                    "data": {"pred": "np.ones((4, 2))", "target": "np.zeros((4, 2))",
                                             "w_in": "np.array([[1, -np.inf], [1, 1], [1, 1], [1, 1]])"}},
     ("raise", r"SmoothL1Loss: bottom 'inside_weights' holds -inf at index \(0, 1\); expected finite weights")),
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


# --- issue 13: user files, float32 limits, hostile param_str, preventable aborts ---
BOMB = "{" + "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol], " + ", ".join(
    f"{n}: &{n} [" + ", ".join([f"*{p}"] * 9) + "]" for p, n in zip("abcdefgh", "bcdefghi")) + "}"
DEEP = "{sigma: " + "[" * 5000 + "]" * 5000 + "}"
NET_IP = ("open(path, 'w').write('layer { name: \"x\" type: \"Input\" top: \"x\" input_param { shape { dim: 1 "
          "dim: 5 } } }\\nlayer { name: \"p\" type: \"InnerProduct\" bottom: \"x\" top: \"p\" param { lr_mult: 0 } "
          "inner_product_param { num_output: 1 bias_term: false } }\\n')")
SURGERY = ["net-surgery", "--model", "m.prototxt", "--layer", "p", "--values", "0:5"]
CEN_DIRECT = {"layer": "CenterLoss", "param_str": "{num_classes: 3}", "bottoms": CEN,
              "data": {"feat": "np.ones((4, 2))", "label": "np.array([0, 1, 2, 0])"}}
LABELS_NPY = {"labels.npy": "np.save(path, np.array([0, 1, 2, 1, 0, 2.0]))"}
SOLVER_NET = "open(path, 'w').write('net: \"{}\"\\nbase_lr: 0.1\\n')"
NET_BOMB = ("open(path, 'w').write('layer {{ name: \"x\" type: \"Input\" top: \"x\" input_param {{ shape {{ dim: 2 "
            "dim: 2 }} }} }}\\nlayer {{ name: \"l\" type: \"Python\" bottom: \"x\" bottom: \"x\" top: \"l\" "
            "python_param {{ module: \"caffe_losses\" layer: \"SmoothL1Loss\" param_str: \"{}\" }} "
            "loss_weight: 1 }}\\n')")


def empty(layer, bottoms, param_str="", tops=("loss",), loss_weight=1.0):
    """A batch of 0 samples or 0 classes: Caffe's own layers abort; ours must say which bottom."""
    return {"layer": layer, "param_str": param_str, "bottoms": bottoms, "tops": list(tops),
            "loss_weight": loss_weight, "files": H5}


CORPUS += [
    # never lose a user's file
    ("surgery-output-is-model", {"files": {"m.prototxt": NET_IP}, "keep": ["m.prototxt"],
                                 "cli": SURGERY + ["--output", "m.prototxt"]},
     ("exit-kept", r"--output m\.prototxt is the --model file of this command; refusing to write over it")),
    ("surgery-output-is-weights", {"files": {"m.prototxt": NET_IP, "w.caffemodel":
                                             "open(path, 'wb').write(b'\\x0a\\x01x')"},
                                   "keep": ["w.caffemodel"],
                                   "cli": SURGERY + ["--weights", "w.caffemodel", "--output", "./w.caffemodel"]},
     ("exit-kept", r"--output \./w\.caffemodel is the --weights file of this command")),
    ("surgery-output-folder", {"files": {"m.prototxt": NET_IP, "out/keep.txt": "open(path, 'w').write('x')"},
                               "cli": SURGERY + ["--output", "out"]}, ("exit", r"--output out is a folder")),
    ("make-h-output-is-labels", {"files": LABELS_NPY, "keep": ["labels.npy"],
                                 "cli": ["make-h", "--labels", "labels.npy", "-o", "labels.npy"]},
     ("exit-kept", r"make-h: error: -o/--output labels\.npy is the --labels file of this command")),
    ("make-h-output-is-matrix", {"files": {"M.npy": "np.save(path, np.eye(3))"}, "keep": ["M.npy"],
                                 "cli": ["make-h", "--matrix", "M.npy", "-o", "M.npy"]},
     ("exit-kept", r"is the --matrix file of this command")),
    ("template-force-keeps-other-files", {"files": {"src/model.py": "open(path, 'w').write('# mine')"},
                                          "keep": ["src/model.py"],
                                          "cli": ["template", "infogain_digits_source", "--out", ".", "--force"]},
     ("exit0-kept", r"wrote .*Imbalanced")),
    ("template-out-is-file", {"files": {"f.txt": "open(path, 'w').write('x')"}, "keep": ["f.txt"],
                              "cli": ["template", "infogain_digits_source", "--out", "f.txt", "--force"]},
     ("exit-kept", r"f\.txt is a file, not a folder")),
    ("template-out-is-symlink", {"files": {"f.txt": "open(path, 'w').write('x')",
                                           "link": "os.symlink('f.txt', path)"}, "keep": ["f.txt"],
                                 "cli": ["template", "infogain_digits_source", "--out", "link", "--force"]},
     ("exit-kept", r"link is a symbolic link to .*f\.txt, which is not a folder")),
    # never a silently wrong number
    ("pos-weight-decimals-0-ten", {"files": {"t.npy": "np.save(path, np.eye(11)[:, :1])"},
                                   "cli": ["make-pos-weight", "t.npy", "--decimals", "0", "--quiet"]},
     ("exit0", r'^param_str: "\{pos_weight: 10\}"$')),
    ("pos-weight-decimals-0-300", {"files": {"t.npy": "np.save(path, np.eye(301)[:, :1])"},
                                   "cli": ["make-pos-weight", "t.npy", "--decimals", "0", "--quiet"]},
     ("exit0", r'^param_str: "\{pos_weight: 300\}"$')),
    *[(f"pos-weight-max-weight-{v}", {"files": {"t.npy": "np.save(path, np.eye(4)[:, :1])"},
                                      "cli": ["make-pos-weight", "t.npy", "--max-weight", v]},
       ("exit", r"make-pos-weight: error: --max-weight must be a finite number > 0")) for v in ("-1", "nan", "inf")],
    ("pos-weight-decimals-negative", {"files": {"t.npy": "np.save(path, np.eye(4)[:, :1])"},
                                      "cli": ["make-pos-weight", "t.npy", "--decimals", "-3"]},
     ("exit", r"make-pos-weight: error: --decimals must be in \[0, 17\]")),
    ("pos-weight-message-speaks-user", {"files": {"t.npy": "np.save(path, np.array([[0., 6.], [1., 0.]]))"},
                                        "cli": ["make-pos-weight", "t.npy"]},
     ("exit", r"^make-pos-weight: error: t\.npy holds 6 at index \(0, 1\); expected targets in \[0, 1\]")),
    ("center-loss-beyond-float32", dict(CEN_DIRECT, data={"feat": "np.full((4, 2), 1e20)", "label": "np.zeros(4)"},
                                        then_backward=True),
     ("raise-state-kept", r"CenterLoss: the loss (1e\+40 does not fit float32 \(at most 3\.403e\+38\)|overflowed to "
                          r"inf although every input is finite \(inputs or weights too large for float32)")),
    ("infogain-h-1e38", swil("{source: Hbig.npy}", files={"Hbig.npy": "np.save(path, 3e38 * np.eye(5))"}),
     ("raise", r"SoftmaxWithInfogainLoss: the loss (.* does not fit float32|overflowed to inf although every "
               r"input is finite \(inputs or weights too large for float32)")),
    ("infogain-h-beyond-float32", swil("{source: Hhuge.npy}", files={"Hhuge.npy": "np.save(path, 1e39 * np.eye(5))"}),
     ("raise", r"SoftmaxWithInfogainLoss: 'source' file 'Hhuge\.npy' holds 1e\+39 at index \[0, 0\], beyond float32")),
    ("sigmoid-pos-weight-1e39", {"layer": "WeightedSigmoidCrossEntropyLoss", "param_str": "{pos_weight: 1e39}",
                                 "bottoms": SIG, "data": SIG_DATA},
     ("raise", r"WeightedSigmoidCrossEntropyLoss: 'pos_weight' must fit float32.*Received: pos_weight=1e\+39")),
    ("expectation-values-1e39", {"layer": "Expectation", "param_str": "{values: [0, 1, 2, 3, 1e39]}",
                                 "bottoms": {"scores": [4, 5]}, "tops": ["age"], "loss_weight": None},
     ("raise", r"Expectation: 'values' must be a list of finite numbers \(an item must fit float32")),
    ("expectation-values-spread", {"layer": "Expectation", "param_str": "{values: {start: -3e38, step: 2e38}}",
                                   "bottoms": {"scores": [4, 5]}, "tops": ["age"], "loss_weight": None},
     ("raise", r"Expectation: 'values' gives bin 4 the value 5e\+38, beyond float32")),
    ("constant-1e300", {"layer": "Constant", "param_str": "{source: big.npy}", "bottoms": {}, "tops": ["H"],
                        "loss_weight": None, "files": {"big.npy": "np.save(path, np.full((2, 2), 1e300))"}},
     ("raise", r"Constant: 'source' file 'big\.npy' holds 1e\+300 at index \[0, 0\], beyond float32")),
    ("smoothl1-sigma-1e23", {"layer": "SmoothL1Loss", "param_str": "{sigma: 1e23}", "bottoms": REG},
     ("raise", r"SmoothL1Loss: 'sigma' must be in \[1e-18, 1e\+18\].*Received: sigma=1e\+23")),
    ("smoothl1-sigma-1e-320", {"layer": "SmoothL1Loss", "param_str": "{sigma: 1e-320}", "bottoms": REG},
     ("raise", r"SmoothL1Loss: 'sigma' must fit float32.*would be 0")),
    ("make-h-counts-beyond-float32", {"cli": ["make-h", "--counts", "1e40", "1", "-o", "H.binaryproto"]},
     ("exit", r"make-h: error: H holds 5e\+39 at index \[1, 1\], beyond float32")),
    ("make-h-row-zero-in-float32", {"files": {"M.npy": "np.save(path, np.array([[1, 0], [0, 1e-50]]))"},
                                    "cli": ["make-h", "--matrix", "M.npy", "-o", "H.binaryproto"]},
     ("exit", r"make-h: error: H has rows for class\(es\) \[1\] whose values are all 0 in float32")),
    # an all-zero row in a layer's H is valid (issue 18): tests/test_i18_zero_row.py
    ("surgery-values-1e39", {"files": {"m.prototxt": NET_IP},
                             "cli": ["net-surgery", "--model", "m.prototxt", "--layer", "p", "--values",
                                     "1e39,0,0,0,0", "--output", "w.caffemodel"]},
     ("exit", r"--values: 1e\+39 \(value 0\) is beyond float32")),
    ("param-str-duplicate-key", {"layer": "SmoothL1Loss", "param_str": "{sigma: 2, sigma: 0.5}", "bottoms": REG},
     ("raise", r"SmoothL1Loss: param_str gives the key 'sigma' twice")),
    ("param-str-sexagesimal", {"layer": "SmoothL1Loss", "param_str": "{sigma: 1:30}", "bottoms": REG},
     ("raise", r"SmoothL1Loss: 'sigma' must be a number\. Received: sigma='1:30'")),
    ("param-str-yes-flag", {"layer": "Expectation", "param_str": "{softmax: yes}", "bottoms": {"scores": [4, 5]},
                            "tops": ["age"], "loss_weight": None},
     ("raise", r"Expectation: 'softmax' must be true or false \('yes' is not a boolean in YAML 1\.2")),
    # never hang or crash
    ("param-str-alias-bomb", {"layer": "SmoothL1Loss", "param_str": BOMB, "bottoms": REG, "timeout": 60},
     ("raise", r"SmoothL1Loss: param_str defines the anchor &a: YAML anchors and aliases are not allowed")),
    ("check-alias-bomb", {"files": {"n.prototxt": NET_BOMB.format(BOMB)}, "timeout": 60,
                          "cli": ["check", "n.prototxt"]},
     ("exit", r"ERROR \[param-str\] layer 'l': SmoothL1Loss: param_str defines the anchor &a")),
    ("param-str-deep", {"layer": "SmoothL1Loss", "param_str": DEEP, "bottoms": REG},
     ("raise", r"SmoothL1Loss: param_str is nested more than 16 levels deep")),
    ("check-solver-is-its-own-net", {"files": {"s.prototxt": SOLVER_NET.format("s.prototxt")},
                                     "cli": ["check", "s.prototxt"]},
     ("exit", r"s\.prototxt: the solver's net is itself")),
    ("check-solvers-point-at-each-other", {"files": {"a.prototxt": SOLVER_NET.format("b.prototxt"),
                                                     "b.prototxt": SOLVER_NET.format("a.prototxt")},
                                           "cli": ["check", "a.prototxt"]},
     ("exit", r"a\.prototxt: the solver's net is 'b\.prototxt', a solver prototxt")),
    ("constant-empty-npy", {"layer": "Constant", "param_str": "{source: e.npy}", "bottoms": {}, "tops": ["H"],
                            "loss_weight": None, "files": {"e.npy": "np.save(path, np.zeros((0, 3)))"}},
     ("raise", r"Constant: 'source' file 'e\.npy' holds no values \(shape \(0, 3\)\)")),
    ("gradcheck-quote-in-bottom-name", {"cli": ["gradcheck", "--module", "caffe_losses", "--layer", "SmoothL1Loss",
                                                "--bottom", 'pr"ed=4x3', "--bottom", "target=4x3"]},
     ("exit0", r'ok caffe_losses\.SmoothL1Loss d/dpr"ed: 12 element\(s\)')),
    ("gradcheck-multiline-param-str", {"cli": ["gradcheck", "--module", "caffe_losses", "--layer", "SmoothL1Loss",
                                               "--bottom", "pred=4x3", "--bottom", "target=4x3",
                                               "--param-str", "{sigma: 2,\n normalization: FULL}"]},
     ("exit0", r"ok caffe_losses\.SmoothL1Loss d/dpred: 12 element\(s\)")),
    ("gradcheck-stepsize-0", {"cli": ["gradcheck", "--module", "caffe_losses", "--layer", "SmoothL1Loss",
                                      "--bottom", "pred=4x3", "--bottom", "target=4x3", "--stepsize", "0"]},
     ("exit", r"argument --stepsize: invalid positive number value: '0'")),
    ("gradcheck-max-checks-0", {"cli": ["gradcheck", "--module", "caffe_losses", "--layer", "SmoothL1Loss",
                                        "--bottom", "pred=4x3", "--bottom", "target=4x3", "--max-checks", "0"]},
     ("exit", r"argument --max-checks: invalid integer >= 1 value: '0'")),
    ("center-num-classes-1e9", {"layer": "CenterLoss", "param_str": "{num_classes: 1000000000}", "bottoms": CEN},
     ("raise", r"CenterLoss: 'num_classes' must be <= 16777216\. Received: num_classes=1000000000")),
    ("center-num-classes-3e9", {"layer": "CenterLoss", "param_str": "{num_classes: 3e9}", "bottoms": CEN},
     ("raise", r"CenterLoss: 'num_classes' must be <= 16777216\. Received: num_classes=3000000000\.0")),
    ("center-centers-beyond-memory", {"layer": "CenterLoss", "param_str": "{num_classes: 16777216}",
                                      "bottoms": {"feat": [4, 100000], "label": [4]}},
     ("raise", r"CenterLoss: the centers \(16777216 x 100000 float32, data and diff\) would hold "
               r"1677721600000 values, more than a Caffe blob can")),
    # batch of 0 samples, or 0 classes, in every layer
    ("empty-batch-softmax-infogain", empty("SoftmaxWithInfogainLoss", {"scores": [0, 5], "label": [0]}, "{source: H5.npy}"),
     ("raise", r"SoftmaxWithInfogainLoss: bottom 'scores' is empty \(shape \(0, 5\)\)")),
    ("empty-classes-softmax-infogain", empty("SoftmaxWithInfogainLoss", {"scores": [4, 0], "label": [4]}, "{source: H5.npy}"),
     ("raise", r"SoftmaxWithInfogainLoss: bottom 'scores' is empty \(shape \(4, 0\)\)")),
    ("empty-batch-infogain", empty("InfogainLoss", {"prob": [0, 5], "label": [0]}, "{source: H5.npy}"),
     ("raise", r"InfogainLoss: bottom 'prob' is empty")),
    ("empty-batch-sigmoid", empty("WeightedSigmoidCrossEntropyLoss", {"scores": [0, 3], "target": [0, 3]}),
     ("raise", r"WeightedSigmoidCrossEntropyLoss: bottom 'scores' is empty \(shape \(0, 3\)\)")),
    ("empty-channels-sigmoid", empty("WeightedSigmoidCrossEntropyLoss", {"scores": [4, 0], "target": [4, 0]}),
     ("raise", r"WeightedSigmoidCrossEntropyLoss: bottom 'scores' is empty \(shape \(4, 0\)\)")),
    ("empty-batch-smoothl1", empty("SmoothL1Loss", {"pred": [0, 2], "target": [0, 2]}),
     ("raise", r"SmoothL1Loss: bottom 'pred' is empty \(shape \(0, 2\)\)")),
    ("empty-batch-expectation", empty("Expectation", {"scores": [0, 5]}, tops=("age",), loss_weight=None),
     ("raise", r"Expectation: bottom 'scores' is empty \(shape \(0, 5\)\)")),
    ("empty-bins-expectation", empty("Expectation", {"scores": [4, 0]}, tops=("age",), loss_weight=None),
     ("raise", r"Expectation: bottom 'scores' is empty \(shape \(4, 0\)\)")),
    ("empty-batch-mean-variance", empty("MeanVarianceLoss", {"scores": [0, 5], "label": [0]}),
     ("raise", r"MeanVarianceLoss: bottom 'scores' is empty")),
    ("empty-bins-mean-variance", empty("MeanVarianceLoss", {"scores": [4, 0], "label": [4]}),
     ("raise", r"MeanVarianceLoss: bottom 'scores' is empty \(shape \(4, 0\)\)")),
    ("empty-batch-center", empty("CenterLoss", {"features": [0, 2], "label": [0]}, "{num_classes: 3}"),
     ("raise", r"CenterLoss: bottom 'features' is empty \(shape \(0, 2\)\)")),
    ("empty-features-center", empty("CenterLoss", {"features": [4, 0], "label": [4]}, "{num_classes: 3}"),
     ("raise", r"CenterLoss: bottom 'features' is empty \(shape \(4, 0\)\)")),
    # uncaught tracebacks in tools
    ("surgery-values-inf-range", {"files": {"m.prototxt": NET_IP},
                                  "cli": ["net-surgery", "--model", "m.prototxt", "--layer", "p", "--values", "0:inf",
                                          "--output", "w.caffemodel"]},
     ("exit", r"--values: START, STOP and STEP must be finite numbers")),
    ("make-h-identity-huge", {"cli": ["make-h", "--identity", "1000000", "-o", "H.binaryproto"]},
     ("exit", r"make-h: error: an H of 1000000 x 1000000 classes would need .* more than the .* of memory available")),
    ("make-h-truncated-npy", {"files": {"t.npy": "np.save(path, np.arange(100.0)); d = open(path, 'rb').read(); "
                                                 "open(path, 'wb').write(d[:-40])"},
                              "cli": ["make-h", "--matrix", "t.npy", "-o", "H.binaryproto"]},
     ("exit", r"'matrix' file 't\.npy'.* is truncated or corrupt")),
    ("h-truncated-npy", swil("{source: t.npy}", files={"t.npy": "np.save(path, np.eye(5)); d = open(path, 'rb').read(); "
                                                             "open(path, 'wb').write(d[:-16])"}),
     ("raise", r"SoftmaxWithInfogainLoss: 'source' file 't\.npy'.* is truncated or corrupt")),
    ("h-unreadable", dict(swil("{source: H5.npy}"), unreadable=["H5.npy"]),
     ("raise", r"SoftmaxWithInfogainLoss: 'source' file 'H5\.npy'.* cannot be read: Permission denied")),
    ("h-negative-dims", swil("{source: neg.binaryproto}", files={"neg.binaryproto":
                             "from caffe.proto import caffe_pb2; b = caffe_pb2.BlobProto(); b.shape.dim.extend([-5, -5]); "
                             "b.data.extend([1.0] * 25); open(path, 'wb').write(b.SerializeToString())"}),
     ("raise", r"SoftmaxWithInfogainLoss: 'source' file 'neg\.binaryproto'.* has a negative dimension")),
    ("make-h-label-as-written", {"files": LABELS_NPY, "cli": ["make-h", "--labels", "labels.npy", "--num-classes", "2",
                                                             "-o", "H.binaryproto"]},
     ("exit", r"make-h: error: labels\.npy: label 2 at position 2 is not an integer in \[0, 2\)")),
    ("params-type-error-under-train", {"files": {"n.prototxt": NET_BOMB.format("[1, 2]"),
                                                 "s.prototxt": SOLVER_NET.format("n.prototxt")},
                                       "cli": ["train", "s.prototxt", "--max-iter", "1", "--no-progress"]},
     ("exit", r"SmoothL1Loss: param_str must be a mapping")),
    # the current folder is not trusted code
    ("cwd-h5py-does-not-run", {"files": {"h5py.py": "open(path, 'w').write('raise SystemExit(\"./h5py.py ran\")')",
                                         "x.h5": "import h5py; f = h5py.File(path, 'w'); f['label'] = np.array([0, 1, 1.0]); f.close()"},
                               "cli": ["make-h", "--labels", "x.h5", "-o", "H.binaryproto"]},
     ("exit0", r"wrote H\.binaryproto: 1 x 1 x 2 x 2 BlobProto; H from class counts of x\.h5")),
    # several GPUs (python/train.py's state, on CPU)
    ("center-direct-multi-gpu", dict(CEN_DIRECT, solver_count=2),
     ("raise", r"CenterLoss: update: direct cannot train on 2 GPUs.*Use 'update: solver'")),
    ("center-solver-multi-gpu", dict(CEN_DIRECT, param_str="{num_classes: 3, update: solver}", solver_count=2),
     ("finite", 1.0)),
]


def run_case(case, tmp_path):
    env = dict(os.environ, GLOG_minloglevel="2")
    proc = subprocess.run([sys.executable, RUNNER, json.dumps(case), str(tmp_path)], capture_output=True,
                          text=True, timeout=case.get("timeout", 120), env=env)
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
    if kind in ("raise", "raise-state-kept"):
        assert result["outcome"] == "exception", f"expected an exception, got {result}"
        assert re.search(want, result["message"], re.S), result["message"]
        if kind == "raise-state-kept":   # nothing moved, and backward refused to move it
            assert result["params_kept"], result
            assert "backward without a forward this layer accepted" in result["backward"], result
    elif kind in ("exit", "exit-kept"):
        assert result["outcome"] == "exit" and result["code"] not in (0,) and result["code"] > 0, result
        assert "Traceback" not in result["stderr"], result["stderr"]
        assert re.search(want, result["stderr"] + result["stdout"], re.S | re.I | re.M), result
        assert result["kept"] or kind == "exit", result
    elif kind in ("exit0", "exit0-kept"):
        assert result["outcome"] == "exit" and result["code"] == 0, result
        assert "Traceback" not in result["stderr"], result["stderr"]
        assert re.search(want, result["stderr"] + result["stdout"], re.S | re.M), result
        assert result["kept"] or kind == "exit0", result
    else:
        assert result["outcome"] == "ok", result
        assert result["loss"] == want and result["diffs_finite"], result
