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

__all__ = ["Family", "ForkLayer", "ForkBlock", "BenchCase"]


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
      migrate: :class:`ForkLayer` rules, the layer types (a fork's, or Caffe's
        own) that ``caffe-losses migrate`` translates into this family's layers.
      fork_blocks: :class:`ForkBlock`, the ``LayerParameter`` fields its forks
        added to ``caffe.proto``, as ``migrate`` and ``check`` read them.
      movable: {block: {field: param_str key}}: the blocks Caffe ignores on a
        Python layer of this family, whose settings ``migrate`` moves into
        ``param_str`` (``loss_param`` is the engine's own).
      fork_keys: {a key the forks spell differently: (whose spelling, our key)}
        for the "did you mean" of a bad ``param_str``.
      lint: functions ``rule(ctx, layer)`` that ``caffe-losses check`` calls
        for every layer of a net (:mod:`caffe_losses.nets.lint`).
      weights: {our layer class: ``carry(label, params, stored)``} for ``migrate
        --weights``: ``stored`` is the ``.caffemodel``'s ``LayerParameter`` of a
        migrated layer of that class (its blobs may be edited in place);
        returns ``(report line, problem or None, changed)``.
      bench: True when it has a ``bench`` module: ``layer_cases(tmp, tiny)``
        and ``net_cases(tmp, tiny)``, each yielding :class:`BenchCase`, and
        optionally ``to_native(layer, keys)`` (see :attr:`BenchCase.template`).
    """

    name: str
    layers: tuple
    docs: str
    templates: tuple = ()
    demo: str = None
    native: dict = dataclasses.field(default_factory=dict)
    migrate: tuple = ()
    fork_blocks: tuple = ()
    movable: dict = dataclasses.field(default_factory=dict)
    fork_keys: dict = dataclasses.field(default_factory=dict)
    lint: tuple = ()
    bench: bool = False
    weights: dict = dataclasses.field(default_factory=dict)

    def module(self, part):
        """Its module ``part`` (``layer``, ``experiment``, ...), imported."""
        return importlib.import_module(f"caffe_losses.losses.{self.name}.{part}")


@dataclasses.dataclass(frozen=True)
class ForkLayer:
    """A layer type that ``migrate`` translates into one of the family's layers.

    Attributes:
      type: its ``type:`` in the prototxt (``"Python"`` for a fork's Python
        layer, then ``python`` names it).
      fork: who shipped it, as messages and ``docs/migrate.md`` name it
        (``"caffe-face's CenterLoss"``).
      convert: ``convert(ctx, layer) -> (our layer class, {param_str key:
        value})``; it calls ``ctx.problem(layer, message)`` for each setting it
        cannot express (then nothing is written) and appends to ``ctx.notes``.
      blocks: the ``LayerParameter`` blocks it reads (removed when migrated).
      hed: only under ``migrate --hed`` (a type Caffe also has natively).
      python: ``(module, layer)`` of the fork's Python layer when ``type`` is
        ``"Python"`` (its ``python_param``'s ``module`` and ``layer``; the
        block is replaced, and ``convert`` reads its ``param_str`` with
        :func:`caffe_losses.nets.rewrite.fork_param_str`).
      doc: one line, what ``migrate`` makes of it (Markdown), for the table
        of translations in ``docs/migrate.md`` (``make docs-migrate``).
    """

    type: str
    fork: str
    convert: object
    blocks: tuple = ()
    hed: bool = False
    python: tuple = None
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class ForkBlock:
    """A ``LayerParameter`` field a fork added, described as its ``caffe.proto`` declares it.

    Attributes:
      name: the field (``"center_loss_param"``).
      fork: whose (``"caffe-face's CenterLoss"``).
      message: its message type's name (``"CenterLossParameter"``).
      fields: ``(name, cpp type)`` or ``(name, "MESSAGE", BVLC message name)``
        for each of its fields: ``("num_output", "UINT32")``,
        ``("center_filler", "MESSAGE", "FillerParameter")``; cpp types as
        protobuf's ``FieldDescriptor.CPPTYPE_*`` (``FLOAT``, ``INT32``,
        ``UINT32``, ``BOOL``, ``STRING``, ``ENUM`` ...).
      repeated: the names of its repeated fields.
    """

    name: str
    fork: str
    message: str
    fields: tuple
    repeated: tuple = ()


@dataclasses.dataclass(frozen=True)
class BenchCase:
    """One row of ``make bench``: our layer (or net) against the native one, timed in the same run.

    A family's ``bench`` module yields them from ``layer_cases(tmp, tiny)``
    (timed by forward + backward of each net) and ``net_cases(tmp, tiny)``
    (timed by ``solver.step``); ``tmp`` is a folder for the files a case
    needs (H matrices ...), ``tiny`` asks for toy sizes (the smoke test).
    :mod:`caffe_losses.glue.netbuild` has the net text, bodies and shared
    targets to build them from.

    Attributes:
      label: the row's name (``"sigmoid"``, ``"LeNet, H=I"``); ``bench/run.py
        --only`` matches it.
      size: the input size as printed (``"N=256 C=1000"``).
      elements: the input's element count (a per-layer case).
      ours, native: what each side is, as printed.
      ours_net, native_net: each side's net prototxt text; its inputs are
        ``Input`` layers named as the keys of ``data``.  A per-layer net
        sets ``force_backward: true`` (``netbuild.layer_net_text``).
      data: {input blob: array} filled before timing (a side's net may
        lack some of them).
      target: ``(max ratio ours / native, text)`` or None (reported only).
      solver: a net case's solver prototxt without its ``net:`` line (None:
        ``netbuild.SOLVER``).
      template: a net case timed on a prepared copy of this folder of
        ``prototxt_templates/`` instead of ``ours_net``: its
        ``train_val.prototxt`` against the same net with each of our layers
        replaced by its native counterpart (``Family.native``; the family's
        ``bench`` module may define ``to_native(layer, keys)`` returning the
        native ``LayerParameter``, the layer itself to keep it, or None to
        remove it).
      memory: a per-layer case whose resident memory ``make bench`` reports
        (False for a second row of the same layer).
    """

    label: str
    size: str
    elements: int
    ours: str
    native: str
    ours_net: str = ""
    native_net: str = ""
    data: dict = dataclasses.field(default_factory=dict)
    target: tuple = None
    solver: str = None
    template: str = None
    memory: bool = True
