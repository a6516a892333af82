"""The training curve: the loss per iteration, and the test scores beside it."""

import numpy as np

from caffe_losses.files.figures import pyplot, save_figure


# the line printed when the training curve cannot be drawn
CURVE_EXTRA_NOTE = ("training curve not drawn: matplotlib is not installed "
                    "(pip install 'caffe-losses[demo]' to get it)")


def _test_series(tests):
    """From test results: {label: (iters, values)} of the weighted test loss and of the other outputs."""
    several = len({t["net"] for t in tests}) > 1
    losses, scores = {}, {}
    for t in tests:
        net = f"net #{t['net']} " if several else ""
        weighted = [t["loss_weights"][k] * v for k, v in t["outputs"].items() if t["loss_weights"][k]]
        if weighted:
            it, vals = losses.setdefault(f"test {net}loss", ([], []))
            it.append(t["iter"])
            vals.append(sum(weighted))
        for k, v in t["outputs"].items():
            if not t["loss_weights"][k]:
                it, vals = scores.setdefault(f"test {net}{k}", ([], []))
                it.append(t["iter"])
                vals.append(v)
    return losses, scores


SCORE_AXIS_01 = (-0.02, 1.02)


def score_axis(test_scores):
    """The y range of the test-output panel: 0 to 1 when every output lies there (accuracy,
    recall...), so that a 0.4-point wobble does not fill the panel; else the outputs' own range
    (padded), each series' minimum and maximum being printed in the legend."""
    values = np.array([v for _, vals in test_scores.values() for v in vals], dtype=float)
    values = values[np.isfinite(values)]
    if not values.size or (values.min() >= 0 and values.max() <= 1):
        return SCORE_AXIS_01
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    return lo - pad, hi + pad


def plot_curve(histories, path, *, title="Training loss", smooth=10):
    """Draws loss curves (``{label: history}`` or one history) to ``path``.

    One history with ``tests`` (from :func:`train`) also gets its test
    scores: the weighted test loss beside the training loss, and the other
    test outputs (accuracy...) on a second panel, from 0 to 1 when they all
    lie there (:func:`score_axis`), with each one's range in the legend.
    """
    plt = pyplot()
    test_losses, test_scores = {}, {}
    if "iters" in histories:
        test_losses, test_scores = _test_series(histories.get("tests") or [])
        histories = {"training loss": histories}
    rows = 2 if test_scores else 1
    fig, axes = plt.subplots(rows, 1, figsize=(7, 4 if rows == 1 else 6.5), sharex=True, squeeze=False)
    ax = axes[0][0]
    for label, h in histories.items():
        it, loss = np.asarray(h["iters"]), np.asarray(h["loss"], dtype=float)
        if not len(it):
            continue
        line, = ax.plot(it, loss, alpha=0.25)
        if len(loss) >= smooth > 1:
            kernel = np.ones(smooth) / smooth
            ax.plot(it[smooth - 1:], np.convolve(loss, kernel, mode="valid"), color=line.get_color(),
                    label=f"{label} (moving average of {smooth})")
        else:
            line.set_alpha(1.0)
            line.set_label(label)
    for label, (it, vals) in test_losses.items():
        ax.plot(it, vals, "o-", label=label)
    positive = [v for h in histories.values() for v in h["loss"] if v > 0]
    positive += [v for _, vals in test_losses.values() for v in vals if v > 0]
    if positive and max(positive) / max(min(positive), 1e-12) > 1e2:
        ax.set_yscale("log")
    ax.set_ylabel(("weighted loss" if test_losses else "weighted training loss") +
                  (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if test_scores:
        low = axes[1][0]
        for label, (it, vals) in test_scores.items():
            low.plot(it, vals, "o-", label=f"{label} ({min(vals):.4g} to {max(vals):.4g})")
        lo, hi = score_axis(test_scores)
        low.set_ylim(lo, hi)
        low.ticklabel_format(axis="y", useOffset=False, style="plain")
        low.set_ylabel("test net outputs" + (" (0 to 1)" if (lo, hi) == SCORE_AXIS_01 else ""))
        low.grid(alpha=0.3)
        low.legend()
    axes[-1][0].set_xlabel("iteration")
    return save_figure(fig, path)
