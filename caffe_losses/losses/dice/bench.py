"""The dice family's ``make bench`` rows (read by ``bench/run.py``; see
:class:`caffe_losses.losses.family.BenchCase`).

Per layer, at segmentation sizes (N x C x H x W up to 8 x 21 x 128 x 128):
``DiceLoss`` (softmax) against native ``SoftmaxWithLoss``, and the sigmoid form
on one channel against native ``SigmoidCrossEntropyLoss``; target from N x C
x H x W >= 256k: at most 1.5x the native time.  End to end: the small FCN
(softmax) and the HED-like edge net (sigmoid), at most 2% more per iteration
than native; the template ``dice_segmentation``, reported only.
"""

import numpy as np

from caffe_losses.glue.netbuild import (E2E_TARGET, LARGE, fcn, hed, layer_net_text, native_loss,
                                        net_text, python_loss, swap_type)
from caffe_losses.losses.family import BenchCase

OURS = "DiceLoss"
TARGET_SOFTMAX = (1.5, "at most 1.5x native SoftmaxWithLoss")
TARGET_SIGMOID = (1.5, "at most 1.5x native SigmoidCrossEntropyLoss")


def layer_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    sizes = [(1, 3, 8)] if tiny else [(8, 2, 64), (8, 5, 128), (8, 21, 128)]
    for n, c, hh in sizes:
        shapes = {"scores": (n, c, hh, hh), "label": (n, 1, hh, hh)}
        elements = n * c * hh * hh
        data = {"scores": rng.randn(*shapes["scores"]).astype(np.float32) * 3,
                "label": rng.randint(0, c, shapes["label"]).astype(np.float32)}
        yield BenchCase("dice", f"N={n} C={c} {hh}x{hh}", elements, OURS, "SoftmaxWithLoss (native)",
                        layer_net_text(shapes, python_loss(OURS, ["scores", "label"], "{}")),
                        layer_net_text(shapes, native_loss("SoftmaxWithLoss", ["scores", "label"])),
                        data, TARGET_SOFTMAX if elements >= LARGE else None)
    n, hh = (1, 8) if tiny else (8, 256)
    shapes = {"scores": (n, 1, hh, hh), "label": (n, 1, hh, hh)}
    data = {"scores": rng.randn(*shapes["scores"]).astype(np.float32) * 3,
            "label": (rng.rand(*shapes["label"]) < 0.1).astype(np.float32)}
    yield BenchCase("dice sigmoid", f"N={n} C=1 {hh}x{hh}", n * hh * hh, OURS,
                    "SigmoidCrossEntropyLoss (native)",
                    layer_net_text(shapes, python_loss(OURS, ["scores", "label"], "{activation: sigmoid}")),
                    layer_net_text(shapes, native_loss("SigmoidCrossEntropyLoss", ["scores", "label"])),
                    data, TARGET_SIGMOID if n * hh * hh >= LARGE else None)


def net_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    n, size, classes = (1, 16, 5) if tiny else (8, 128, 21)
    body, shapes = fcn(n, size, classes)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": rng.randint(0, classes, shapes["label"]).astype(np.float32)}
    yield BenchCase("FCN, Dice", f"{n}x{classes}x{size}x{size}", 0, OURS, "SoftmaxWithLoss",
                    net_text(shapes, body, python_loss(OURS, ["score", "label"], "{}")),
                    net_text(shapes, body, native_loss("SoftmaxWithLoss", ["score", "label"])),
                    data, E2E_TARGET)
    body, shapes = hed(n, size)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": (rng.rand(*shapes["label"]) < 0.1).astype(np.float32)}
    yield BenchCase("HED-like, Dice", f"{n}x1x{size}x{size}", 0, f"{OURS} (sigmoid)",
                    "SigmoidCrossEntropyLoss",
                    net_text(shapes, body, python_loss(OURS, ["score", "label"], "{activation: sigmoid}")),
                    net_text(shapes, body, native_loss("SigmoidCrossEntropyLoss", ["score", "label"])),
                    data, E2E_TARGET)
    yield BenchCase("template dice_segmentation", "16x16, 4 classes", 0, OURS, "SoftmaxWithLoss",
                    template="dice_segmentation")


def to_native(layer, keys):
    """``DiceLoss`` as the nearest native loss: ``SoftmaxWithLoss`` (or ``SigmoidCrossEntropyLoss``
    for ``activation: sigmoid``), with the same ignore label."""
    sigmoid = str(keys.get("activation", "softmax")).lower() == "sigmoid"
    new = swap_type(layer, "SigmoidCrossEntropyLoss" if sigmoid else "SoftmaxWithLoss")
    if keys.get("ignore_label") is not None:
        new.loss_param.ignore_label = int(keys["ignore_label"])
    return new
