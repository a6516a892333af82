"""Imbalanced digits: an inverse-frequency H against plain softmax.

The template ``infogain_digits_source`` (digits 3, 5 and 8 cut down to 8
training images each, about 130 for the others) is trained twice with the
same net, data, solver and seeds:

* ``SoftmaxWithInfogainLoss`` with H = diag(inverse class frequency),
  normalised so the mean weight over the training samples is 1;
* Caffe's native ``SoftmaxWithLoss`` (the same as H = identity).

Both are evaluated on the balanced test split (50 images per class): recall
of the minority classes, of the others, and overall accuracy, averaged over
a few solver seeds (weight initialisation).
"""

import os
import shutil

import numpy as np

from caffe_losses.data.infogain import MINORITY, MINORITY_KEEP, prepare_source
from caffe_losses.templates import TEMPLATE_ROOT
from caffe_losses.training import train

__all__ = ["run", "TEMPLATE", "SEEDS"]

TEMPLATE = "infogain_digits_source"
SEEDS = (1701, 1702, 1703, 1704, 1705)


def _set_solver(path, **values):
    """Rewrites ``key: value`` lines of a solver prototxt (keeps its comments)."""
    with open(path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        key = line.split(":", 1)[0].strip()
        if key in values and not line.lstrip().startswith("#"):
            v = values.pop(key)
            line = f"{key}: {v}"
        out.append(line)
    out += [f"{k}: {v}" for k, v in values.items()]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def _baseline_net(path):
    """Replaces the Python infogain loss of ``path`` by native SoftmaxWithLoss."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    with open(path) as f:
        text_format.Merge(f.read(), net)
    (layer,) = [l for l in net.layer if l.name == "loss"]
    layer.type = "SoftmaxWithLoss"
    layer.ClearField("python_param")
    layer.loss_param.normalization = caffe_pb2.LossParameter.VALID
    with open(path, "w") as f:
        f.write("# baseline: the template's net with Caffe's native SoftmaxWithLoss\n")
        f.write(text_format.MessageToString(net))


def _evaluate(net, n_test, batch):
    """Predictions and labels of the whole test split through the TEST net."""
    preds, labels = [], []
    for _ in range(int(np.ceil(n_test / batch))):
        net.forward()
        preds.append(net.blobs["score"].data.argmax(axis=1).copy())
        labels.append(net.blobs["label"].data.ravel().astype(np.int64).copy())
    return np.concatenate(preds)[:n_test], np.concatenate(labels)[:n_test]


def _recalls(pred, label, num_classes=10):
    return np.array([np.mean(pred[label == c] == c) for c in range(num_classes)])


def _train_variant(folder, seed, max_iter, n_test, progress, label):
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        _set_solver("solver.prototxt", random_seed=seed, max_iter=max_iter,
                    stepvalue=int(max_iter * 0.75), snapshot_after_train="false",
                    test_interval=max_iter + 1)
        history = train("solver.prototxt", progress=progress, label=label)
        solver = history["solver"]
        test_net = solver.test_nets[0]
        # Caffe shares the trained weights with a test net only when it tests
        test_net.share_with(solver.net)
        batch = test_net.blobs["label"].data.shape[0]
        return _evaluate(test_net, n_test, batch), history
    finally:
        os.chdir(cwd)


def _plot(recalls, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    classes = np.arange(10)
    for k, (name, r) in enumerate(recalls.items()):
        ax.bar(classes + (k - 0.5) * 0.4, r, width=0.4, label=name)
    for c in MINORITY:
        ax.axvspan(c - 0.5, c + 0.5, color="0.9", zorder=0)
    ax.set_xticks(classes)
    ax.set_xlabel(f"digit (shaded: minority classes, {MINORITY_KEEP} training images each)")
    ax.set_ylabel("test recall")
    ax.set_ylim(0, 1.3)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(loc="upper center", ncol=2, fontsize="small")
    ax.set_title("Imbalanced digits: per-class recall on the balanced test split")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(out_dir, *, small=False, progress=False):
    """Trains both variants; returns the result rows (see caffe_losses.experiments).

    Args:
      out_dir: working folder (template copies, data, figure).
      small: a few iterations and one seed (seconds; the numbers mean little).
      progress: show training progress bars.
    """
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    seeds = SEEDS[:1] if small else SEEDS
    max_iter = 30 if small else 1600
    variants = {"SoftmaxWithInfogainLoss (inverse-frequency H)": "infogain",
                "SoftmaxWithLoss (native)": "softmax"}
    folders = {}
    for name, sub in variants.items():
        folder = os.path.join(out_dir, sub)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(os.path.join(TEMPLATE_ROOT, TEMPLATE), folder)
        n_test = prepare_source(folder, small=small)["n_test"]
        if sub == "softmax":
            _baseline_net(os.path.join(folder, "train_val.prototxt"))
        folders[name] = folder
    minority = list(MINORITY)
    recalls, accuracy, seed_minority = {}, {}, {}
    for name, folder in folders.items():
        per_seed, acc = [], []
        for seed in seeds:
            (pred, label), _ = _train_variant(folder, seed, max_iter, n_test, progress,
                                              f"{variants[name]} seed {seed}")
            per_seed.append(_recalls(pred, label))
            acc.append(np.mean(pred == label))
        recalls[name] = np.nanmean(per_seed, axis=0)
        accuracy[name] = float(np.mean(acc))
        seed_minority[name] = np.nanmean(np.asarray(per_seed)[:, minority], axis=1)
    ours, base = list(variants)
    wins = int(np.sum(seed_minority[ours] > seed_minority[base]))
    majority = [c for c in range(10) if c not in MINORITY]
    m_ours, m_base = float(recalls[ours][minority].mean()), float(recalls[base][minority].mean())
    j_ours, j_base = float(recalls[ours][majority].mean()), float(recalls[base][majority].mean())
    figure = _plot(recalls, os.path.join(out_dir, "infogain_recall.png"))
    recipe = (f"digits {'/'.join(map(str, MINORITY))} cut to {MINORITY_KEEP} train images, "
              f"inverse-frequency H")
    seeds_note = f"mean of {len(seeds)} solver seed(s)"
    wins_note = f"higher in {wins} of {len(seeds)} seed(s)"
    return [
        {"loss": "SoftmaxWithInfogainLoss", "recipe": recipe,
         "metric": "minority-class recall (balanced test)", "value": m_ours,
         "baseline": "SoftmaxWithLoss", "baseline_value": m_base, "higher_is_better": True,
         "claim": (f"an inverse-frequency H raises the recall of the minority digits "
                   f"({m_base:.3f} -> {m_ours:.3f}; the other digits {j_base:.3f} -> "
                   f"{j_ours:.3f}); {seeds_note}, {wins_note}"),
         "figure": figure},
        {"loss": "SoftmaxWithInfogainLoss", "recipe": recipe,
         "metric": "accuracy (balanced test)", "value": accuracy[ours],
         "baseline": "SoftmaxWithLoss", "baseline_value": accuracy[base], "higher_is_better": True,
         "claim": (f"on a balanced test split the reweighting also raises overall accuracy "
                   f"({accuracy[base]:.3f} -> {accuracy[ours]:.3f}); {seeds_note}")},
    ]
