"""Rare positives: sigmoid cross-entropy with a positive weight against the plain loss.

Two templates, each trained as shipped and as a baseline (the same net, data
and solver with Caffe's native ``SigmoidCrossEntropyLoss``: the same loss
with all weights 1, and the template's normalization), for every solver seed:

* ``sigmoid_edges`` (edge maps, 9.6% positive pixels): ``pos_weight 9.47``
  (negatives / positives of the training set);
* ``sigmoid_multilabel`` (8 tags, 2% to 16% positive): one ``pos_weight``
  per tag, negatives / positives of that tag.

What the weight is for, and how it is judged: it makes the rare positives
count in training.  Whether the net then tells positives from negatives
better is measured by the **average precision** (the area under the
precision-recall curve; over all test pixels for the edges, per tag and
averaged over the tags for the multi-label task): it does not depend on a
threshold.  That matters here because a positive
weight also moves the scores up, so at the fixed threshold
``sigmoid(score) > 0.5`` it trades precision for recall whether or not the
net got better; a threshold picked on the plain net could do the same.  So
the average precision is the purpose row; the F1 at 0.5 is a check (the
decision a user gets without tuning a threshold); recall and precision at
0.5 are the trade-off, shown as the expected gain and cost.
"""

import os

import h5py
import numpy as np

from caffe_losses.losses.sigmoid import data
from caffe_losses.experiments import report, runner
from caffe_losses.experiments.runner import finals
from caffe_losses.files.features import forward_rows
from caffe_losses.files.figures import pyplot, save_figure
from caffe_losses.glue.params import load_yaml
from caffe_losses.nets.prototxt import read_net_param

# caffe (pycaffe) and matplotlib (optional, the demo extra) are imported inside the
# functions that use them: the CLI imports this module, and must run without either
# (tests/test_layout.py).

__all__ = ["TASKS", "plan", "summarize", "evaluate", "evaluate_per_tag", "metrics",
           "precision_recall", "average_precision", "baseline_net"]

FAMILY = "sigmoid"
OURS = "WeightedSigmoidCrossEntropyLoss"
BASELINE = "SigmoidCrossEntropyLoss (native)"
SMALL_ITERS = 10
# template -> (recipe text, short name, cost, evaluation function, how the metrics are averaged)
TASKS = {
    "sigmoid_edges": ("toy edges N x 1 x 32 x 32 (9.6% positive), pos_weight 9.47", "edges", 3.0,
                      "evaluate", "pooled over pixels"),
    "sigmoid_multilabel": ("toy 8-tag multi-label (2-16% positive), per-tag pos_weight 5.4-44", "tags", 1.0,
                           "evaluate_per_tag", "mean over the 8 tags"),
}


def baseline_net(path):
    """Replaces the weighted loss of ``path`` by Caffe's native SigmoidCrossEntropyLoss.

    The normalization of the template's ``param_str`` goes to ``loss_param``
    (the native layer reads it there); the weights are dropped.
    """
    from caffe.proto import caffe_pb2
    net = read_net_param(path)
    (layer,) = [l for l in net.layer if l.name == "loss"]
    params = load_yaml(layer.python_param.param_str) or {}
    layer.type = "SigmoidCrossEntropyLoss"
    layer.ClearField("python_param")
    mode = str(params.get("normalization", "BATCH_SIZE")).upper()
    layer.loss_param.normalization = caffe_pb2.LossParameter.NormalizationMode.Value(mode)
    runner.write_net(path, net, "baseline: the template's net with Caffe's native SigmoidCrossEntropyLoss")


def precision_recall(scores, positives):
    """Precision and recall at every distinct score threshold, highest threshold first.

    At the k-th distinct score from the top, everything scoring at least that
    much is called positive.  Ties share one threshold (no order among them).
    """
    scores, positives = np.ravel(scores), np.ravel(positives).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    scores, positives = scores[order], positives[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]   # last row of each distinct score
    tp = np.cumsum(positives)[last].astype(np.float64)
    called = last + 1.0
    return tp / called, tp / max(float(positives.sum()), 1.0)


