"""Toy segmentation with two small classes: DiceLoss against native SoftmaxWithLoss.

The template ``dice_segmentation`` (16 x 16 images, background, one large
rectangle, and two small classes, 2 x 2 dots and 1 x 4 bars, a few percent
of the pixels each) is trained with the same net, data and solver as
shipped:

* ``DiceLoss`` (softmax, a Dice per image and class, then their mean:
  MONAI's default), as in the template;
* the baseline: the same net with Caffe's native ``SoftmaxWithLoss``
  (``ignore_label: 255``, VALID), the per-pixel cross-entropy.

What the recipe is for: the Dice of the small classes (their mean, the
purpose), at an unchanged pixel accuracy (check); the Dice of the large
rectangle class is shown as the expected cost.  The Dice of a class is
computed over the whole test split from the arg-max prediction, the border
left out.
"""

import os

import numpy as np

from caffe_losses.experiments import report, runner
from caffe_losses.experiments.runner import finals
from caffe_losses.files.features import forward_rows
from caffe_losses.losses.dice.data import CLASS_NAMES, IGNORE_LABEL, NUM_CLASSES, SMALL_CLASSES

# caffe (pycaffe) is imported inside the functions that use it: the CLI imports this
# module, and must run without it (tests/test_layout.py).

__all__ = ["TEMPLATE", "plan", "summarize", "evaluate", "baseline_net", "class_dice"]

FAMILY = "dice"
TEMPLATE = "dice_segmentation"
SMALL_ITERS = 30
OURS = "DiceLoss"
BASELINE = "SoftmaxWithLoss (native)"


def baseline_net(path):
    """Replaces the Python Dice loss of the net at ``path`` by native SoftmaxWithLoss (ignore 255, VALID)."""
    runner.native_baseline(path, "SoftmaxWithLoss", f"baseline: {TEMPLATE} with Caffe's native SoftmaxWithLoss",
                           ignore_label=IGNORE_LABEL)


def class_dice(pred, label, num_classes=NUM_CLASSES, ignore_label=IGNORE_LABEL):
    """Hard Dice ``2 |pred = c and label = c| / (|pred = c| + |label = c|)`` per class, over all kept pixels.

    A class absent from both prediction and labels gets 1 (nothing to miss).
    """
    keep = label != ignore_label
    pred, label = pred[keep], label[keep]
    out = np.empty(num_classes)
    for c in range(num_classes):     # a handful of classes, once per evaluation
        p, g = pred == c, label == c
        total = p.sum() + g.sum()
        out[c] = 2.0 * np.sum(p & g) / total if total else 1.0
    return out


def evaluate(net, n_test):
    """Metrics of a TEST net over the test split: small-class Dice, pixel accuracy, rectangle Dice."""
    rows = forward_rows(net, ["score", "label"], n_test)
    scores = rows["score"].reshape(n_test, NUM_CLASSES, -1)
    pred = scores.argmax(axis=1).reshape(-1)
    label = rows["label"].reshape(-1).astype(np.int64)
    dice = class_dice(pred, label)
    keep = label != IGNORE_LABEL
    return ({"small-class Dice": float(dice[list(SMALL_CLASSES)].mean()),
             "pixel accuracy": float(np.mean(pred[keep] == label[keep])),
             "rectangle Dice": float(dice[1])},
            {"dice": dice})


def plan(out_dir, *, small=False, seeds=None):
    """Prepares both nets under ``out_dir`` (a new folder); returns the jobs."""
    common = dict(template=TEMPLATE, evaluate=f"{__name__}:evaluate", cost=0.5)
    return runner.plan(FAMILY, out_dir, [runner.Variant("ours", "ours", **common),
                                         runner.Variant("baseline", "baseline", edit_net=baseline_net,
                                                        **common)],
                       small=small, seeds=seeds, small_iters=SMALL_ITERS)


def summarize(results, out_dir, *, small=False):
    """Result rows and the curves figure from the jobs' results."""
    runs = runner.by_variant(results)
    ours, base = runs["ours"], runs["baseline"]
    seeds = [r["job"].seed for r in ours]
    small_names = " and ".join(CLASS_NAMES[c] + "s" for c in SMALL_CLASSES)
    recipe = f"toy segmentation, {small_names} a few % of the pixels each ({TEMPLATE})"
    common = dict(family=FAMILY, recipe=recipe, loss=OURS, baseline=BASELINE, seeds=seeds,
                  higher_is_better=True)
    rows = [
        report.paired_row(metric=f"mean Dice of the small classes ({small_names})", role="purpose",
                          values=finals(ours, "small-class Dice"),
                          baseline_values=finals(base, "small-class Dice"),
                          note="what Dice is for", **common),
        report.paired_row(metric="pixel accuracy", role="check", values=finals(ours, "pixel accuracy"),
                          baseline_values=finals(base, "pixel accuracy"), note="should not drop",
                          **common),
        report.paired_row(metric="Dice of the large rectangles", role="trade-off", expected="cost",
                          values=finals(ours, "rectangle Dice"),
                          baseline_values=finals(base, "rectangle Dice"),
                          note="every class weighs the same in the mean", **common),
    ]
    curves = runner.plot_curves(
        [{"title": f"mean Dice of the {small_names} (the purpose)", "metric": "small-class Dice",
          "ylabel": "small-class Dice", "better": "higher", "legend": "lower right",
          "series": [(OURS, ours), (f"{BASELINE}, baseline", base)]},
         {"title": "pixel accuracy (should not drop)", "metric": "pixel accuracy",
          "ylabel": "pixel accuracy", "better": "higher", "legend": "lower right",
          "series": [(OURS, ours), (f"{BASELINE}, baseline", base)]}],
        os.path.join(out_dir, "curves.png"), n_seeds=len(seeds),
        title=f"Toy segmentation ({TEMPLATE}): DiceLoss vs SoftmaxWithLoss")
    return rows, [curves]
