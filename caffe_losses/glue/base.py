"""Shared machinery of the package's Caffe Python layers.

A layer subclass declares its ``PARAMS`` (a tuple of :class:`~caffe_losses.glue.params.Param`),
the names of its bottoms and tops, and implements three hooks::

    class MyLoss(LossLayer):
        PARAMS = (Param("sigma", as_float, 1.0, low=0, low_open=True),)
        BOTTOMS = ("pred", "target")
        DIFF_BOTTOMS = (0, 1)                     # bottoms with a real gradient

        def check_bottoms(self, bottom):          # from reshape, when a shape changes
            self.require_same_count(bottom, 0, 1)

        def loss(self, bottom, top):              # from forward
            pred, target = self.bottom_arrays(bottom)
            value, self.cache = core.my_loss_forward(pred, target, **self.params)
            return value

        def gradients(self, diffs, scale):        # from backward
            for i, diff in diffs.items():         # the DIFF_BOTTOMS Caffe asks for
                core.my_loss_backward(self.cache, scale=scale if i == 0 else -scale, out=diff)

The base class then takes care of what hand-written Python losses get wrong:

* ``param_str`` is parsed with ``yaml.safe_load`` against the schema; unknown
  keys, wrong types and ranges raise errors naming the layer class and key.
* the bottom and top counts are checked in ``setup``, with names.
* ``reshape`` (Caffe runs it before every forward) refuses an empty bottom,
  runs ``check_bottoms`` and reshapes the tops only when the bottom shapes
  change, and keeps the data arrays it fetched for the forward
  (``self.bottom_arrays``); a non-loss layer implements ``reshape_tops``.
* ``backward`` (the only one: layers implement ``gradients``) passes the loss
  weight Caffe writes into ``top[0].diff`` as ``scale`` (BVLC/caffe #5407:
  ``pyloss.py`` forgets it), asks only for the bottoms with
  ``propagate_down``, and writes a zero diff into label / weight bottoms when
  ``force_backward: true`` asks for one.
* a ``UserWarning`` is raised once per layer when its loss top has loss
  weight 0 and no later layer sends it a gradient: Caffe gives Python
  layers no default ``loss_weight``, so such a loss is computed but never
  trains the net.
* a NaN or inf loss is refused with an error naming the first non-finite
  input (or the overflow).
* errors name the layer as written in the prototxt (``[layer 'loss_bbox']``,
  or its top when it has no name) where Caffe tells a Python layer its name
  (the project's build does: ``tools/install_caffe.sh`` patches
  ``PythonLayer``); other builds give the class name alone.
"""

import functools
import warnings

import caffe

from caffe_losses.losses.common import check_finite, check_same_count, raise_non_finite
from caffe_losses.glue.params import parse_params
from caffe_losses.glue.fillers import fill
from caffe_losses.files.safety import BLOB_MAX_COUNT, check_allocation, overflows_float32

__all__ = ["PythonLayer", "LossLayer", "LossWeightWarning"]


class LossWeightWarning(UserWarning):
    """A Python loss layer whose top has loss weight 0 (it will not train)."""


def _names_the_layer(method):
    """Wraps a Caffe entry point: a ValueError/TypeError it raises gets the layer's prototxt name."""
    @functools.wraps(method)
    def entry(self, *args):
        try:
            return method(self, *args)
        except (ValueError, TypeError) as err:
            where = self.where()
            if where and err.args and isinstance(err.args[0], str) and not err.args[0].endswith(where):
                err.args = (f"{err.args[0]} {where}",) + err.args[1:]
            raise
    return entry


