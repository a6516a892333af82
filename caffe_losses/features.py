"""The center-loss measures: how compact classes are in feature space, and the picture.

:func:`intra_inter_ratio` is the number the center-loss experiment judges
(lower = more compact classes, whatever the scale of the features);
:func:`draw_features` draws 2-D features coloured by class, one panel per
model, side by side (the figure of Wen et al., ECCV 2016).  Both are used by
``caffe-losses plot-features`` and by ``caffe-losses demo``.
"""

import os

import numpy as np

__all__ = ["intra_inter_ratio", "draw_features"]


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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
    fig.tight_layout(rect=(0, 0, 1 - 1.0 / fig.get_size_inches()[0], 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
