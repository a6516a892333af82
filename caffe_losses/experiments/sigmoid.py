"""Rare positives: sigmoid cross-entropy with a positive weight against the plain loss.

Two templates, each trained twice with the same net, data, solver and seed:

* ``sigmoid_edges`` (edge maps, 9.6% positive pixels): ``pos_weight 9.47``
  (negatives / positives of the training set);
* ``sigmoid_multilabel`` (8 tags, 2% to 16% positive): one ``pos_weight``
  per tag, negatives / positives of that tag;

against Caffe's native ``SigmoidCrossEntropyLoss`` (the same loss with all
weights 1; the tests show the two layers equal there), with the template's
normalization.  Both are evaluated on the held-out split at the usual
threshold ``sigmoid(score) > 0.5``: recall of the positives, and precision and
F1, because a positive weight buys recall with false positives.
"""

import os
import shutil

import numpy as np

from caffe_losses.data import sigmoid as data
from caffe_losses.templates import TEMPLATE_ROOT
from caffe_losses.training import train

__all__ = ["run", "TASKS", "SEED"]

SEED = 1701
# template -> (prepare function, iterations (full, small), recipe text)
TASKS = {
    "sigmoid_edges": (data.prepare_edges, (600, 10),
                      "toy edges N x 1 x 32 x 32 (9.6% positive), pos_weight 9.47"),
    "sigmoid_multilabel": (data.prepare_multilabel, (1000, 10),
                           "toy 8-tag multi-label (2-16% positive), per-tag pos_weight 5.4-44"),
}


def _set_solver(path, **values):
    """Rewrites ``key: value`` lines of a solver prototxt (keeps its comments)."""
    with open(path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        key = line.split(":", 1)[0].strip()
        if key in values and not line.lstrip().startswith("#"):
            line = f"{key}: {values.pop(key)}"
        out.append(line)
    out += [f"{k}: {v}" for k, v in values.items()]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def baseline_net(path):
    """Replaces the weighted loss of ``path`` by Caffe's native SigmoidCrossEntropyLoss.

    The normalization of the template's ``param_str`` goes to ``loss_param``
    (the native layer reads it there); the weights are dropped.
    """
    import yaml
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    with open(path) as f:
        text_format.Merge(f.read(), net)
    (layer,) = [l for l in net.layer if l.name == "loss"]
    params = yaml.safe_load(layer.python_param.param_str) or {}
    layer.type = "SigmoidCrossEntropyLoss"
    layer.ClearField("python_param")
    mode = str(params.get("normalization", "BATCH_SIZE")).upper()
    layer.loss_param.normalization = caffe_pb2.LossParameter.NormalizationMode.Value(mode)
    with open(path, "w") as f:
        f.write("# baseline: the template's net with Caffe's native SigmoidCrossEntropyLoss\n")
        f.write(text_format.MessageToString(net))


def _scores(folder, max_iter, n_test, progress, label):
    """Trains the folder's solver; returns (test logits, test targets), flattened per sample."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        _set_solver("solver.prototxt", random_seed=SEED, max_iter=max_iter,
                    snapshot_after_train="false", test_interval=max_iter + 1)
        history = train("solver.prototxt", progress=progress, label=label)
        solver = history["solver"]
        net = solver.test_nets[0]
        net.share_with(solver.net)   # Caffe shares trained weights with a test net only when it tests
        batch = net.blobs["label"].data.shape[0]
        scores, labels = [], []
        for _ in range(int(np.ceil(n_test / batch))):
            net.forward()
            scores.append(net.blobs["score"].data.reshape(batch, -1).copy())
            labels.append(net.blobs["label"].data.reshape(batch, -1).copy())
        return np.concatenate(scores)[:n_test], np.concatenate(labels)[:n_test], history
    finally:
        os.chdir(cwd)


def metrics(scores, targets):
    """Recall, precision and F1 of the positives at sigmoid(score) > 0.5, pooled."""
    pred = scores > 0
    pos = targets > 0.5
    tp = float(np.sum(pred & pos))
    recall = tp / max(float(pos.sum()), 1.0)
    precision = tp / max(float(pred.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"recall": recall, "precision": precision, "f1": f1}


def _plot(examples, path):
    """Test images, their edges and both nets' predicted edge maps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    images, target, base, ours = examples
    k = len(images)
    fig, axes = plt.subplots(k, 4, figsize=(7, 1.9 * k))
    titles = ["test image", "target edges", "native (unweighted)", "weighted (pos_weight 9.47)"]
    for i in range(k):
        for j, arr in enumerate((images[i], target[i], base[i], ours[i])):
            ax = axes[i, j]
            ax.imshow(arr, cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
    fig.suptitle("Edges at sigmoid > 0.5: the positive weight finds more edges, and more false ones",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(out_dir, *, small=False, progress=False):
    """Trains both variants of both templates; returns the result rows.

    Args:
      out_dir: working folder (template copies, data, figure).
      small: a few iterations on tiny data (seconds; the numbers mean little).
      progress: show training progress bars.
    """
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    edge_maps = {}
    for template, (prepare, iters, recipe) in TASKS.items():
        max_iter = iters[1] if small else iters[0]
        results = {}
        for variant in ("weighted", "native"):
            folder = os.path.join(out_dir, template, variant)
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(os.path.join(TEMPLATE_ROOT, template), folder)
            info = prepare(folder, small=small)
            if variant == "native":
                baseline_net(os.path.join(folder, "train_val.prototxt"))
            scores, targets, _ = _scores(folder, max_iter, info["n_test"], progress,
                                         f"{template} {variant}")
            results[variant] = metrics(scores, targets)
            edge_maps[(template, variant)] = (scores, targets)
        ours, base = results["weighted"], results["native"]
        figure = None
        if template == "sigmoid_edges":
            import h5py
            with h5py.File(os.path.join(out_dir, template, "weighted", "data", "test.h5"), "r") as f:
                images = f["data"][:4, 0]
            side = images.shape[-1]
            s_ours, t = edge_maps[(template, "weighted")]
            s_base, _ = edge_maps[(template, "native")]
            shape = (-1, side, side)
            figure = _plot((images, t[:4].reshape(shape), (s_base[:4] > 0).reshape(shape),
                            (s_ours[:4] > 0).reshape(shape)),
                           os.path.join(out_dir, "sigmoid_edges.png"))
        common = {"loss": "WeightedSigmoidCrossEntropyLoss", "recipe": f"{recipe} ({template})",
                  "baseline": "SigmoidCrossEntropyLoss", "higher_is_better": True}
        rows.append(dict(common, metric="recall of positives (test, sigmoid > 0.5)",
                         value=ours["recall"], baseline_value=base["recall"],
                         claim=(f"the positive weight raises recall "
                                f"({base['recall']:.3f} -> {ours['recall']:.3f})"),
                         **({"figure": figure} if figure else {})))
        rows.append(dict(common, metric="precision of positives (test, sigmoid > 0.5)",
                         value=ours["precision"], baseline_value=base["precision"],
                         claim=(f"the price: more false positives, precision "
                                f"{base['precision']:.3f} -> {ours['precision']:.3f} "
                                f"(expected to drop)")))
        rows.append(dict(common, metric="F1 of positives (test, sigmoid > 0.5)",
                         value=ours["f1"], baseline_value=base["f1"],
                         claim=(f"F1 {base['f1']:.3f} -> {ours['f1']:.3f}: the balance of the "
                                f"two at the default threshold")))
    return rows
