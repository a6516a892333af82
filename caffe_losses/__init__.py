"""caffe-losses: exact, stable, loud loss layers for Caffe's Python layer.

Use a layer from a prototxt::

    layer {
      name: "loss" type: "Python"
      bottom: "fc8" bottom: "label" top: "loss"
      python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss"
                     param_str: "{source: H.binaryproto}" }
      loss_weight: 1   # Python layers get no default loss weight: keep this line
    }

The layer classes are imported lazily (PEP 562) from their families'
``layer`` modules (:mod:`caffe_losses.losses`), so the cores and
``caffe_losses.glue.params`` work without pycaffe; touching a layer name imports
``caffe``.
"""

from caffe_losses.losses import LAYERS

__version__ = "0.1.0"

__all__ = sorted(LAYERS)


def __getattr__(name):
    family = LAYERS.get(name)
    if family is None:
        raise AttributeError(f"module 'caffe_losses' has no attribute '{name}'. "
                             f"Layers: {', '.join(sorted(LAYERS))}")
    value = getattr(family.module("layer"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(LAYERS))
