"""Angular margin vs softmax and vs center loss: open-set verification on the 8 x 8 digits.

Trains ``prototxt_templates/margin_digits`` as shipped (a 16-D embedding,
MarginProduct with ArcFace's margin + SoftmaxWithLoss, on the digits 0..6)
and two baselines from the same data, solver and seeds:

* ``softmax``: the MarginProduct layer replaced by a plain ``InnerProduct``
  (7 outputs, with bias) before the same ``SoftmaxWithLoss``;
* ``center``: that softmax net plus ``CenterLoss`` on the embedding
  (``loss_weight`` 0.1, alpha 0.5, as the center-loss template).

What these losses are for is open-set verification: the TEST phase holds
the digits 7, 8 and 9 that no net trained on; every pair of their 533
images is scored by the cosine of the two embeddings, and the purpose
metric is the ROC AUC of those scores (same digit = genuine pair).  The AUC
uses every threshold, so it is steadier than one point of the curve over
these ~142,000 pairs; the true-accept rate at a false-accept rate of 1e-2
(TAR@FAR=1e-2) is reported beside it (a trade-off row: shown, not judged).
"""

import math
import os

import numpy as np

from caffe_losses.experiments import report, runner
from caffe_losses.experiments.runner import finals
from caffe_losses.files.features import forward_rows
from caffe_losses.glue.params import load_yaml
from caffe_losses.nets.prototxt import read_net_param

__all__ = ["TEMPLATE", "plan", "summarize", "evaluate", "verification", "softmax_net", "center_net"]

FAMILY = "margin"
TEMPLATE = "margin_digits"
SMALL_ITERS = 30
FAR = 1e-2
CENTER_WEIGHT = 0.1


def center_layer():
    """The center family's layer class (its declaration names it; this recipe borrows it)."""
    from caffe_losses.losses import FAMILIES
    return next(f for f in FAMILIES if f.name == "center").layers[0]


BASELINES = {"softmax": "InnerProduct + SoftmaxWithLoss (native)",
             "center": f"InnerProduct + SoftmaxWithLoss + {CENTER_WEIGHT:g} x {center_layer()}"}


def verification(features, labels, far=FAR):
    """``(ROC AUC, TAR at FAR)`` of all pairs scored by cosine similarity; genuine = same label.

    AUC = P(genuine score > impostor score) + P(equal) / 2 (the Mann-Whitney
    statistic, ranks with ties averaged).  TAR@FAR: the share of genuine
    pairs above the threshold that accepts a fraction ``far`` of impostors.
    """
    f = np.asarray(features, np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-300)
    sim = f @ f.T
    i, j = np.triu_indices(len(f), k=1)
    scores, genuine = sim[i, j], labels[i] == labels[j]
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(start + (counts + 1) / 2.0, counts)     # 1-based average ranks
    n_g, n_i = int(genuine.sum()), int((~genuine).sum())
    auc = (ranks[genuine].sum() - n_g * (n_g + 1) / 2.0) / (n_g * n_i)
    impostor = np.sort(scores[~genuine])
    threshold = impostor[min(n_i - 1, int(math.ceil((1 - far) * n_i)))]
    tar = float(np.mean(scores[genuine] > threshold))
    return float(auc), tar


def evaluate(net, n_test):
    """ROC AUC and TAR@FAR=1e-2 of the held-out digits' pairs, by cosine of the embeddings."""
    rows = forward_rows(net, ["feature", "label"], n_test)
    auc, tar = verification(rows["feature"], rows["label"][:, 0].astype(np.int64))
    return {"ROC AUC": auc, "TAR@FAR=1e-2": tar}, {}


def _margin_layer(net):
    found = [layer for layer in net.layer
             if layer.type == "Python" and layer.python_param.layer == "MarginProduct"]
    if len(found) != 1:
        raise ValueError(f"expected one MarginProduct layer, found {len(found)}")
    return found[0]


