"""The center family's ``make bench`` rows (read by ``bench/run.py``; see
:class:`caffe_losses.losses.family.BenchCase`).

Per layer: ``CenterLoss`` against native ``EuclideanLoss`` on the same data size
(reported only).  End to end: LeNet++ with ``SoftmaxWithLoss`` and
``CenterLoss`` against the same net without it (at most 2% more per
iteration), and the ``center_loss_lenetpp`` template (reported only).
"""

import numpy as np

from caffe_losses.glue.netbuild import E2E_TARGET, layer_net_text, lenetpp, native_loss, net_text, python_loss
from caffe_losses.losses.family import BenchCase

WITH = "SoftmaxWithLoss + CenterLoss"
WITHOUT = "SoftmaxWithLoss only"


def layer_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    for n, c in [(4, 3)] if tiny else [(32, 10), (256, 10), (256, 100), (256, 1000)]:
        data = {"feat": rng.randn(n, c).astype(np.float32), "label": rng.randint(0, 10, n).astype(np.float32),
                "target": rng.randn(n, c).astype(np.float32)}
        yield BenchCase("center", f"N={n} C={c}", n * c, "CenterLoss", "EuclideanLoss (native, same data size)",
                        layer_net_text({"feat": (n, c), "label": (n,)},
                                       python_loss("CenterLoss", ["feat", "label"], "{num_classes: 10}")),
                        layer_net_text({"feat": (n, c), "target": (n, c)},
                                       native_loss("EuclideanLoss", ["feat", "target"])), data)


def net_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    batch, mnist = (2, 16) if tiny else (64, 28)
    body, shapes = lenetpp(batch, mnist)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": rng.randint(0, 10, shapes["label"]).astype(np.float32)}
    ours = python_loss("CenterLoss", ["ip1", "label"], "{num_classes: 10, alpha: 0.5}", name="center_loss",
                       top="center_loss", loss_weight=0.01, extra="param { lr_mult: 0 decay_mult: 0 }")
    yield BenchCase("LeNet++", f"{batch}x1x{mnist}x{mnist}", 0, WITH, WITHOUT,
                    net_text(shapes, body, ours), net_text(shapes, body), data, E2E_TARGET)
    yield BenchCase("template center_loss_lenetpp", "digits 8x8", 0, WITH, WITHOUT,
                    template="center_loss_lenetpp")


def to_native(layer, keys):
    """The baseline is the same net without the center loss."""
    return None
