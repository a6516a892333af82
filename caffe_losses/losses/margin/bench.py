"""The margin family's ``make bench`` rows (read by ``bench/run.py``; see
:class:`caffe_losses.losses.family.BenchCase`).

Per layer: ``MarginProduct`` + native ``SoftmaxWithLoss`` against the pair it
replaces, ``InnerProduct`` (no bias) + ``SoftmaxWithLoss``, at face-recognition
sizes (N = 256, D = 512, C = 10,000: at most 1.3x).  End to end: LeNet++
(ydwen/caffe-face's MNIST net) with ``MarginProduct`` as its classifier against
the same net with ``InnerProduct`` (at most 2% more per iteration), and the
``margin_digits`` template (reported only).
"""

import numpy as np

from caffe_losses.glue.netbuild import E2E_TARGET, inputs, lenetpp, native_loss, net_text, swap_type
from caffe_losses.losses.family import BenchCase

OURS = "MarginProduct + SoftmaxWithLoss"
NATIVE = "InnerProduct (no bias) + SoftmaxWithLoss (native)"
TARGET = (1.3, "at most 1.3x InnerProduct (no bias) + SoftmaxWithLoss")


def margin_layer(bottom, classes, name="fc_margin", top="fc_margin", param_str=None):
    param_str = param_str or f"{{num_classes: {classes}, scale: 64, m2: 0.5}}"
    return (f'layer {{ name: "{name}" type: "Python" bottom: "{bottom}" bottom: "label" top: "{top}" '
            f'python_param {{ module: "caffe_losses" layer: "MarginProduct" param_str: "{param_str}" }} '
            f'param {{ lr_mult: 1 decay_mult: 1 }} }}')


def inner_product(bottom, classes, name="fc_margin", top="fc_margin"):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}" '
            f'inner_product_param {{ num_output: {classes} bias_term: false weight_filler {{ type: "xavier" }} }} }}')


def layer_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    for n, d, c in [(4, 8, 10)] if tiny else [(256, 512, 1000), (256, 512, 10000)]:
        shapes = {"x": (n, d), "label": (n,)}
        data = {"x": rng.randn(n, d).astype(np.float32), "label": rng.randint(0, c, n).astype(np.float32)}
        loss = native_loss("SoftmaxWithLoss", ["fc_margin", "label"])
        head = "force_backward: true\n" + inputs(shapes) + "\n"
        yield BenchCase("margin", f"N={n} D={d} C={c}", n * c, OURS, NATIVE,
                        head + margin_layer("x", c) + "\n" + loss + "\n",
                        head + inner_product("x", c) + "\n" + loss + "\n", data,
                        target=TARGET if (n, d, c) == (256, 512, 10000) else None)


def net_cases(tmp, tiny=False):
    rng = np.random.RandomState(0)
    batch, mnist = (2, 16) if tiny else (64, 28)
    body, shapes = lenetpp(batch, mnist)
    body = body[:-2]          # up to the 2-D feature ip1 (and its PReLU): the classifier is what differs
    data = {"data": rng.rand(*shapes["data"]).astype(np.float32),
            "label": rng.randint(0, 10, shapes["label"]).astype(np.float32)}
    loss = native_loss("SoftmaxWithLoss", ["fc_margin", "label"], name="softmax_loss", top="softmax_loss")
    yield BenchCase("LeNet++ margin", f"{batch}x1x{mnist}x{mnist}", 0, OURS, NATIVE,
                    net_text(shapes, body + [margin_layer("ip1", 10, param_str="{num_classes: 10, scale: 16, m2: 0.3}")], loss),
                    net_text(shapes, body + [inner_product("ip1", 10)], loss), data, E2E_TARGET)
    yield BenchCase("template margin_digits", "digits 8x8", 0, OURS, NATIVE, template="margin_digits")


def to_native(layer, keys):
    """MarginProduct -> the InnerProduct (no bias) it stands for: features in, C logits out."""
    new = swap_type(layer, "InnerProduct")
    del new.bottom[1:]
    new.inner_product_param.num_output = int(keys["num_classes"])
    new.inner_product_param.bias_term = False
    new.inner_product_param.weight_filler.type = "xavier"
    return new
