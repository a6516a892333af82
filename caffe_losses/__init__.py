"""caffe-losses: exact, stable, loud loss layers for Caffe's Python layer.

Use a layer from a prototxt::

    layer {
      name: "loss" type: "Python"
      bottom: "fc8" bottom: "label" top: "loss"
      python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss"
                     param_str: "{source: H.binaryproto}" }
      loss_weight: 1   # Python layers get no default loss weight: keep this line
    }

The layer classes are imported lazily (PEP 562), so ``caffe_losses.core`` and
``caffe_losses.params`` work without pycaffe; touching a layer name imports
``caffe``.
"""

import importlib

__version__ = "0.1.0"

# layer class -> module under caffe_losses.layers
_LAYERS = {
    "SoftmaxWithInfogainLoss": "infogain",
    "InfogainLoss": "infogain",
    "Constant": "infogain",
    "WeightedSigmoidCrossEntropyLoss": "sigmoid",
    "SmoothL1Loss": "regression",
    "Expectation": "regression",
    "MeanVarianceLoss": "regression",
    "CenterLoss": "center",
}

__all__ = sorted(_LAYERS)


def __getattr__(name):
    module = _LAYERS.get(name)
    if module is None:
        raise AttributeError(f"module 'caffe_losses' has no attribute '{name}'. "
                             f"Layers: {', '.join(sorted(_LAYERS))}")
    value = getattr(importlib.import_module(f"caffe_losses.layers.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAYERS))
