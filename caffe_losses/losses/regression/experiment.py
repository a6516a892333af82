"""Age regression on the embedded synthetic faces: four recipes against a plain regression head.

Trains copies of the four ``prototxt_templates/age_*`` templates (their own
nets, data and Adam solver) for every solver seed:

1. ``age_sigmoid_smoothl1``: one output, Sigmoid, fixed Scale 99, SmoothL1Loss;
2. ``age_softmax_surgery``: the answer's Softmax + fixed Convolution 0..99 +
   EuclideanLoss, exactly as written; the fixed kernel is the one the
   ``net-surgery`` step of the template's ``prepare`` wrote;
3. ``age_expectation``: the Expectation layer on 100 bins + SmoothL1Loss, no surgery;
4. ``age_mean_variance``: MeanVarianceLoss on 100 bins (Pan et al.).

Each is judged by what it is for, the test mean absolute error in years,
against the baseline: the same trunk with a plain one-output linear head
(recipe 1's ``fc1`` without the Sigmoid and Scale) trained with Caffe's
native ``EuclideanLoss`` (its bias starting at the training mean age), by
the same solver and seeds.  The trivial
predictor (the training set's median age) is a reference line.
"""

import os

import numpy as np

from caffe_losses.losses.regression import data as age_data
from caffe_losses.experiments import report, runner
from caffe_losses.experiments.runner import finals
from caffe_losses.files.features import forward_rows
from caffe_losses.files.figures import pyplot, save_figure
from caffe_losses.nets.prototxt import read_net_param

__all__ = ["RECIPES", "BASELINE", "plan", "summarize", "evaluate", "baseline_net"]

FAMILY = "age"
# (template, the loss the net trains with, recipe description, short name)
RECIPES = (
    ("age_sigmoid_smoothl1", "SmoothL1Loss",
     "(1) 1 output, Sigmoid, fixed Scale 99", "(1) Sigmoid x 99"),
    ("age_softmax_surgery", "EuclideanLoss (native)",
     "(2) Softmax 100 bins, fixed Conv 0..99 by net-surgery (verbatim)", "(2) Softmax . 0..99 (surgery)"),
    ("age_expectation", "SmoothL1Loss (on Expectation)",
     "(3) Expectation over 100 bins, no surgery", "(3) Expectation layer"),
    ("age_mean_variance", "MeanVarianceLoss",
     "(4) label distribution over 100 bins (Pan et al.)", "(4) mean-variance"),
)
SURGERY_TEMPLATE = "age_softmax_surgery"   # its prepare step writes the fixed kernel of 'pred_age'
BASELINE = "EuclideanLoss (native), 1-output linear head"
BASELINE_TEMPLATE = "age_sigmoid_smoothl1"
SMALL_ITERS = 20


def baseline_net(path, mean_age):
    """Turns recipe (1)'s net at ``path`` into the plain regression baseline.

    ``fc1`` (one output) becomes ``pred_age`` directly: the Sigmoid and the
    fixed Scale go, and the loss is Caffe's native ``EuclideanLoss``.  The
    bias of ``fc1`` starts at ``mean_age`` (the training mean), the usual
    start of a regression head; the recipes' heads start mid-range by
    construction (a Sigmoid or a uniform softmax times 0..99 gives 49.5).
    """
    net = read_net_param(path)
    drop = {"pred01", "pred_age"}
    kept = [layer for layer in net.layer if layer.name not in drop]
    if len(kept) != len(net.layer) - 2:
        raise ValueError(f"{path}: expected layers 'pred01' and 'pred_age' to remove")
    del net.layer[:]
    net.layer.extend(kept)
    (fc1,) = [layer for layer in net.layer if layer.name == "fc1"]
    fc1.top[0] = "pred_age"
    fc1.inner_product_param.bias_filler.type = "constant"
    fc1.inner_product_param.bias_filler.value = float(mean_age)
    (loss,) = [layer for layer in net.layer if layer.name == "loss"]
    loss.type = "EuclideanLoss"
    loss.ClearField("python_param")
    del loss.loss_weight[:]            # the native loss's default weight, 1
    net.name = "age_euclidean_baseline"
    runner.write_net(path, net, f"baseline: {BASELINE_TEMPLATE}'s trunk and fc1 as a plain "
                                f"regression head, native EuclideanLoss")


