"""Features of a trained net: collect them, measure class compactness, draw them.

The library side of ``caffe-losses plot-features``
(:mod:`caffe_losses.cli.plot_features`), also used by the experiments (each
evaluates its test net with :func:`forward_rows`): run a net in the TEST
phase over its own test data, collect a 2-D feature blob with the labels
(:func:`evaluate`), compute the intra/inter ratio (:func:`intra_inter_ratio`:
the mean distance of a feature to its class mean over the mean distance
between class means; lower = more compact classes, independent of the
features' scale), and draw one scatter panel per net (:func:`draw_features`),
as in Wen et al. (ECCV 2016).
"""

import os

import h5py
import numpy as np

from caffe_losses.files.figures import pyplot, save_figure
from caffe_losses.nets.preflight import check_data_sources, in_phase, read_list_file
from caffe_losses.nets.prototxt import read_net_param, working_directory

# caffe (pycaffe) and matplotlib (optional, the demo extra) are imported inside the
# functions that use them: the CLI imports this module, and must run without either
# (tests/test_layout.py).

__all__ = ["load_net", "forward_rows", "collect_features", "evaluate", "intra_inter_ratio",
           "draw_features", "default_samples"]


# ---------------------------------------------------------------------------
# Nets and data
# ---------------------------------------------------------------------------


def _test_hdf5_sources(prototxt):
    """The ``source`` of every HDF5Data layer the TEST phase builds."""
    from caffe.proto import caffe_pb2
    return [layer.hdf5_data_param.source for layer in read_net_param(prototxt).layer
            if layer.type == "HDF5Data" and in_phase(layer, caffe_pb2.TEST)]


def _resolve_root(prototxt, root):
    """The folder to build the net in, so that its relative data paths exist."""
    if root is not None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"plot-features: --root {root!r} is not a folder")
        return os.path.abspath(root)
    sources = [s for s in _test_hdf5_sources(prototxt) if not os.path.isabs(s)]
    # exists, not isfile: a source that is there but not a regular file is named by check_data_sources
    if all(os.path.exists(s) for s in sources):
        return os.getcwd()
    here = os.path.dirname(os.path.abspath(prototxt))
    if all(os.path.exists(os.path.join(here, s)) for s in sources):
        return here
    missing = next(s for s in sources if not os.path.exists(s))
    raise FileNotFoundError(f"plot-features: {prototxt}: the TEST data source {missing!r} exists neither "
                            f"in the current folder nor next to the prototxt; run the template's "
                            f"prepare step (caffe-losses demo), or pass --root")


def default_samples(prototxt, root):
    """Rows of the TEST-phase HDF5Data source(s), or None (= one batch)."""
    base = _resolve_root(prototxt, root)
    total = 0
    for source in _test_hdf5_sources(prototxt):
        path = source if os.path.isabs(source) else os.path.join(base, source)
        files = read_list_file(path, f"plot-features: {prototxt}: HDF5Data source")
        for name in files:
            name = name if os.path.isabs(name) else os.path.join(base, name)
            with h5py.File(name, "r") as h5:
                first = next(iter(h5.keys()))
                total += h5[first].shape[0]
        break   # one data layer is enough
    return total or None


def load_net(prototxt, weights, *, root=None):
    """A TEST-phase ``caffe.Net`` with ``weights``, built where its data paths resolve."""
    import caffe
    for path, what in ((prototxt, "prototxt"), (weights, "weights")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"plot-features: {what} file not found: {path}")
    prototxt, weights = os.path.abspath(prototxt), os.path.abspath(weights)
    with working_directory(_resolve_root(prototxt, root)):
        # Caffe aborts on a missing data file and blocks on a FIFO: look first
        check_data_sources(read_net_param(prototxt), caffe.TEST)
        return caffe.Net(prototxt, caffe.TEST, weights=weights)


def forward_rows(net, names, samples=None):
    """Forward passes until ``samples`` rows (None: one batch); ``{blob: (rows, ...) array}``.

    Each named blob is flattened to one row per sample and keeps its dtype.
    The blobs of one forward belong together (prediction and label of the
    same rows), so the pairing holds even when ``samples`` is not a multiple
    of the batch size.
    """
    rows = {name: [] for name in names}
    seen = 0
    while True:
        net.forward()
        n = net.blobs[names[0]].data.shape[0]
        take = n if samples is None else min(n, samples - seen)
        for name in names:
            data = net.blobs[name].data
            rows[name].append(data.reshape(data.shape[0], -1)[:take].copy())
        seen += take
        if samples is None or seen >= samples:
            return {name: np.concatenate(parts) for name, parts in rows.items()}


