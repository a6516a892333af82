"""The regression family's ``make bench`` rows (read by ``bench/run.py``; see
:class:`caffe_losses.losses.family.BenchCase`): ``SmoothL1Loss`` against native
``EuclideanLoss`` per layer, at N x C from 32 x 10 to 256 x 1000 (reported
only: no target)."""

import numpy as np

from caffe_losses.glue.netbuild import layer_net_text, native_loss, python_loss
from caffe_losses.losses.family import BenchCase


def layer_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    for n, c in [(4, 3)] if tiny else [(32, 10), (256, 10), (256, 100), (256, 1000)]:
        shapes = {"pred": (n, c), "target": (n, c)}
        data = {"pred": rng.randn(n, c).astype(np.float32), "target": rng.randn(n, c).astype(np.float32)}
        yield BenchCase("smoothl1", f"N={n} C={c}", n * c, "SmoothL1Loss", "EuclideanLoss (native)",
                        layer_net_text(shapes, python_loss("SmoothL1Loss", ["pred", "target"])),
                        layer_net_text(shapes, native_loss("EuclideanLoss", ["pred", "target"])), data)


def net_cases(tmp, tiny=False):
    return iter(())
