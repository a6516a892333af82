"""Net text for tests and the bench: ``Input`` layers, a loss layer, the usual bodies.

A family's ``bench`` module builds its :class:`~caffe_losses.losses.family.BenchCase`
from these (``bench/run.py`` times them); :func:`caffe_losses.glue.testing.layer_net_param`
takes its ``Input`` layers from :func:`inputs`.  The bodies are the nets the
end-to-end rows train: :func:`lenet`, :func:`lenetpp`, :func:`fcn`, :func:`hed`,
each returning ``(layers up to the scores, {input blob: shape})``.

The bench's shared settings live here too, so that each family's cases state
their targets in the same terms: :data:`E2E_TARGET`, :data:`LARGE`,
:data:`SOLVER`.
"""

from caffe_losses.files.hmatrix import save_h

__all__ = ["inputs", "input_layer", "python_loss", "native_loss", "layer_net_text", "net_text",
           "swap_type", "write_h", "conv", "act", "pool", "ip", "lenet", "lenetpp", "fcn", "hed",
           "E2E_TARGET", "LARGE", "SOLVER"]

E2E_TARGET = (1.02, "at most 2% more per iteration than native")
"""A net case's usual target: our loss costs at most 2% of an iteration more than the native one."""

LARGE = 256 * 1000
"""N * C from which the per-layer speed targets apply (smaller sizes are reported only)."""

SOLVER = ('base_lr: 0.001\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "fixed"\n'
          'max_iter: 100000000\ndisplay: 0\nsnapshot: 0\nsnapshot_after_train: false\n'
          'solver_mode: CPU\nrandom_seed: 1701\n')
"""The bench's solver settings for a net case (``bench/run.py`` adds the ``net:`` line)."""


def input_layer(name, shape):
    """One ``Input`` layer whose top ``name`` has ``shape``."""
    dims = " ".join(f"dim: {int(d)}" for d in shape)
    name = _quoted(name)
    return f'layer {{ name: {name} type: "Input" top: {name} input_param {{ shape {{ {dims} }} }} }}'


def _quoted(text):
    """``text`` as a prototxt string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def inputs(shapes):
    """The ``Input`` layers of ``{blob: shape}``, one per line."""
    return "\n".join(input_layer(name, shape) for name, shape in shapes.items())


def python_loss(layer, bottoms, param_str="", module="caffe_losses", name="loss", top="loss",
                loss_weight=1, extra=""):
    """A Python loss layer (``extra``: more ``LayerParameter`` fields, e.g. ``param { lr_mult: 0 }``)."""
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    return (f'layer {{ name: "{name}" type: "Python" {b} top: "{top}" python_param {{ '
            f'module: "{module}" layer: "{layer}" param_str: {_quoted(param_str)} }} {extra + " " if extra else ""}'
            f'loss_weight: {loss_weight} }}')


def native_loss(ltype, bottoms, extra="", name="loss", top="loss"):
    """A native loss layer of type ``ltype`` (``extra``: its parameter block, if any)."""
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    return f'layer {{ name: "{name}" type: "{ltype}" {b} top: "{top}" {extra} }}'


def layer_net_text(shapes, layer_text):
    """A per-layer net: ``force_backward``, the inputs, and one layer."""
    return "force_backward: true\n" + inputs(shapes) + "\n" + layer_text + "\n"


def net_text(shapes, body, loss=""):
    """An end-to-end net: the inputs, the body's layers, then ``loss`` (a layer's text, or nothing)."""
    return "\n".join([inputs(shapes)] + list(body) + ([loss] if loss else [])) + "\n"


def swap_type(layer, ltype):
    """A copy of the ``LayerParameter`` ``layer`` as a native layer of type ``ltype``
    (same name, bottoms, tops and weights; no ``python_param``)."""
    new = type(layer)()
    new.CopyFrom(layer)
    new.type = ltype
    new.ClearField("python_param")
    return new


def write_h(path, h):
    """Writes H as Caffe reads it (:func:`caffe_losses.files.hmatrix.save_h`); returns ``path``."""
    save_h(path, h)
    return path


# ---------------------------------------------------------------------------
# Layers and bodies
# ---------------------------------------------------------------------------

def conv(name, bottom, num, kernel, pad=0, stride=1, top=None):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top or name}" '
            f'convolution_param {{ num_output: {num} kernel_size: {kernel} pad: {pad} stride: {stride} '
            f'weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}')


def act(kind, name, blob):
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{blob}" top: "{blob}" }}'


def pool(name, bottom):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
            f'pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}')


def ip(name, bottom, num):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f'inner_product_param {{ num_output: {num} weight_filler {{ type: "xavier" }} '
            f'bias_filler {{ type: "constant" }} }} }}')


def lenet(batch, size):
    """BVLC's examples/mnist/lenet_train_test.prototxt, Input layers instead of LMDB; scores ``ip2``."""
    body = [conv("conv1", "data", 20, 5), pool("pool1", "conv1"), conv("conv2", "pool1", 50, 5),
            pool("pool2", "conv2"), ip("ip1", "pool2", 500), act("ReLU", "relu1", "ip1"),
            ip("ip2", "ip1", 10)]
    return body, {"data": (batch, 1, size, size), "label": (batch,)}


def lenetpp(batch, size):
    """The LeNet++ of ydwen/caffe-face's MNIST example: 6 convolutions, PReLU, a 2-D feature ``ip1``,
    scores ``ip2`` and their native softmax loss."""
    body = []
    bottom = "data"
    for stage, width in ((1, 32), (2, 64), (3, 128)):
        for k in (1, 2):
            name = f"conv{stage}_{k}"
            body += [conv(name, bottom, width, 5, pad=2), act("PReLU", f"prelu{stage}_{k}", name)]
            bottom = name
        body.append(pool(f"pool{stage}", bottom))
        bottom = f"pool{stage}"
    body += [ip("ip1", bottom, 2), act("PReLU", "prelu_fc1", "ip1"), ip("ip2", "ip1", 10),
             native_loss("SoftmaxWithLoss", ["ip2", "label"], name="softmax_loss", top="softmax_loss")]
    return body, {"data": (batch, 1, size, size), "label": (batch,)}


def fcn(batch, size, classes=21):
    """A small FCN: two 3x3 convolutions, a pool, 1x1 scores, a fixed bilinear 2x upsampling to ``score``."""
    body = [conv("conv1", "data", 16, 3, pad=1), act("ReLU", "relu1", "conv1"), pool("pool1", "conv1"),
            conv("conv2", "pool1", 32, 3, pad=1), act("ReLU", "relu2", "conv2"),
            conv("score_pool", "conv2", classes, 1),
            f'layer {{ name: "upscore" type: "Deconvolution" bottom: "score_pool" top: "score" '
            f'param {{ lr_mult: 0 }} convolution_param {{ num_output: {classes} group: {classes} '
            f'kernel_size: 4 stride: 2 pad: 1 bias_term: false weight_filler {{ type: "bilinear" }} }} }}']
    return body, {"data": (batch, 3, size, size), "label": (batch, 1, size, size)}


def hed(batch, size):
    """An HED-like edge net: two 3x3 convolutions and a 1x1 side output ``score`` of one channel."""
    body = [conv("conv1_1", "data", 16, 3, pad=1), act("ReLU", "relu1_1", "conv1_1"),
            conv("conv1_2", "conv1_1", 16, 3, pad=1), act("ReLU", "relu1_2", "conv1_2"),
            conv("score", "conv1_2", 1, 1)]
    return body, {"data": (batch, 3, size, size), "label": (batch, 1, size, size)}
