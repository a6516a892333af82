"""The infogain family's ``make bench`` rows (read by ``bench/run.py``; see
:class:`caffe_losses.losses.family.BenchCase`).

Per layer, at N x C from 32 x 10 to 256 x 1000 and 8 x 21 x 128 x 128:
``SoftmaxWithInfogainLoss`` against native ``InfogainLoss`` (a random H; target
from N * C >= 256k: at least 3x faster) and, with H = I, against native
``SoftmaxWithLoss`` (at least 2x faster).  End to end: LeNet (H = I against
both, a full H) and a small FCN (class-weight and full H), at most 2% more per
iteration than native; the two digits templates, reported only.
"""

import os

import numpy as np

from caffe_losses.glue.netbuild import (E2E_TARGET, LARGE, fcn, layer_net_text, lenet, native_loss,
                                        net_text, python_loss, swap_type, write_h)
from caffe_losses.losses.family import BenchCase

NATIVE = "InfogainLoss"
OURS = "SoftmaxWithInfogainLoss"
TARGET = (1 / 3, "at least 3x faster than native InfogainLoss")
TARGET_EYE = (1 / 2, "at least 2x faster than native SoftmaxWithLoss")


def _ours(bottoms, h_path):
    return python_loss(OURS, bottoms, f"{{source: '{h_path}'}}")


def _native(bottoms, h_path):
    return native_loss(NATIVE, bottoms, f'infogain_loss_param {{ source: "{h_path}" }}')


def _layer_pair(tmp, tag, size, shapes, data, rng):
    """Both rows at one size: a random H against native InfogainLoss, H = I against SoftmaxWithLoss."""
    c = shapes["scores"][1]
    elements = int(np.prod(shapes["scores"]))
    hpath = write_h(os.path.join(tmp, f"H_{tag}.binaryproto"), rng.rand(c, c))
    ipath = write_h(os.path.join(tmp, f"I_{tag}.binaryproto"), np.eye(c))
    large = elements >= LARGE
    yield BenchCase("infogain", size, elements, OURS, "InfogainLoss (native)",
                    layer_net_text(shapes, _ours(["scores", "label"], hpath)),
                    layer_net_text(shapes, _native(["scores", "label"], hpath)),
                    data, TARGET if large else None)
    yield BenchCase("infogain H=I", size, elements, OURS, "SoftmaxWithLoss (native)",
                    layer_net_text(shapes, _ours(["scores", "label"], ipath)),
                    layer_net_text(shapes, native_loss("SoftmaxWithLoss", ["scores", "label"])),
                    data, TARGET_EYE if large else None)


def layer_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    for n, c in [(4, 3)] if tiny else [(32, 10), (256, 10), (256, 100), (256, 1000)]:
        data = {"scores": rng.randn(n, c).astype(np.float32) * 3,
                "label": rng.randint(0, c, n).astype(np.float32)}
        yield from _layer_pair(tmp, c, f"N={n} C={c}", {"scores": (n, c), "label": (n,)}, data, rng)
    # segmentation: classes on axis 1, one label per pixel
    n, c, hh = (1, 3, 8) if tiny else (8, 21, 128)
    shapes = {"scores": (n, c, hh, hh), "label": (n, 1, hh, hh)}
    data = {"scores": rng.randn(n, c, hh, hh).astype(np.float32),
            "label": rng.randint(0, c, (n, 1, hh, hh)).astype(np.float32)}
    yield from _layer_pair(tmp, "seg", f"N={n} C={c} {hh}x{hh}", shapes, data, rng)


def net_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    batch, mnist = (2, 16) if tiny else (64, 28)
    seg_n, seg_size = (1, 16) if tiny else (8, 128)

    body, shapes = lenet(batch, mnist)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": rng.randint(0, 10, shapes["label"]).astype(np.float32)}
    size = f"{batch}x1x{mnist}x{mnist}"
    eye = write_h(os.path.join(tmp, "I10.binaryproto"), np.eye(10))
    full = write_h(os.path.join(tmp, "H10.binaryproto"), 0.5 * np.eye(10) + 0.5 * rng.rand(10, 10))
    bottoms = ["ip2", "label"]
    for h_name, h_path, native_name, native_text in [
            ("H=I", eye, "SoftmaxWithLoss", native_loss("SoftmaxWithLoss", bottoms)),
            ("H=I", eye, NATIVE, _native(bottoms, eye)),
            ("full H", full, NATIVE, _native(bottoms, full))]:
        yield BenchCase(f"LeNet, {h_name}", size, 0, OURS, native_name,
                        net_text(shapes, body, _ours(bottoms, h_path)), net_text(shapes, body, native_text),
                        data, E2E_TARGET)

    classes = 21
    body, shapes = fcn(seg_n, seg_size, classes)
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": rng.randint(0, classes, shapes["label"]).astype(np.float32)}
    weights = np.diag(0.5 + rng.rand(classes))                       # class weights (imbalance)
    similar = weights @ np.exp(-3 * rng.rand(classes, classes))      # full: weights x similarity
    for h_name, h in (("class-weight H", weights), ("full H", similar)):
        path = write_h(os.path.join(tmp, f"seg_{h_name[0]}.binaryproto"), h)
        yield BenchCase(f"FCN, {h_name}", f"{seg_n}x{classes}x{seg_size}x{seg_size}", 0, OURS, NATIVE,
                        net_text(shapes, body, _ours(["score", "label"], path)),
                        net_text(shapes, body, _native(["score", "label"], path)), data, E2E_TARGET)

    # the tiny digits templates against the same prototxt with the native loss (reported only)
    yield BenchCase("template infogain_digits_source", "digits 8x8", 0, OURS, NATIVE,
                    template="infogain_digits_source")
    yield BenchCase("template infogain_digits_constant", "digits 8x8", 0, f"{OURS} (H bottom)",
                    f"{NATIVE} (H bottom)", template="infogain_digits_constant")


def to_native(layer, keys):
    """Our infogain loss as native ``InfogainLoss`` (H from ``source``, or the same third bottom);
    the ``Constant`` layer that feeds H as a bottom stays."""
    if layer.python_param.layer == "Constant":
        return layer
    new = swap_type(layer, NATIVE)
    if "source" in keys:
        new.infogain_loss_param.source = keys["source"]
    return new
