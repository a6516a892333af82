"""`caffe-losses check`'s DiceLoss rules: each has a net that trips it, and a clean twin."""

import textwrap

import pytest

from caffe_losses.nets.lint import lint_file

HEAD = """
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 1 dim: 8 dim: 8 } shape { dim: 2 dim: 1 dim: 8 dim: 8 } } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
        convolution_param { num_output: 3 kernel_size: 1 } }
"""


def dice(bottom, param_str=""):
    return (f'layer {{ name: "loss" type: "Python" bottom: "{bottom}" bottom: "label" top: "loss" '
            f'python_param {{ module: "caffe_losses" layer: "DiceLoss" param_str: "{param_str}" }} '
            f'loss_weight: 1 }}')


SOFTMAX = 'layer { name: "prob" type: "Softmax" bottom: "score" top: "prob" }'
SIGMOID = 'layer { name: "sig" type: "Sigmoid" bottom: "score" top: "sig" }'


def findings(tmp_path, body):
    path = tmp_path / "net.prototxt"
    path.write_text(HEAD + textwrap.dedent(body))
    found = [f for _, f in lint_file(str(path))]
    return [f.rule for f in found], [str(f) for f in found]


@pytest.mark.parametrize("rule, bad, good, words", [
    ("double-softmax", SOFTMAX + dice("prob"), SOFTMAX + dice("prob", "{activation: none}"),
     "softmax is applied twice"),
    ("double-sigmoid", SIGMOID + dice("sig", "{activation: sigmoid}"), dice("score", "{activation: sigmoid}"),
     "the sigmoid is applied twice. Feed it the raw scores ('score')"),
    ("raw-scores", dice("score", "{activation: none}"), dice("score"),
     "DiceLoss with activation: none expects probabilities"),
])
def test_each_rule_trips_on_its_net_and_not_on_the_fixed_one(tmp_path, rule, bad, good, words):
    rules, lines = findings(tmp_path, bad)
    assert rule in rules, lines
    assert any(words in line for line in lines), lines
    rules, lines = findings(tmp_path, good)
    assert rule not in rules and not any("ERROR" in line for line in lines), lines
