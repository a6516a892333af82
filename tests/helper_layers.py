"""Small Python layers used only by the foundation tests.

``HalfSquaredError`` is a correct ``LossLayer``; ``WrongBackward`` has a
deliberately wrong backward (gradient off by a factor 1.5) so the tests can
show that the gradient checker catches it.
"""

import numpy as np

from caffe_losses.glue.base import LossLayer
from caffe_losses.glue.params import Param, as_float, normalization_param


class HalfSquaredError(LossLayer):
    """``L = scale * sum (a - b)^2 / (2 norm)``; gradient ``scale (a - b) / norm``."""

    PARAMS = (Param("scale", as_float, 1.0, low=0, low_open=True),
              normalization_param("BATCH_SIZE"))
    BOTTOMS = ("a", "b")
    DIFF_BOTTOMS = (0, 1)

    def check_bottoms(self, bottom):
        self.require_same_count(bottom, 0, 1)

    def loss(self, bottom, top):
        self.diff = bottom[0].data - bottom[1].data.reshape(bottom[0].data.shape)
        n = bottom[0].data.shape[0]
        self.norm = {"BATCH_SIZE": n, "FULL": bottom[0].count, "VALID": bottom[0].count,
                     "NONE": 1}[self.params["normalization"]]
        return self.params["scale"] * float(np.sum(self.diff.astype(np.float64) ** 2)) / (2 * self.norm)

    def gradients(self, diffs, scale):
        g = scale * self.params["scale"] * self.diff / self.norm
        for i, diff in diffs.items():
            diff[...] = (g if i == 0 else -g).reshape(diff.shape)


class WrongBackward(HalfSquaredError):
    def gradients(self, diffs, scale):
        super().gradients(diffs, 1.5 * scale)


class OnlyFirstBottom(HalfSquaredError):
    """Back-propagates into 'a' only, like a loss into its label bottom."""

    DIFF_BOTTOMS = (0,)
