"""Figures: the one way the package gets pyplot and writes a figure.

matplotlib is an optional dependency (the ``demo`` extra), so it is imported
inside these functions: the package, and every command that draws nothing,
runs without it.  Where a figure's path is checked before the work that
draws it, see :func:`caffe_losses.files.safety.figure_output`.
"""

import os

__all__ = ["pyplot", "save_figure"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, *, dpi=100, rect=None):
    """Lays out ``fig`` (``tight_layout(rect=rect)``), writes it to ``path`` (making its folder), closes it.

    Returns:
      ``path``.
    """
    fig.tight_layout(**({} if rect is None else {"rect": rect}))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