class PythonLayer(caffe.Layer):
    """Base of all package layers: params, bottom/top counts, messages."""

    PARAMS = ()
    BOTTOMS = ()             # names of required bottoms, in order
    OPTIONAL_BOTTOMS = ()    # names of optional trailing bottoms
    TOPS = ()
    OPTIONAL_TOPS = ()

    def __init_subclass__(cls, **kwargs):
        # each class's own entry points (the base's setup is decorated below);
        # an override that calls super() nests two wrappers, and the name is
        # added once (a message that already ends with it is left alone)
        super().__init_subclass__(**kwargs)
        for name in ("setup", "reshape", "forward", "backward"):
            if name in cls.__dict__:
                setattr(cls, name, _names_the_layer(cls.__dict__[name]))

    @property
    def owner(self):
        return type(self).__name__

    def where(self):
        """``[layer 'loss_bbox']`` (``[unnamed layer, top 'dsn3_loss']``), or '' when Caffe did not say.

        The project's Caffe sets ``layer_name`` and ``top_names`` before
        ``setup`` (HED's six unnamed losses of one class are told apart by
        their tops); other builds do not, and messages name the class alone.
        """
        name = getattr(self, "layer_name", None)
        if name:
            return f"[layer '{name}']"
        tops = getattr(self, "top_names", None)
        return f"[unnamed layer, top '{tops[0]}']" if tops else ""

    @_names_the_layer
    def setup(self, bottom, top):
        self.params = parse_params(self.owner, self.PARAMS, self.param_str)
        self._check_count("bottom", len(bottom), self.BOTTOMS, self.OPTIONAL_BOTTOMS)
        self._check_count("top", len(top), self.TOPS, self.OPTIONAL_TOPS)
        self._shapes = None          # the bottom shapes last checked
        self._bottom_data = None     # the bottoms' arrays, from reshape to the forward that follows
        self.layer_setup(bottom, top)

    def layer_setup(self, bottom, top):
        """Hook: one-time set-up after the params are parsed."""

    def _check_count(self, kind, got, required, optional):
        lo, hi = len(required), len(required) + len(optional)
        if not lo <= got <= hi:
            names = list(required) + [f"[{n}]" for n in optional]
            expected = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise ValueError(f"{self.owner}: expected {expected} {kind}(s) "
                             f"({', '.join(names) or 'none'}), got {got}")

    @_names_the_layer
    def reshape(self, bottom, top):
        # Caffe calls Reshape before every Forward, so this runs every
        # iteration: the bottoms are checked (and the tops reshaped) only when
        # their shapes change, and the data arrays fetched here (each pycaffe
        # ``.data`` builds a new array) serve the forward that
        # Caffe runs right after (Layer::Forward: Reshape, then Forward_cpu).
        # An empty bottom is refused first: pycaffe's .data of a blob with no
        # values aborts the process (Caffe allocates nothing for it).
        self.require_nonempty(bottom)
        data = tuple(bottom[i].data for i in range(len(bottom)))
        shapes = tuple(a.shape for a in data)
        if shapes != self._shapes:
            self.check_bottoms(bottom)
            self.reshape_tops(bottom, top)
            self._shapes = shapes
        self._bottom_data = data

    def bottom_arrays(self, bottom):
        """The bottoms' data arrays: those fetched by ``reshape``, else fetched now."""
        data, self._bottom_data = self._bottom_data, None
        if data is None or len(data) != len(bottom):
            data = tuple(bottom[i].data for i in range(len(bottom)))
        return data

    def check_bottoms(self, bottom):
        """Hook: check bottom shapes (raise through ``self.fail``); runs when they change."""

    def reshape_tops(self, bottom, top):
        """Hook: reshape the tops for these bottoms; runs when their shapes change."""
        raise NotImplementedError

    # -- helpers for check_bottoms ------------------------------------------
    def bottom_name(self, i):
        names = tuple(self.BOTTOMS) + tuple(self.OPTIONAL_BOTTOMS)
        return names[i] if i < len(names) else f"bottom[{i}]"

    def fail(self, message):
        raise ValueError(f"{self.owner}: {message}")

    def add_class_blob(self, num_classes, dim, what, filler, key):
        """Adds the layer's learnable ``num_classes x dim`` blob, filled by ``filler`` (None: zeros).

        ``what`` names it in messages (the centers, the class weights); one Caffe
        cannot hold, or memory cannot, is refused before it is allocated; a bad
        ``filler`` is refused naming ``key``.  Caffe saves it in snapshots and
        ``.caffemodel`` files and the solver updates it with the layer's ``param``.
        """
        count = num_classes * dim
        what = f"{what} ({num_classes} x {dim} float32, data and diff)"
        if count > BLOB_MAX_COUNT:
            self.fail(f"{what} would hold {count} values, more than a Caffe blob can ({BLOB_MAX_COUNT}): "
                      f"lower num_classes ({num_classes}) or the feature size ({dim})")
        check_allocation(2 * 4 * count, what, owner=self.owner)
        self.blobs.add_blob(num_classes, dim)
        try:
            self.blobs[len(self.blobs) - 1].data[...] = 0 if filler is None else fill((num_classes, dim), filler)
        except ValueError as err:
            self.fail(f"{key}: {err}")

    def require_same_count(self, bottom, i, j):
        check_same_count(self.owner, self.bottom_name(i), bottom[i].data.shape,
                         self.bottom_name(j), bottom[j].data.shape)

    def require_nonempty(self, bottom, indexes=None):
        """Refuses a bottom with no values (a batch of 0 samples, or 0 classes / channels).

        Caffe's own loss layers abort the process on one; this is a clear error instead.
        """
        for i in (range(len(bottom)) if indexes is None else indexes):
            if bottom[i].count == 0:     # (its .data would abort: Caffe allocates nothing)
                self.fail(f"bottom '{self.bottom_name(i)}' is empty (shape "
                          f"{tuple(bottom[i].shape)}): a batch of 0 samples, or 0 classes "
                          f"or channels; every dimension must be at least 1")

    def fail_non_finite(self, bottom, value, indexes=None, extra=()):
        """Called for a NaN/inf loss, or one beyond float32: names the bad input, or the overflow.

        Checking the scalar loss is free on good input; only a bad one pays for
        the scan of ``bottom[i]`` (i in ``indexes``, default all) and of
        the ``(description, array)`` pairs in ``extra`` (e.g. a layer's own blobs).
        """
        inputs = [(f"bottom '{self.bottom_name(i)}'", bottom[i].data)
                  for i in (range(len(bottom)) if indexes is None else indexes)] + list(extra)
        raise_non_finite(self.owner, value, inputs)

    def require_finite(self, bottom, i):
        check_finite(self.owner, f"bottom '{self.bottom_name(i)}'", bottom[i].data)


