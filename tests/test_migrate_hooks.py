"""migrate's tables come from the loss families' declarations (issue 20), and a family's rule
may translate a fork's Python layer, matched by its python_param module and layer."""

import numpy as np
import pytest

from caffe_losses import losses
from caffe_losses.glue.params import FORK_KEYS, load_yaml
from caffe_losses.losses.family import ForkLayer
from caffe_losses.nets import migrate
from caffe_losses.nets.prototxt import FORK_FIELDS
from caffe_losses.nets.rewrite import fork_param_str
from caffe_losses.glue.testing import net_from_text


def test_the_engine_s_tables_are_the_families_declarations():
    declared = {fl.type: fl for f in losses.FAMILIES for fl in f.migrate if not fl.hed}
    assert migrate._NATIVE == declared and {"InfogainLoss", "SmoothL1Loss", "CenterLoss"} <= set(declared)
    assert set(migrate._HED) == {"SigmoidCrossEntropyLoss"}
    blocks = {b.name: b.fork for f in losses.FAMILIES for b in f.fork_blocks}
    assert FORK_FIELDS == blocks and {"smooth_l1_loss_param", "center_loss_param"} <= set(blocks)
    assert FORK_KEYS["num_output"] == ("caffe-face's", "num_classes")
    for f in losses.FAMILIES:
        for block, keys in f.movable.items():
            assert migrate._MOVABLE[block] == keys
        for fl in f.migrate:
            assert fl.doc and fl.fork and callable(fl.convert)


def _dice_like(ctx, layer):
    """A fork's Python SmoothL1 layer (param_str "{'sigma': 2}" read as YAML) -> ours."""
    params = load_yaml(fork_param_str(layer) or "{}")
    if set(params) - {"sigma"}:
        ctx.problem(layer, f"unknown keys {sorted(set(params) - {'sigma'})}")
    ctx.change(layer, "the fork's Python layer", "ours")
    return "SmoothL1Loss", {k: v for k, v in params.items() if k == "sigma"}


NET = """input: "a" input_shape { dim: 2 dim: 3 }
input: "b" input_shape { dim: 2 dim: 3 }
layer {
  name: "loss"
  type: "Python"
  bottom: "a"
  bottom: "b"
  top: "loss"
  python_param {
    module: "forklosses"
    layer: "SmoothL1"
    param_str: "{'sigma': 2}"
  }
}
"""


def test_a_fork_s_python_layer_matched_by_module_and_layer(monkeypatch):
    fork = ForkLayer("Python", "someone's Python SmoothL1", _dice_like, python=("forklosses", "SmoothL1"))
    monkeypatch.setitem(migrate._PYTHON, ("forklosses", "SmoothL1"), fork)
    result = migrate.migrate_text(NET)
    assert not result.problems, result.problems
    assert [str(c) for c in result.changes] == [
        "layer 'loss': type Python forklosses.SmoothL1 -> Python caffe_losses.SmoothL1Loss",
        "layer 'loss': the fork's Python layer -> ours",
        "layer 'loss': no loss_weight (Caffe gives Python layers none: this loss did not train) -> loss_weight: 1",
    ]
    assert "forklosses" not in result.text and 'param_str: "{sigma: 2}"' in result.text
    assert result.text.count("python_param") == 1 and "loss_weight: 1" in result.text
    net = net_from_text(result.text)         # real Caffe runs it
    net.blobs["a"].data[...] = np.arange(6).reshape(2, 3)
    net.blobs["b"].data[...] = 0
    loss = float(net.forward()["loss"].ravel()[0])
    d = np.arange(6.0)
    expected = np.where(np.abs(d) < 0.25, 0.5 * 4 * d ** 2, np.abs(d) - 0.125).sum() / 2
    assert loss == pytest.approx(expected, rel=1e-6)
    assert migrate.migrate_text(result.text).text == result.text       # migrated: nothing left to do
    # another fork module with the same layer name is not this rule's
    assert migrate.migrate_text(NET.replace("forklosses", "otherlosses")).changes == []


def test_a_python_fork_rule_s_refusal_writes_nothing(monkeypatch):
    fork = ForkLayer("Python", "someone's Python SmoothL1", _dice_like, python=("forklosses", "SmoothL1"))
    monkeypatch.setitem(migrate._PYTHON, ("forklosses", "SmoothL1"), fork)
    result = migrate.migrate_text(NET.replace("{'sigma': 2}", "{'sigma': 2, 'p': 1}"))
    assert result.problems == ["layer 'loss': unknown keys ['p']"] and result.changes == []