def average_precision(scores, positives):
    """``sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds (R_0 = 0); 0 without positives.

    The area under the precision-recall step curve, as scikit-learn's
    ``average_precision_score`` computes it.
    """
    if not np.any(positives):
        return 0.0
    precision, recall = precision_recall(scores, positives)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def metrics(scores, targets, *, per_column=False):
    """Average precision, and recall, precision and F1 at sigmoid(score) > 0.5.

    Args:
      scores: logits, (N, K) (or any shape, with ``per_column=False``).
      targets: the same shape, positives > 0.5.
      per_column: False pools all elements (edge pixels); True computes each
        column (tag) alone and returns the means over the columns: a per-tag
        ``pos_weight`` moves each tag's scores differently, so a ranking
        pooled over tags would mix scales that the tags never compete on.

    The average precision is :func:`average_precision`; a column without
    positives counts 0.
    """
    if per_column:
        scores, targets = np.asarray(scores), np.asarray(targets)
        cols = [metrics(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
        return {key: float(np.mean([c[key] for c in cols])) for key in cols[0]}
    scores, pos = np.ravel(scores), np.ravel(targets) > 0.5
    pred = scores > 0                       # sigmoid(score) > 0.5
    tp = float(np.sum(pred & pos))
    recall = tp / max(float(pos.sum()), 1.0)
    precision = tp / max(float(pred.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    ap = average_precision(scores, pos)
    return {"AP": ap, "F1": f1, "recall": recall, "precision": precision}


def evaluate(net, n_test):
    """Metrics of a TEST net over the test split, pooled over pixels (see :func:`metrics`)."""
    rows = forward_rows(net, ["score", "label"], n_test)
    return metrics(rows["score"], rows["label"]), {"scores": rows["score"], "targets": rows["label"]}


def evaluate_per_tag(net, n_test):
    """As :func:`evaluate`, each tag alone, then the mean over the tags."""
    rows = forward_rows(net, ["score", "label"], n_test)
    return (metrics(rows["score"], rows["label"], per_column=True),
            {"scores": rows["score"], "targets": rows["label"]})


def plan(out_dir, *, small=False, seeds=None):
    """Prepares both nets of both templates under ``out_dir`` (a new folder); returns the jobs."""
    variants = []
    for template, (_, short, cost, evaluate_fn, _) in TASKS.items():
        common = dict(template=template, evaluate=f"{__name__}:{evaluate_fn}", cost=cost)
        variants += [runner.Variant(f"{short} ours", os.path.join(template, "ours"), **common),
                     runner.Variant(f"{short} baseline", os.path.join(template, "baseline"),
                                    edit_net=baseline_net, **common)]
    return runner.plan(FAMILY, out_dir, variants, small=small, seeds=seeds, small_iters=SMALL_ITERS)


def _plot_edges(out_dir, ours, base, path):
    """Test images, their edges and both nets' edge maps at sigmoid > 0.5 (first seed)."""
    plt = pyplot()
    with h5py.File(os.path.join(ours["job"].folder, "data", "test.h5"), "r") as f:
        images = f["data"][:4, 0]
    k, side = len(images), images.shape[-1]
    maps = [images, ours["arrays"]["targets"][:k].reshape(k, side, side),
            (base["arrays"]["scores"][:k] > 0).reshape(k, side, side),
            (ours["arrays"]["scores"][:k] > 0).reshape(k, side, side)]
    titles = ["test image", "target edges", "native, unweighted (baseline)", "weighted, pos_weight 9.47"]
    fig, axes = plt.subplots(k, 4, figsize=(7.4, 1.9 * k + 0.6))
    for i in range(k):
        for j in range(4):
            ax = axes[i, j]
            ax.imshow(maps[j][i], cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=8.5)
    fig.suptitle(f"Edges at sigmoid > 0.5, seed {ours['job'].seed}: the weighted net finds more of the "
                 f"edges,\nand marks more non-edge pixels too (the trade-off at a fixed threshold)",
                 fontsize=9)
    return save_figure(fig, path)


def _plot_pr(edges_pair, tags_pair, path):
    """Left: precision-recall curves of the edge nets (first seed), the 0.5 threshold marked.
    Right: average precision per tag of the tag nets (mean over the seeds)."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8))
    for label, result, style in edges_pair:
        scores = np.ravel(result["arrays"]["scores"])
        pos = np.ravel(result["arrays"]["targets"]) > 0.5
        precision, recall = precision_recall(scores, pos)
        precision, recall = np.r_[1.0, precision], np.r_[0.0, recall]
        m = metrics(scores, pos)
        line, = ax.plot(recall, precision, ls=style, lw=1.6, label=f"{label} (AP {m['AP']:.3f})")
        ax.plot([m["recall"]], [m["precision"]], "o", color=line.get_color(), ms=7,
                label=f"  at sigmoid > 0.5: recall {m['recall']:.2f}, precision {m['precision']:.2f}")
    ax.set_xlabel("recall of the edge pixels")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"edges: precision-recall on the test split (seed {edges_pair[0][1]['job'].seed})\n"
                 f"the weight moves the 0.5 operating point along the curve", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower left")
    tags = np.arange(data.NUM_TAGS)
    for k, (label, results) in enumerate(tags_pair):
        ap = [[metrics(r["arrays"]["scores"][:, t], r["arrays"]["targets"][:, t])["AP"] for t in tags]
              for r in results]
        runner.range_bars(bx, tags, ap, k=k, label=label)
    bx.set_xticks(tags)
    bx.set_xticklabels([f"{t}\n{p:.0%}" for t, p in zip(tags, data.TAG_PREVALENCE)])
    bx.set_xlabel("tag (and its share of positive samples)")
    bx.set_ylabel("average precision")
    bx.set_ylim(0, 1.15)
    bx.legend(fontsize=7.5, loc="upper left")
    bx.set_title(f"tags: average precision per tag on the test split\n(mean of {len(tags_pair[0][1])} "
                 f"seed(s); whiskers: range over the seeds)", fontsize=10)
    return save_figure(fig, path)


def summarize(results, out_dir, *, small=False):
    """Result rows and figures from the jobs' results."""
    runs = runner.by_variant(results)
    rows, panels = [], []
    for template, (recipe, short, _, _, averaged) in TASKS.items():
        ours, base = runs[f"{short} ours"], runs[f"{short} baseline"]
        seeds = [r["job"].seed for r in ours]
        common = dict(family=FAMILY, recipe=f"{recipe} ({template})", loss=OURS, baseline=BASELINE,
                      seeds=seeds, higher_is_better=True)
        rows += [
            report.paired_row(metric=f"average precision ({averaged})", role="purpose",
                              values=finals(ours, "AP"), baseline_values=finals(base, "AP"),
                              note="threshold-free: does the net rank positives higher", **common),
            report.paired_row(metric=f"F1 at sigmoid > 0.5 ({averaged})", role="check",
                              values=finals(ours, "F1"), baseline_values=finals(base, "F1"),
                              note="the decision without a tuned threshold", **common),
            report.paired_row(metric=f"recall at sigmoid > 0.5 ({averaged})", role="trade-off", expected="gain",
                              values=finals(ours, "recall"), baseline_values=finals(base, "recall"),
                              note="more positives found", **common),
            report.paired_row(metric=f"precision at sigmoid > 0.5 ({averaged})", role="trade-off", expected="cost",
                              values=finals(ours, "precision"), baseline_values=finals(base, "precision"),
                              note="more false positives", **common),
        ]
        series = [(OURS, ours), (f"{BASELINE}, baseline", base)]
        panels += [{"title": f"{short}: average precision (the purpose)", "metric": "AP",
                    "ylabel": "average precision", "better": "higher", "series": series,
                    "legend": "lower right"},
                   {"title": f"{short}: F1 at sigmoid > 0.5 (check)", "metric": "F1",
                    "ylabel": "F1 at 0.5", "better": "higher", "series": series, "legend": "lower right"}]
        if short == "edges":
            edges_pair = [(OURS, ours[0], "-"), (f"{BASELINE}, baseline", base[0], "--")]
            edges = _plot_edges(out_dir, ours[0], base[0], os.path.join(out_dir, "edge_maps.png"))
    curves = runner.plot_curves(panels, os.path.join(out_dir, "curves.png"), n_seeds=len(seeds),
                                title="Rare positives: WeightedSigmoidCrossEntropyLoss vs native "
                                      "SigmoidCrossEntropyLoss")
    tags_pair = [(OURS, runs["tags ours"]), (f"{BASELINE}, baseline", runs["tags baseline"])]
    pr = _plot_pr(edges_pair, tags_pair, os.path.join(out_dir, "precision_recall.png"))
    return rows, [curves, pr, edges]
