"""What a loss family declares: the one place the rest of the package learns about it.

A family is a package ``caffe_losses/losses/<name>/`` with

* ``core.py``: the framework-free NumPy core, opening with its reference;
* ``layer.py``: the ``caffe.Layer`` adapters (reached as ``caffe_losses.<Layer>``);
* ``data.py`` and ``experiment.py``: its templates' data and its ``make demo`` recipe;
* ``__init__.py``: its :class:`Family` declaration, ``FAMILY``.

The registry (:mod:`caffe_losses.losses`) lists the families; ``migrate``,
``check``, the bench, the demo and the docs' tables read their declarations
and keep no per-loss table of their own.
"""

import dataclasses
import importlib

__all__ = ["Family"]


@dataclasses.dataclass(frozen=True)
class Family:
    """A loss family's declaration.

    Attributes:
      name: its package under ``caffe_losses.losses``.
      layers: the layer classes of its ``layer`` module, each reached from a
        prototxt as ``python_param { module: "caffe_losses" layer: "<name>" }``.
      docs: its page under ``docs/``.
      templates: its folders under ``prototxt_templates/``.
      demo: its name in ``caffe-losses demo --only`` (the recipe is its
        ``experiment`` module), or None.
      native: {our layer: the native Caffe layer type it stands in for}: what
        the bench and the demo compare it with.
    """

    name: str
    layers: tuple
    docs: str
    templates: tuple = ()
    demo: str = None
    native: dict = dataclasses.field(default_factory=dict)

    def module(self, part):
        """Its module ``part`` (``layer``, ``experiment``, ...), imported."""
        return importlib.import_module(f"caffe_losses.losses.{self.name}.{part}")
