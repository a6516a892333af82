"""caffe-losses check's rules for MarginProduct: the iteration count the solver would move, a loss_weight on logits."""

import textwrap

import pytest

from caffe_losses.nets.lint import lint_file

NET = textwrap.dedent("""\
    layer { name: "data" type: "Input" top: "fc5" top: "label"
            input_param { shape { dim: 6 dim: 4 } shape { dim: 6 } } }
    layer { name: "fc6" type: "Python" bottom: "fc5" bottom: "label" top: "fc6"
            python_param { module: "caffe_losses" layer: "MarginProduct" param_str: "PARAMS" }
            SPECS }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc6" bottom: "label" top: "loss" }
    """)


def findings(tmp_path, params, specs, solver=None):
    (tmp_path / "net.prototxt").write_text(NET.replace("PARAMS", params).replace("SPECS", specs))
    target = tmp_path / "net.prototxt"
    if solver is not None:
        (tmp_path / "solver.prototxt").write_text(f'net: "{tmp_path}/net.prototxt"\nbase_lr: 0.1\n{solver}')
        target = tmp_path / "solver.prototxt"
    return [(f.severity, f.rule) for _, f in lint_file(str(target)) if f.rule.startswith("margin-")]


@pytest.mark.parametrize("specs,solver,expected", [
    ("param { lr_mult: 1 }", None, [("error", "margin-count")]),
    ("param { lr_mult: 1 } param { lr_mult: 0 decay_mult: 0 }", None, []),
    ("param { lr_mult: 1 } param { lr_mult: 1 decay_mult: 0 }", None, []),
    ("param { lr_mult: 1 }", "weight_decay: 0\n", []),
    ("param { lr_mult: 1 }", "weight_decay: 0.0005\n", [("error", "margin-count")]),
])
def test_sphereface_count_the_solver_would_move(tmp_path, specs, solver, expected):
    found = findings(tmp_path, "{num_classes: 5, m1: 4, feature_norm: true}", specs, solver)
    assert sorted(set(found)) == expected


def test_no_count_blob_without_sphereface(tmp_path):
    assert findings(tmp_path, "{num_classes: 5, m2: 0.5}", "param { lr_mult: 1 }") == []


def test_loss_weight_on_logits(tmp_path):
    found = findings(tmp_path, "{num_classes: 5}", "loss_weight: 1")
    assert ("error", "margin-loss-weight") in found
