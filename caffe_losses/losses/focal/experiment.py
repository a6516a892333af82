"""Focal loss on a dense, heavily imbalanced task, against the plain cross-entropy.

Two templates on the same data (:mod:`caffe_losses.losses.focal.data`: a
6 x 6 grid of digit tiles per image, 3% of the tiles hold the rare digit),
each trained as shipped and as a baseline, for every solver seed:

* ``focal_digits_sigmoid``: ``SigmoidFocalLoss`` (RetinaNet's recipe:
  gamma 2, alpha 0.25, divided by the positives) against Caffe's native
  ``SigmoidCrossEntropyLoss`` in the same net (the same prior bias),
  normalization VALID (the mean over the tiles);
* ``focal_digits_softmax``: ``SoftmaxFocalLoss`` (gamma 2) against native
  ``SoftmaxWithLoss`` with the template's normalization (VALID).

What focal loss is for: a one-stage detector's anchors are nearly all easy
background, whose many small losses swamp the few positives.  Whether the
net then finds the rare class better is measured by the **average
precision of the rare class** over all test tiles (threshold-free: focal
loss and alpha move the scores, so any fixed threshold would favour one
side); the F1 at probability 0.5 is a check (the decision without a tuned
threshold).
"""

import os

import numpy as np

from caffe_losses.experiments import report, runner
from caffe_losses.experiments.runner import finals
from caffe_losses.files.features import forward_rows
from caffe_losses.glue.params import load_yaml
from caffe_losses.nets.prototxt import read_net_param

# caffe (pycaffe) is imported inside the functions that use it: the CLI imports this
# module, and must run without it (tests/test_layout.py).

__all__ = ["TASKS", "plan", "summarize", "evaluate_sigmoid", "evaluate_softmax", "metrics",
           "average_precision", "baseline_net"]

FAMILY = "focal"
SMALL_ITERS = 10
# template -> (recipe text, short name, our layer, native layer, evaluation function)
TASKS = {
    "focal_digits_sigmoid": ("dense digit grid N x 1 x 6 x 6, 3% positive tiles; gamma 2, alpha 0.25, "
                             "POSITIVES", "sigmoid", "SigmoidFocalLoss", "SigmoidCrossEntropyLoss",
                             "evaluate_sigmoid"),
    "focal_digits_softmax": ("dense digit grid N x 2 x 6 x 6, 3% positive tiles; gamma 2",
                             "softmax", "SoftmaxFocalLoss", "SoftmaxWithLoss", "evaluate_softmax"),
}


def baseline_net(path):
    """Replaces the focal loss of ``path`` by its native counterpart (the same net otherwise).

    Sigmoid: ``SigmoidCrossEntropyLoss`` with normalization VALID (the mean
    over the tiles; native POSITIVES does not exist).  Softmax:
    ``SoftmaxWithLoss`` with the template's ``axis`` and normalization.
    """
    from caffe.proto import caffe_pb2
    net = read_net_param(path)
    (layer,) = [l for l in net.layer if l.name == "loss"]
    params = load_yaml(layer.python_param.param_str) or {}
    native = {"SigmoidFocalLoss": "SigmoidCrossEntropyLoss",
              "SoftmaxFocalLoss": "SoftmaxWithLoss"}[layer.python_param.layer]
    layer.type = native
    layer.ClearField("python_param")
    mode = str(params.get("normalization", "VALID")).upper()
    mode = "VALID" if mode == "POSITIVES" else mode
    layer.loss_param.normalization = caffe_pb2.LossParameter.NormalizationMode.Value(mode)
    if "axis" in params and native == "SoftmaxWithLoss":
        layer.softmax_param.axis = int(params["axis"])
    runner.write_net(path, net, f"baseline: the template's net with Caffe's native {native}")


