"""Imbalanced digits: an inverse-frequency H against plain softmax.

The template ``infogain_digits_source`` (digits 3, 5 and 8 cut down to 8
training images each, about 130 for the others) is trained with the same
net, data and solver as shipped:

* ``SoftmaxWithInfogainLoss`` with H = diag(inverse class frequency),
  normalised so the mean weight over the training samples is 1;
* the baseline: the same net with Caffe's native ``SoftmaxWithLoss`` (what
  H = identity computes).

What the recipe is for: recall of the minority classes, at unchanged
accuracy.  Both nets are evaluated on the balanced test split (50 images
per class) for every solver seed: the minority-class recall (purpose), the
accuracy (check), and the recall of the other classes (the expected cost).
"""

import os

import numpy as np

from caffe_losses.losses.infogain.data import MINORITY, MINORITY_KEEP
from caffe_losses.experiments import report, runner
from caffe_losses.experiments.runner import finals
from caffe_losses.files.features import forward_rows
from caffe_losses.files.figures import pyplot, save_figure

# caffe (pycaffe) and matplotlib (optional, the demo extra) are imported inside the
# functions that use them: the CLI imports this module, and must run without either
# (tests/test_layout.py).

__all__ = ["TEMPLATE", "plan", "summarize", "evaluate", "baseline_net"]

FAMILY = "infogain"
TEMPLATE = "infogain_digits_source"
SMALL_ITERS = 30
OURS = "SoftmaxWithInfogainLoss"
BASELINE = "SoftmaxWithLoss (native)"


def baseline_net(path):
    """Replaces the Python infogain loss of the net at ``path`` by native SoftmaxWithLoss (VALID)."""
    runner.native_baseline(path, "SoftmaxWithLoss", f"baseline: {TEMPLATE} with Caffe's native SoftmaxWithLoss")


def _recalls(pred, label, num_classes=10):
    return np.array([np.mean(pred[label == c] == c) for c in range(num_classes)])


def evaluate(net, n_test):
    """Metrics of a TEST net over the test split: minority / other recall, accuracy."""
    rows = forward_rows(net, ["score", "label"], n_test)
    pred = rows["score"].argmax(axis=1)
    label = rows["label"][:, 0].astype(np.int64)
    recalls = _recalls(pred, label)
    others = [c for c in range(10) if c not in MINORITY]
    return ({"minority recall": float(recalls[list(MINORITY)].mean()),
             "accuracy": float(np.mean(pred == label)),
             "other recall": float(recalls[others].mean())},
            {"recalls": recalls})


def plan(out_dir, *, small=False, seeds=None):
    """Prepares both nets under ``out_dir`` (a new folder); returns the jobs."""
    common = dict(template=TEMPLATE, evaluate=f"{__name__}:evaluate", cost=0.3)
    return runner.plan(FAMILY, out_dir, [runner.Variant("ours", "ours", **common),
                                         runner.Variant("baseline", "baseline", edit_net=baseline_net, **common)],
                       small=small, seeds=seeds, small_iters=SMALL_ITERS)


def _plot_recalls(ours, base, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    classes = np.arange(10)
    for k, (name, results) in enumerate(((OURS, ours), (f"{BASELINE}, baseline", base))):
        runner.range_bars(ax, classes, [res["arrays"]["recalls"] for res in results], k=k, label=name)
    for c in MINORITY:
        ax.axvspan(c - 0.5, c + 0.5, color="0.9", zorder=0)
    ax.set_xticks(classes)
    ax.set_xlabel(f"digit (shaded: the minority classes, {MINORITY_KEEP} training images each)")
    ax.set_ylabel("test recall")
    ax.set_ylim(0, 1.3)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(loc="upper center", ncol=2, fontsize="small")
    ax.set_title(f"Imbalanced digits: per-class recall on the balanced test split\n"
                 f"(mean of {len(ours)} solver seed(s); whiskers: range over the seeds)", fontsize=10)
    return save_figure(fig, path)


def summarize(results, out_dir, *, small=False):
    """Result rows and figures from the jobs' results."""
    runs = runner.by_variant(results)
    ours, base = runs["ours"], runs["baseline"]
    seeds = [r["job"].seed for r in ours]
    recipe = (f"digits {'/'.join(map(str, MINORITY))} cut to {MINORITY_KEEP} training images, "
              f"inverse-frequency H ({TEMPLATE})")
    common = dict(family=FAMILY, recipe=recipe, loss=OURS, baseline=BASELINE, seeds=seeds,
                  higher_is_better=True)
    rows = [
        report.paired_row(metric="recall of the minority digits", role="purpose",
                          values=finals(ours, "minority recall"),
                          baseline_values=finals(base, "minority recall"),
                          note="what the reweighting is for", **common),
        report.paired_row(metric="accuracy (balanced test split)", role="check",
                          values=finals(ours, "accuracy"), baseline_values=finals(base, "accuracy"),
                          note="should not drop", **common),
        report.paired_row(metric="recall of the other digits", role="trade-off", expected="cost",
                          values=finals(ours, "other recall"), baseline_values=finals(base, "other recall"),
                          note="common classes weigh less", **common),
    ]
    curves = runner.plot_curves(
        [{"title": "recall of the minority digits 3, 5, 8 (the purpose)", "metric": "minority recall",
          "ylabel": "minority recall", "better": "higher", "legend": "lower right",
          "series": [(OURS, ours), (f"{BASELINE}, baseline", base)]},
         {"title": "accuracy on the balanced test split (should not drop)", "metric": "accuracy",
          "ylabel": "accuracy", "better": "higher", "legend": "lower right",
          "series": [(OURS, ours), (f"{BASELINE}, baseline", base)]}],
        os.path.join(out_dir, "curves.png"), n_seeds=len(seeds),
        title=f"Imbalanced digits ({TEMPLATE}): inverse-frequency H vs plain softmax")
    bars = _plot_recalls(ours, base, os.path.join(out_dir, "recall_per_class.png"))
    return rows, [curves, bars]