def collect_features(net, feature="feature", label="label", samples=None):
    """Runs ``net`` forward until ``samples`` rows are seen; returns (features, labels).

    Args:
      net: a ``caffe.Net`` whose data layer produces ``feature`` and ``label``.
      feature: name of the N x 2 (or N x 2 x 1 x 1) blob.
      label: name of the label blob (N values).
      samples: number of rows; None means one batch.

    Returns:
      (features (samples, 2) float64, labels (samples,) int64).
    """
    return evaluate(net, feature, label, None, samples)[:2]


def evaluate(net, feature="feature", label="label", scores="ip2", samples=None):
    """:func:`collect_features` plus the accuracy of ``scores``' argmax (None: no scores).

    Returns:
      (features (samples, 2), labels (samples,), accuracy or None).
    """
    names = [feature, label] + ([scores] if scores else [])
    for name in names:
        if name not in net.blobs:
            raise ValueError(f"plot-features: the net has no blob {name!r}; blobs: {', '.join(net.blobs)}")
    rows = forward_rows(net, names, samples)
    feats, labels = rows[feature].astype(np.float64), rows[label]
    if feats.shape[1] != 2:
        raise ValueError(f"plot-features: blob {feature!r} has {feats.shape[1]} values per sample; "
                         f"expected a 2-D feature (N x 2)")
    if labels.shape[1] != 1:
        raise ValueError(f"plot-features: blob {label!r} has {labels.shape[1]} values per sample; "
                         f"expected one label per sample")
    labels = labels[:, 0].astype(np.int64)
    accuracy = float(np.mean(rows[scores].argmax(axis=1) == labels)) if scores else None
    return feats, labels, accuracy


# ---------------------------------------------------------------------------
# The metric and the figure
# ---------------------------------------------------------------------------

def intra_inter_ratio(features, labels):
    """Mean distance to the own class mean / mean distance between class means.

    ``m_j`` is the mean of the features of class j (classes present only).
    Intra = ``mean_i ||x_i - m_{y_i}||``; inter = mean over pairs ``j < k`` of
    ``||m_j - m_k||``.  The ratio is unchanged when all features are scaled,
    so nets whose features live at different scales can be compared.  Needs
    at least two classes.
    """
    x = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    classes, y_idx = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError("intra_inter_ratio: needs features of at least two classes")
    sums = np.zeros((classes.size, x.shape[1]))
    np.add.at(sums, y_idx, x)
    means = sums / np.bincount(y_idx)[:, None]
    intra = np.linalg.norm(x - means[y_idx], axis=1).mean()
    pair = np.linalg.norm(means[:, None, :] - means[None, :, :], axis=2)
    inter = pair[np.triu_indices(classes.size, 1)].mean()
    return float(intra / inter)


def draw_features(panels, path, *, suptitle="2-D features of the test set, coloured by class"):
    """Writes a PNG with one scatter panel per ``(features, labels, title)``.

    Points are coloured by class (tab10), class means are marked with the
    class number, and each panel's title adds the intra/inter ratio.
    """
    plt = pyplot()
    if not panels:
        raise ValueError("draw_features: no panels to draw")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels) + 1.2, 5.4), squeeze=False)
    cmap = plt.get_cmap("tab10")
    all_classes = np.unique(np.concatenate([np.asarray(p[1]).astype(np.int64) for p in panels]))
    for ax, (feats, labels, title) in zip(axes[0], panels):
        feats = np.asarray(feats, dtype=np.float64).reshape(len(labels), -1)
        labels = np.asarray(labels).astype(np.int64)
        for c in all_classes:
            sel = labels == c
            if not sel.any():
                continue
            color = cmap(int(c) % 10)
            ax.scatter(feats[sel, 0], feats[sel, 1], s=7, alpha=0.6, color=color, label=str(c),
                       edgecolors="none")
            m = feats[sel].mean(axis=0)
            ax.annotate(str(c), m, ha="center", va="center", fontsize=9, fontweight="bold",
                        bbox=dict(boxstyle="circle,pad=0.2", fc="white", ec=color, alpha=0.85))
        ratio = intra_inter_ratio(feats, labels) if np.unique(labels).size > 1 else float("nan")
        ax.set_title(f"{title}\nintra/inter distance ratio {ratio:.3f}", fontsize=11)
        ax.set_xlabel("feature[0]")
        ax.set_ylabel("feature[1]")
        ax.grid(alpha=0.3)
        ax.set_aspect("equal", adjustable="datalim")
    handles, names = axes[0][0].get_legend_handles_labels()
    legend = fig.legend(handles, names, title="class", loc="center right", markerscale=2.5, frameon=False)
    for h in legend.legend_handles if hasattr(legend, "legend_handles") else legend.legendHandles:
        h.set_alpha(1.0)
    fig.suptitle(suptitle, fontsize=12)
    return save_figure(fig, path, rect=(0, 0, 1 - 1.0 / fig.get_size_inches()[0], 1))