class LossLayer(PythonLayer):
    """Base of the loss layers: scalar top, loss-weight scaling, zero diffs."""

    TOPS = ("loss",)
    DIFF_BOTTOMS = (0,)   # bottoms that receive a real gradient

    def layer_setup(self, bottom, top):
        self._weight_checked = False
        self._weight_zero_seen = False

    def reshape_tops(self, bottom, top):
        top[0].reshape(1)
        self.reshape_extra_tops(bottom, top)

    def reshape_extra_tops(self, bottom, top):
        """Hook: reshape optional tops beyond the loss."""

    def forward(self, bottom, top):
        if not self._weight_checked:
            self._check_loss_weight(top)
        value = self.loss(bottom, top)
        if overflows_float32(value):
            # never hand Caffe a NaN/inf loss, nor one that its float32 top
            # would turn into inf: name the bad input (the check of the scalar
            # is free on good input; only a bad one is scanned)
            self.fail_non_finite(bottom, value)
        top[0].data[0] = value

    def _check_loss_weight(self, top):
        # Caffe writes the loss weight into the top's diff at set-up, and only
        # when it is non-zero: 0 there means no loss_weight on this top.  The
        # loss still trains if a later layer fed by it carries the weight (a
        # Power or Scale): that layer's backward writes its gradient into this
        # diff.  So a 0 is looked at again at the next forward, and only a TRAIN
        # net warns (a TEST net never runs backward; check lints both).
        if float(top[0].diff.flat[0]) != 0.0 or getattr(self, "phase", caffe.TRAIN) != caffe.TRAIN:
            self._weight_checked = True
        elif not self._weight_zero_seen:
            self._weight_zero_seen = True
        else:
            self._weight_checked = True
            warnings.warn(
                f"{self.owner}: its loss top has loss weight 0 and no later layer sends it a "
                f"gradient, so this loss is computed but does not train the net. Caffe gives "
                f"Python layers no default loss weight: add 'loss_weight: 1' to the layer in the "
                f"prototxt. {self.where()}".rstrip(), LossWeightWarning, stacklevel=3)

    def loss(self, bottom, top):
        """Hook: the loss, a Python float; ``self.bottom_arrays(bottom)`` gives the data."""
        raise NotImplementedError

    def gradients(self, diffs, scale):
        """Hook: write ``scale * dL/dbottom[i]`` into ``diffs[i]`` for every ``i`` in ``diffs``.

        ``diffs`` maps the indexes of the ``DIFF_BOTTOMS`` that Caffe asks for
        to their diff arrays (each in its bottom's own shape); ``scale`` is
        the loss weight.
        """
        raise NotImplementedError

    def backward_params(self):
        """Hook: after the bottoms' gradients, e.g. a layer's own blobs (CenterLoss's centers)."""

    def backward(self, top, propagate_down, bottom):
        # The only backward of the loss layers: they implement gradients().
        diffs = {}
        for i in range(len(bottom)):   # pycaffe's blob vectors index but do not iterate
            if not propagate_down[i]:
                continue
            if i in self.DIFF_BOTTOMS:
                diffs[i] = bottom[i].diff
            else:
                bottom[i].diff[...] = 0    # label / weight bottoms: asked for only under force_backward
        if diffs:
            self.gradients(diffs, float(top[0].diff.flat[0]))
        self.backward_params()
