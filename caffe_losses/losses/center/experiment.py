"""Center loss vs softmax alone: LeNet++ with a 2-D feature on the 8 x 8 digits.

Trains ``prototxt_templates/center_loss_lenetpp`` as shipped (SoftmaxWithLoss
+ lambda * CenterLoss) and the baseline, the same net with the CenterLoss
layer removed (softmax alone), from the same data, solver and seeds.  What
center loss is for: compact classes in feature space.  On the 500 test
images it measures

* the intra/inter distance ratio of the 2-D test features (purpose): the
  mean distance of a feature to its class mean divided by the mean distance
  between class means (:func:`caffe_losses.files.features.intra_inter_ratio`).
  Class means are those of the test features themselves (the softmax net
  has no centers), and the ratio is scale-free, so the two nets compare
  fairly;
* the test accuracy (argmax of ``ip2``; check: it should not drop);

and draws both feature clouds side by side (``features.png``, first seed).
"""

import os

from caffe_losses.files import features
from caffe_losses.experiments import report, runner
from caffe_losses.experiments.runner import finals
from caffe_losses.nets.prototxt import read_net_param

__all__ = ["TEMPLATE", "plan", "summarize", "evaluate", "baseline_net"]

FAMILY = "center"
TEMPLATE = "center_loss_lenetpp"
SMALL_ITERS = 30
BASELINE = "SoftmaxWithLoss alone (native)"


def _center_layers(net):
    return [layer for layer in net.layer
            if layer.type == "Python" and layer.python_param.layer == "CenterLoss"]


def center_weight(path):
    """lambda: the ``loss_weight`` of the net's one CenterLoss layer."""
    centers = _center_layers(read_net_param(path))
    if len(centers) != 1:
        raise ValueError(f"{path}: expected one CenterLoss layer, found {len(centers)}")
    return float(centers[0].loss_weight[0]) if centers[0].loss_weight else 0.0


def baseline_net(path):
    """Removes the CenterLoss layer of the net at ``path`` (softmax alone)."""
    net = read_net_param(path)
    centers = _center_layers(net)
    if len(centers) != 1:
        raise ValueError(f"{path}: expected one CenterLoss layer, found {len(centers)}")
    net.layer.remove(centers[0])
    net.name = net.name + "_softmax_only"
    runner.write_net(path, net, f"baseline: {TEMPLATE} without its CenterLoss layer (softmax alone)")


def evaluate(net, n_test):
    """Intra/inter ratio of the 2-D test features and test accuracy; the features."""
    feats, labels, accuracy = features.evaluate(net, "feature", "label", "ip2", samples=n_test)
    return ({"intra/inter ratio": features.intra_inter_ratio(feats, labels), "accuracy": accuracy},
            {"features": feats, "labels": labels})


def plan(out_dir, *, small=False, seeds=None):
    """Prepares both nets under ``out_dir`` (a new folder); returns the jobs."""
    common = dict(template=TEMPLATE, evaluate=f"{__name__}:evaluate", cost=5.0)
    return runner.plan(FAMILY, out_dir, [runner.Variant("ours", "ours", **common),
                                         runner.Variant("baseline", "baseline", edit_net=baseline_net, **common)],
                       small=small, seeds=seeds, small_iters=SMALL_ITERS)


def summarize(results, out_dir, *, small=False):
    """Result rows and figures from the jobs' results."""
    runs = runner.by_variant(results)
    ours, base = runs["ours"], runs["baseline"]
    seeds = [r["job"].seed for r in ours]
    lam = center_weight(os.path.join(ours[0]["job"].folder, "train_val.prototxt"))
    name = f"softmax + {lam:g} x CenterLoss"
    common = dict(family=FAMILY, recipe=f"LeNet++ (2-D feature) on 8x8 digits, {name} ({TEMPLATE})",
                  loss="CenterLoss (+ SoftmaxWithLoss)", baseline=BASELINE, seeds=seeds)
    rows = [
        report.paired_row(metric="intra/inter distance ratio of the 2-D features", role="purpose",
                          higher_is_better=False,
                          values=finals(ours, "intra/inter ratio"),
                          baseline_values=finals(base, "intra/inter ratio"),
                          note="compact classes", **common),
        report.paired_row(metric="accuracy", role="check", higher_is_better=True,
                          values=finals(ours, "accuracy"),
                          baseline_values=finals(base, "accuracy"),
                          note="should not drop", **common),
    ]
    series = [(name, ours), (f"{BASELINE}, baseline", base)]
    curves = runner.plot_curves(
        [{"title": "intra/inter distance ratio of the test features (the purpose)",
          "metric": "intra/inter ratio", "ylabel": "intra/inter ratio", "better": "lower",
          "series": series, "legend": "upper right"},
         {"title": "test accuracy (should not drop)", "metric": "accuracy", "ylabel": "accuracy",
          "better": "higher", "series": series, "legend": "lower right"}],
        os.path.join(out_dir, "curves.png"), n_seeds=len(seeds),
        title=f"Center loss ({TEMPLATE}): {name} vs softmax alone")
    first_c, first_b = ours[0], base[0]
    figure = features.draw_features(
        [(first_c["arrays"]["features"], first_c["arrays"]["labels"],
          f"{name} (test accuracy {first_c['final']['accuracy']:.3f})"),
         (first_b["arrays"]["features"], first_b["arrays"]["labels"],
          f"softmax alone, baseline (test accuracy {first_b['final']['accuracy']:.3f})")],
        os.path.join(out_dir, "features.png"),
        suptitle=f"LeNet++ 2-D features of the {len(first_c['arrays']['labels'])} digits test images "
                 f"after {first_c['job'].max_iter} iterations (seed {first_c['job'].seed})")
    return rows, [curves, figure]