def average_precision(scores, positives):
    """``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds; 0 without positives.

    The area under the precision-recall step curve, as scikit-learn's
    ``average_precision_score`` computes it (ties share one threshold).
    """
    scores, positives = np.ravel(scores), np.ravel(positives).astype(bool)
    if not positives.any():
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    scores, positives = scores[order], positives[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]   # last row of each distinct score
    tp = np.cumsum(positives)[last].astype(np.float64)
    precision, recall = tp / (last + 1.0), tp / positives.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def metrics(log_odds, positives):
    """Average precision of the rare class, and recall, precision and F1 at probability 0.5 (log-odds > 0)."""
    log_odds, pos = np.ravel(log_odds), np.ravel(positives) > 0.5
    pred = log_odds > 0
    tp = float(np.sum(pred & pos))
    recall = tp / max(float(pos.sum()), 1.0)
    precision = tp / max(float(pred.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"AP": average_precision(log_odds, pos), "F1": f1, "recall": recall, "precision": precision}


def evaluate_sigmoid(net, n_test):
    """Metrics over every test tile: the score is the rare digit's log-odds."""
    rows = forward_rows(net, ["score", "label"], n_test)
    return metrics(rows["score"], rows["label"]), {"scores": rows["score"], "targets": rows["label"]}


def evaluate_softmax(net, n_test):
    """Metrics over every test tile: the rare class's log-odds is ``score_1 - score_0``."""
    rows = forward_rows(net, ["score", "label"], n_test)
    n, tiles = rows["label"].shape
    score = rows["score"].reshape(n, 2, tiles)
    log_odds = (score[:, 1] - score[:, 0]).astype(np.float64)
    return metrics(log_odds, rows["label"]), {"scores": log_odds, "targets": rows["label"]}


def plan(out_dir, *, small=False, seeds=None):
    """Prepares both nets of both templates under ``out_dir`` (a new folder); returns the jobs."""
    variants = []
    for template, (_, short, _, _, evaluate_fn) in TASKS.items():
        common = dict(template=template, evaluate=f"{__name__}:{evaluate_fn}")
        variants += [runner.Variant(f"{short} ours", os.path.join(template, "ours"), **common),
                     runner.Variant(f"{short} baseline", os.path.join(template, "baseline"),
                                    edit_net=baseline_net, **common)]
    return runner.plan(FAMILY, out_dir, variants, small=small, seeds=seeds, small_iters=SMALL_ITERS)


def summarize(results, out_dir, *, small=False):
    """Result rows (AP of the rare class: the purpose; F1 at 0.5: the check) and the curves."""
    runs = runner.by_variant(results)
    rows, panels = [], []
    for template, (recipe, short, ours_layer, native, _) in TASKS.items():
        ours, base = runs[f"{short} ours"], runs[f"{short} baseline"]
        seeds = [r["job"].seed for r in ours]
        common = dict(family=FAMILY, recipe=f"{recipe} ({template})", loss=ours_layer,
                      baseline=f"{native} (native)", seeds=seeds, higher_is_better=True)
        rows += [
            report.paired_row(metric="average precision of the rare class (all test tiles)",
                              role="purpose", values=finals(ours, "AP"), baseline_values=finals(base, "AP"),
                              note="threshold-free: does the net rank the rare tiles first", **common),
            report.paired_row(metric="F1 of the rare class at probability 0.5", role="check",
                              values=finals(ours, "F1"), baseline_values=finals(base, "F1"),
                              note="the decision without a tuned threshold", **common),
        ]
        series = [(ours_layer, ours), (f"{native} (native), baseline", base)]
        panels += [{"title": f"{short}: average precision of the rare class (the purpose)", "metric": "AP",
                    "ylabel": "average precision", "better": "higher", "series": series,
                    "legend": "lower right"},
                   {"title": f"{short}: F1 at probability 0.5 (check)", "metric": "F1",
                    "ylabel": "F1 at 0.5", "better": "higher", "series": series, "legend": "lower right"}]
    curves = runner.plot_curves(panels, os.path.join(out_dir, "curves.png"), n_seeds=len(seeds),
                                title="Dense, imbalanced: focal loss vs native cross-entropy")
    return rows, [curves]
