"""Age regression on the embedded synthetic faces: the answer's two recipes and the Expectation layer.

Trains copies of the three ``prototxt_templates/age_*`` templates with
:func:`caffe_losses.training.train` (their own solvers, fixed seeds) and
reports each one's test mean absolute error against the trivial predictor,
the training set's median age (the constant with the least training MAE):

1. ``age_sigmoid_smoothl1``: one output, Sigmoid, fixed Scale 99, SmoothL1Loss;
2. ``age_softmax_surgery``: the answer's Softmax + fixed Convolution 0..99 +
   EuclideanLoss, exactly as written, trained from the ``net-surgery`` output;
3. ``age_expectation``: the Expectation layer on 100 bins + SmoothL1Loss, no surgery.

``run(out_dir)`` takes about a minute on two cores; ``small=True`` a few
seconds (the numbers then mean little).
"""

import os
import shutil
import sys

import numpy as np

from caffe_losses.prototxt import working_directory
from caffe_losses.data import age as age_data
from caffe_losses.templates import TEMPLATE_ROOT, load_template, prepare_template
from caffe_losses.training import train

__all__ = ["RECIPES", "run", "evaluate"]

# (template, the loss row's name, recipe description)
RECIPES = (
    ("age_sigmoid_smoothl1", "SmoothL1Loss",
     "(1) 1 output, Sigmoid, fixed Scale 99"),
    ("age_softmax_surgery", "EuclideanLoss (native)",
     "(2) Softmax 100 bins, fixed Conv 0..99 by net-surgery (verbatim)"),
    ("age_expectation", "Expectation + SmoothL1Loss",
     "(3) Expectation over 100 bins, no surgery"),
    ("age_mean_variance", "MeanVarianceLoss",
     "(4) label distribution over 100 bins (Pan et al.)"),
)
SMALL_ITERS = 20



def evaluate(net, n_rows):
    """(pred_age, true_age) over ``n_rows`` test rows of a TEST net (whole batches)."""
    batch = net.blobs["true_age"].data.shape[0]
    preds, truths = [], []
    for _ in range(-(-n_rows // batch)):
        net.forward()
        preds.append(net.blobs["pred_age"].data.reshape(-1).copy())
        truths.append(net.blobs["true_age"].data.reshape(-1).copy())
    return np.concatenate(preds)[:n_rows], np.concatenate(truths)[:n_rows]


def _figure(results, trivial, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4), squeeze=False)
    for ax, (name, pred, truth, mae) in zip(axes[0], results):
        ax.scatter(truth, pred, s=4, alpha=0.4)
        ax.plot([0, 99], [0, 99], color="k", lw=0.8)
        ax.set_xlim(0, 99)
        ax.set_ylim(0, 99)
        ax.set_xlabel("true age")
        ax.set_ylabel("predicted age")
        ax.set_title(f"{name}\ntest MAE {mae:.2f} (trivial {trivial:.2f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run(out_dir, *, small=False, progress=False):
    """Trains the three age templates; returns one result row per recipe.

    Args:
      out_dir: working folder; the templates are copied into it.
      small: tiny data and 20 iterations (structure checks only).
      progress: show progress bars on stderr.

    Returns:
      list of dicts with keys loss, recipe, metric, value (test MAE in
      years), baseline, baseline_value (the trivial predictor's test MAE),
      higher_is_better (False), claim, figure.
    """
    import caffe
    caffe.set_mode_cpu()
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rows, results = [], []
    for template, loss_name, recipe in RECIPES:
        folder = os.path.join(out_dir, template)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        shutil.copytree(os.path.join(TEMPLATE_ROOT, template), folder)
        meta = load_template(folder)
        prepare_template(folder, small=small)
        n_train, n_test = (age_data.SMALL_TRAIN, age_data.SMALL_TEST) if small else \
            (age_data.N_TRAIN, age_data.N_TEST)
        _, y_train = age_data.load_age("train", n=n_train)
        _, y_test = age_data.load_age("test", n=n_test)
        trivial = age_data.trivial_mae(y_train, y_test)["median"]
        with working_directory(folder):
            weights = meta.get("weights")
            history = train("solver.prototxt", weights=weights,
                            max_iter=SMALL_ITERS if small else None, progress=progress,
                            label=template, stream=sys.stderr)
            solver = history["solver"]
            pred, truth = evaluate(solver.test_nets[0], n_test)
        mae = float(np.mean(np.abs(pred - truth)))
        results.append((template, pred, truth, mae))
        rows.append({
            "loss": loss_name, "recipe": recipe, "metric": "test MAE (years)", "value": mae,
            "baseline": "trivial: training median age", "baseline_value": trivial,
            "higher_is_better": False,
            "claim": "reaches a test MAE well under the trivial predictor's",
        })
    figure = _figure(results, rows[0]["baseline_value"], os.path.join(out_dir, "age_predictions.png"))
    for row in rows:
        row["figure"] = figure
    return rows