def evaluate(net, n_test):
    """Test MAE (years) of a TEST net, and its predictions."""
    rows = forward_rows(net, ["pred_age", "true_age"], n_test)
    pred, truth = rows["pred_age"][:, 0], rows["true_age"][:, 0]
    return {"MAE": float(np.mean(np.abs(pred - truth)))}, {"pred": pred, "truth": truth}


def plan(out_dir, *, small=False, seeds=None):
    """Prepares the four recipes and the baseline under ``out_dir`` (a new folder); returns the jobs."""
    evaluate = f"{__name__}:evaluate"
    variants = [runner.Variant(template, template, template, evaluate, cost=2.0,
                               # the net-surgery output's fixed kernel, on each seed's own fillers
                               fixed_layers=("pred_age",) if template == SURGERY_TEMPLATE else ())
                for template, *_ in RECIPES]
    mean_age = float(_train_ages(small).mean())
    variants.append(runner.Variant("baseline", "baseline", BASELINE_TEMPLATE, evaluate, cost=2.0,
                                   edit_net=lambda path: baseline_net(path, mean_age)))
    return runner.plan(FAMILY, out_dir, variants, small=small, seeds=seeds, small_iters=SMALL_ITERS)


def _train_ages(small):
    return age_data.load_age("train", n=age_data.SMALL_TRAIN if small else age_data.N_TRAIN)[1]


def _trivial(small):
    _, y_test = age_data.load_age("test", n=age_data.SMALL_TEST if small else age_data.N_TEST)
    return age_data.trivial_mae(_train_ages(small), y_test)["median"]


def _plot_predictions(panels, trivial, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 4.1), squeeze=False)
    for ax, (name, result) in zip(axes[0], panels):
        pred, truth = result["arrays"]["pred"], result["arrays"]["truth"]
        ax.scatter(truth, pred, s=3, alpha=0.35)
        ax.plot([0, 99], [0, 99], color="k", lw=0.8)
        ax.set_xlim(0, 99)
        ax.set_ylim(-5, 104)
        ax.set_xlabel("true age")
        ax.set_ylabel("predicted age")
        ax.set_title(f"{name}\ntest MAE {result['final']['MAE']:.2f}", fontsize=8.5)
    seed = panels[0][1]["job"].seed
    fig.suptitle(f"Age on the synthetic faces' test split, seed {seed} (the trivial predictor, the "
                 f"training median, has MAE {trivial:.2f})", fontsize=10)
    return save_figure(fig, path, dpi=90)


def summarize(results, out_dir, *, small=False):
    """Result rows and figures from the jobs' results."""
    runs = runner.by_variant(results)
    base = runs["baseline"]
    seeds = [r["job"].seed for r in base]
    baseline_mae = finals(base, "MAE")
    rows, series = [], []
    for template, loss, recipe, short in RECIPES:
        ours = runs[template]
        rows.append(report.paired_row(
            family=FAMILY, recipe=recipe, loss=loss, baseline=BASELINE, metric="MAE in years",
            role="purpose", higher_is_better=False, seeds=seeds,
            values=finals(ours, "MAE"), baseline_values=baseline_mae,
            note=f"template {template}"))
        series.append((f"{short}: {loss}", ours))
    trivial = _trivial(small)
    rows.append(report.reference_row(family=FAMILY, recipe="trivial: the training set's median age",
                                     metric="MAE in years", value=trivial, higher_is_better=False,
                                     note="no training"))
    series.append((f"{BASELINE}, baseline", base))
    curves = runner.plot_curves(
        [{"title": "test MAE of each recipe and of the plain regression baseline",
          "metric": "MAE", "ylabel": "test MAE, years", "better": "lower", "series": series,
          "hline": (trivial, "trivial predictor (training median)"), "log": True,
          "legend": "upper right"}],
        os.path.join(out_dir, "curves.png"), n_seeds=len(seeds),
        title="Age regression on synthetic faces: four recipes vs a plain EuclideanLoss head")
    panels = [("baseline: 1-output linear head\nEuclideanLoss (native)", base[0])] + \
             [(f"{short}\n{loss}", runs[template][0]) for template, loss, _, short in RECIPES]
    scatter = _plot_predictions(panels, trivial, os.path.join(out_dir, "predictions.png"))
    return rows, [curves, scatter]
