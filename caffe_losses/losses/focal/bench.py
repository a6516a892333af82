"""The focal family's ``make bench`` rows (read by ``bench/run.py``; see
:class:`caffe_losses.losses.family.BenchCase`).

Per layer, at N x C from 32 x 10 to 256 x 1000 and at a detector's size (one
RetinaNet level: 2 images x 9 anchors x 20 classes x 32 x 32 for the sigmoid
form; 8 x 21 x 128 x 128 segmentation for the softmax form):
``SigmoidFocalLoss`` against native ``SigmoidCrossEntropyLoss`` and
``SoftmaxFocalLoss`` against native ``SoftmaxWithLoss``; from N * C >= 256k
the issue's target applies: at most 1.5x native.  End to end: the HED-like
edge net (sigmoid) and the small FCN (softmax), at most 2% more per iteration
than native; the two digit-grid templates, reported only.
"""

import numpy as np

from caffe_losses.glue.netbuild import (E2E_TARGET, LARGE, fcn, hed, layer_net_text, native_loss, net_text,
                                        python_loss, sizes)
from caffe_losses.losses.family import BenchCase

SIGMOID, SOFTMAX = "SigmoidFocalLoss", "SoftmaxFocalLoss"
SIGMOID_NATIVE, SOFTMAX_NATIVE = "SigmoidCrossEntropyLoss", "SoftmaxWithLoss"


def _target(elements, native):
    return (1.5, f"at most 1.5x native {native}") if elements >= LARGE else None


def layer_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    flat = [((n, c), f"N={n} C={c}") for n, c in sizes(tiny)]
    detector = ((1, 6, 4, 4), "N=1 C=6 4x4") if tiny else ((2, 180, 32, 32), "N=2 C=9x20 32x32")
    for shape, size in flat + [detector]:
        elements = int(np.prod(shape))
        shapes = {"scores": shape, "targets": shape}
        data = {"scores": rng.randn(*shape).astype(np.float32) * 3,
                "targets": (rng.rand(*shape) < 0.02).astype(np.float32)}
        yield BenchCase("focal sigmoid", size, elements, SIGMOID, f"{SIGMOID_NATIVE} (native)",
                        layer_net_text(shapes, python_loss(SIGMOID, ["scores", "targets"],
                                                           "{gamma: 2, alpha: 0.25, normalization: POSITIVES}")),
                        layer_net_text(shapes, native_loss(SIGMOID_NATIVE, ["scores", "targets"])),
                        data, _target(elements, SIGMOID_NATIVE))
    seg = ((1, 3, 8, 8), "N=1 C=3 8x8") if tiny else ((8, 21, 128, 128), "N=8 C=21 128x128")
    for shape, size in flat + [seg]:
        elements = int(np.prod(shape))
        label_shape = (shape[0],) + ((1,) + shape[2:] if len(shape) > 2 else ())
        shapes = {"scores": shape, "label": label_shape}
        data = {"scores": rng.randn(*shape).astype(np.float32) * 3,
                "label": rng.randint(0, shape[1], label_shape).astype(np.float32)}
        yield BenchCase("focal softmax", size, elements, SOFTMAX, f"{SOFTMAX_NATIVE} (native)",
                        layer_net_text(shapes, python_loss(SOFTMAX, ["scores", "label"], "{gamma: 2}")),
                        layer_net_text(shapes, native_loss(SOFTMAX_NATIVE, ["scores", "label"])),
                        data, _target(elements, SOFTMAX_NATIVE))


def net_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    n, size = (1, 16) if tiny else (8, 128)
    body, shapes = hed(n, size)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": (rng.rand(*shapes["label"]) < 0.1).astype(np.float32)}
    yield BenchCase("focal HED-like", f"{n}x1x{size}x{size}", 0, SIGMOID, SIGMOID_NATIVE,
                    net_text(shapes, body, python_loss(SIGMOID, ["score", "label"], "{gamma: 2}")),
                    net_text(shapes, body, native_loss(SIGMOID_NATIVE, ["score", "label"])), data, E2E_TARGET)
    body, shapes = fcn(n, size)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": rng.randint(0, 21, shapes["label"]).astype(np.float32)}
    yield BenchCase("focal FCN", f"{n}x3x{size}x{size}, 21 classes", 0, SOFTMAX, SOFTMAX_NATIVE,
                    net_text(shapes, body, python_loss(SOFTMAX, ["score", "label"], "{gamma: 2}")),
                    net_text(shapes, body, native_loss(SOFTMAX_NATIVE, ["score", "label"])), data, E2E_TARGET)
    for template in ("focal_digits_sigmoid", "focal_digits_softmax"):
        yield BenchCase(f"template {template}", "16x1x48x48", 0,
                        SIGMOID if "sigmoid" in template else SOFTMAX,
                        SIGMOID_NATIVE if "sigmoid" in template else SOFTMAX_NATIVE, template=template)