def _softmax_param(path):
    from caffe.proto import caffe_pb2
    net = read_net_param(path)
    margin = _margin_layer(net)
    classes = int(load_yaml(margin.python_param.param_str)["num_classes"])
    ip = caffe_pb2.LayerParameter(name="ip_softmax", type="InnerProduct", bottom=[margin.bottom[0]],
                                  top=list(margin.top))
    ip.param.add(lr_mult=1, decay_mult=1)
    ip.param.add(lr_mult=2, decay_mult=0)
    ip.inner_product_param.num_output = classes
    ip.inner_product_param.weight_filler.type = "xavier"
    ip.inner_product_param.bias_filler.type = "constant"
    margin.CopyFrom(ip)
    return net, classes


def softmax_net(path):
    """The MarginProduct layer replaced by a plain InnerProduct (same classes, with bias)."""
    net, _ = _softmax_param(path)
    net.name += "_softmax"
    runner.write_net(path, net, f"baseline: {TEMPLATE} with InnerProduct instead of MarginProduct")


def center_net(path):
    """The softmax baseline plus CenterLoss on the embedding (TRAIN phase)."""
    from caffe.proto import caffe_pb2
    net, classes = _softmax_param(path)
    center = net.layer.add(name="center_loss", type="Python", bottom=["feature", "label"], top=["center_loss"])
    center.python_param.module, center.python_param.layer = "caffe_losses", center_layer()
    center.python_param.param_str = f"{{num_classes: {classes}, alpha: 0.5}}"
    center.param.add(lr_mult=0, decay_mult=0)
    center.loss_weight.append(CENTER_WEIGHT)
    center.include.add(phase=caffe_pb2.TRAIN)
    net.name += "_center"
    runner.write_net(path, net, f"baseline: {TEMPLATE} with InnerProduct + {center_layer()} instead of MarginProduct")


def plan(out_dir, *, small=False, seeds=None):
    """Prepares the three nets under ``out_dir`` (a new folder); returns the jobs."""
    common = dict(template=TEMPLATE, evaluate=f"{__name__}:evaluate", cost=5.0)
    return runner.plan(FAMILY, out_dir, [
        runner.Variant("ours", "ours", **common),
        runner.Variant("softmax", "baseline", edit_net=softmax_net, **common),
        runner.Variant("center", "baseline_center", edit_net=center_net, **common)],
        small=small, seeds=seeds, small_iters=SMALL_ITERS)


def summarize(results, out_dir, *, small=False):
    """Result rows and the curves figure from the jobs' results."""
    runs = runner.by_variant(results)
    ours = runs["ours"]
    seeds = [r["job"].seed for r in ours]
    param_str = _margin_layer(read_net_param(os.path.join(ours[0]["job"].folder, "train_val.prototxt"))
                              ).python_param.param_str
    name = f"MarginProduct {param_str}"
    rows = []
    for key, baseline in BASELINES.items():
        common = dict(family=FAMILY, recipe=f"16-D embedding on digits 0-6, {name} + SoftmaxWithLoss "
                                            f"({TEMPLATE}); pairs of held-out digits 7-9",
                      loss="MarginProduct + SoftmaxWithLoss", baseline=baseline, seeds=seeds)
        rows.append(report.paired_row(metric="ROC AUC, held-out digit pairs by cosine", role="purpose",
                                      higher_is_better=True, values=finals(ours, "ROC AUC"),
                                      baseline_values=finals(runs[key], "ROC AUC"),
                                      note="open-set verification", **common))
        rows.append(report.paired_row(metric="TAR@FAR=1e-2, held-out digit pairs", role="trade-off",
                                      expected="gain", higher_is_better=True,
                                      values=finals(ours, "TAR@FAR=1e-2"),
                                      baseline_values=finals(runs[key], "TAR@FAR=1e-2"),
                                      note="one point of the ROC curve", **common))
    series = [(name, ours)] + [(f"{text}, baseline", runs[key]) for key, text in BASELINES.items()]
    curves = runner.plot_curves(
        [{"title": "ROC AUC of held-out digit pairs (the purpose)", "metric": "ROC AUC",
          "ylabel": "ROC AUC", "better": "higher", "series": series, "legend": "lower right"},
         {"title": "TAR at FAR = 1e-2", "metric": "TAR@FAR=1e-2", "ylabel": "TAR", "better": "higher",
          "series": series, "legend": "lower right"}],
        os.path.join(out_dir, "curves.png"), n_seeds=len(seeds),
        title=f"Angular margin ({TEMPLATE}) vs softmax and center loss: open-set verification")
    return rows, [curves]
