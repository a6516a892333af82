"""The sigmoid family's ``make bench`` rows (read by ``bench/run.py``; see
:class:`caffe_losses.losses.family.BenchCase`).

Per layer, at N x C from 32 x 10 to 256 x 1000: ``WeightedSigmoidCrossEntropyLoss``
against native ``SigmoidCrossEntropyLoss`` (target from N * C >= 256k: at
least 3x faster), and against the seed's weighted-sigmoid Python layer
(``tests/seed_layers.py``: never slower, at any size).  End to end: an HED-like
edge net, at most 2% more per iteration than native.
"""

import numpy as np

from caffe_losses.glue.netbuild import E2E_TARGET, LARGE, hed, layer_net_text, native_loss, net_text, python_loss
from caffe_losses.losses.family import BenchCase

OURS = "WeightedSigmoidCrossEntropyLoss"
NATIVE = "SigmoidCrossEntropyLoss"


def layer_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    for n, c in [(4, 3)] if tiny else [(32, 10), (256, 10), (256, 100), (256, 1000)]:
        size = f"N={n} C={c}"
        shapes = {"scores": (n, c), "target": (n, c)}
        data = {"scores": rng.randn(n, c).astype(np.float32) * 3,
                "target": (rng.rand(n, c) < 0.1).astype(np.float32)}
        target = (1 / 3, f"at least 3x faster than native {NATIVE}") if n * c >= LARGE else None
        yield BenchCase("sigmoid", size, n * c, OURS, f"{NATIVE} (native)",
                        layer_net_text(shapes, python_loss(OURS, ["scores", "target"], "{pos_weight: 5}")),
                        layer_net_text(shapes, native_loss(NATIVE, ["scores", "target"])), data, target)
        # the seed's layer (tests/seed_layers.py, on bench/run.py's path) sums without normalizing
        yield BenchCase("sigmoid vs seed", size, n * c, OURS, "seed 002 Python layer",
                        layer_net_text(shapes, python_loss(OURS, ["scores", "target"],
                                                           "{pos_weight: 5, normalization: NONE}")),
                        layer_net_text(shapes, python_loss("SigmoidCrossEntropyWeightLossLayer",
                                                           ["scores", "target"], '{"cls_weight": 5}',
                                                           module="seed_layers")),
                        data, (1.0, "never slower than the seed's layer"), memory=False)


def net_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    n, size = (1, 16) if tiny else (8, 128)
    body, shapes = hed(n, size)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": (rng.rand(*shapes["label"]) < 0.1).astype(np.float32)}
    yield BenchCase("HED-like", f"{n}x1x{size}x{size}", 0, OURS, NATIVE,
                    net_text(shapes, body, python_loss(OURS, ["score", "label"], "{pos_weight: 9}")),
                    net_text(shapes, body, native_loss(NATIVE, ["score", "label"])), data, E2E_TARGET)
