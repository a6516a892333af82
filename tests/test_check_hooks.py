"""check (nets/lint.py) runs the loss families' rules from their declarations (issue 20):
each family's ``lint`` functions get a RuleContext for every layer of each phase."""

import dataclasses

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from caffe_losses import losses
from caffe_losses.nets import lint

NET = """
layer { name: "data" type: "Input" top: "x" top: "y" input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "fc" }
layer { name: "loss" type: "Python" bottom: "fc" bottom: "y" top: "loss" loss_weight: 1
        python_param { module: "caffe_losses" layer: "InfogainLoss" param_str: "{axis: 1}" } }
"""


def _net(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def test_the_rules_are_the_families():
    assert lint._RULES == tuple(rule for family in losses.FAMILIES for rule in family.lint)
    names = {rule.__module__ for rule in lint._RULES}
    assert names >= {"caffe_losses.losses.infogain.lint", "caffe_losses.losses.regression.lint",
                     "caffe_losses.losses.center.lint"}
    assert set(lint.MIGRATED_TYPES) == {fl.type for f in losses.FAMILIES for fl in f.migrate
                                        if not fl.hed and not fl.python}


def test_a_family_rule_sees_the_context_and_reports(monkeypatch):
    seen = []

    def rule(ctx, layer):
        if ctx.ours and ctx.cls_name == "InfogainLoss":
            seen.append((ctx.phase, ctx.params["axis"], ctx.src.name, ctx.classes, ctx.label(ctx.src),
                         sorted(ctx.producer), ctx.writer["fc"].name, ctx.weight_decay))
            ctx.memo["n"] = ctx.memo.get("n", 0) + 1
            ctx.warning("my-rule", f"seen {ctx.memo['n']} time(s) in this phase")

    monkeypatch.setattr(lint, "_RULES", lint._RULES + (rule,))
    solver = caffe_pb2.SolverParameter(weight_decay=0.5)
    findings = lint.lint_net(_net(NET), solver)
    assert seen == [(phase, 1, "prob", 5, "layer 'prob'", ["fc", "x", "y"], "prob", 0.5)
                    for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST)]
    mine = [str(f) for f in findings if f.rule == "my-rule"]
    assert mine == ["WARNING [my-rule] layer 'loss': seen 1 time(s) in this phase"]   # once: both phases agree
    # the engine's own rules and the infogain family's still run beside it
    assert any(f.rule == "python-loss-weight" for f in lint.lint_net(_net(NET.replace("loss_weight: 1", ""))))


def test_a_declared_fork_type_points_to_migrate(monkeypatch):
    family = dataclasses.replace(losses.FAMILIES[0], name="newloss", layers=("NewLoss",))
    monkeypatch.setitem(lint.MIGRATED_TYPES, "NewFork", family)
    monkeypatch.setitem(lint.MIGRATED_TYPES, "NewLoss", family)
    net = _net('layer { name: "a" type: "NewLoss" } layer { name: "b" type: "NewFork" }')
    messages = [f.message for f in lint.lint_net(net) if f.rule == "layer-type"]
    assert any("caffe-losses migrate translates it into caffe_losses.NewLoss" in m for m in messages)
    assert any("caffe-losses migrate translates it into one of caffe_losses' newloss layers (NewLoss)" in m
               for m in messages)
