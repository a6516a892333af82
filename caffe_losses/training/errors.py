"""Errors of a training run, each naming the prototxt layer it came from.

:class:`TrainingError` is what ``caffe-losses train`` prints in one line;
:func:`_layer_error` turns an exception raised inside Caffe by a Python layer
into one that names the layer as the prototxt writes it (:class:`_LayerNames`),
with its bottoms named as the net names them (:func:`with_blob_names`);
:func:`_warnings_to` does the same for warnings.
"""

import contextlib
import re
import signal
import sys
import traceback
import warnings

# caffe (pycaffe) is imported inside the functions that use it: the CLI
# imports this module, and must run without pycaffe to say that it is missing.


class TrainingError(Exception):
    """Training could not start or go on; the message is one line for the user.

    ``details`` holds a traceback when the error came from a user's own layer
    code (where it helps), else None.
    """

    def __init__(self, message, details=None):
        super().__init__(message)
        self.details = details


class StoppedAgain(KeyboardInterrupt):
    """A second Ctrl-C or SIGTERM stopped training at once; the message says what was saved."""

    def __init__(self, message, signum=signal.SIGINT):
        super().__init__(message)
        self.message, self.signum = message, signum


class _LayerNames:
    """Finds which prototxt layer a running Python layer object is.

    Once the nets exist, by identity (``net.layers[i]`` is the Python object
    Caffe created); while they are being built, by the layer's class and
    ``param_str`` in the parsed prototxts.
    """

    def __init__(self, nets):
        self.nets = nets           # [(where, NetParameter, phase)]
        self.live = {}             # id(layer object) -> (where, name)

    def add_solver(self, solver, wheres):
        import caffe
        for net, where in zip([solver.net] + list(solver.test_nets), wheres):
            for i, name in enumerate(net._layer_names):
                layer = net.layers[i]
                if type(layer) is not caffe.Layer:      # a Python layer: the object Caffe holds
                    self.live[id(layer)] = (where, name)

    def describe(self, layer):
        """``("train_val.prototxt", "layer 'loss'")`` for a layer object, or None."""
        if id(layer) in self.live:
            where, name = self.live[id(layer)]
            return where, f"layer '{name}'"
        cls, param_str = type(layer).__name__, getattr(layer, "param_str", None)
        found = []
        for where, net, _ in self.nets:
            for spec in net.layer:
                if (spec.type == "Python" and spec.python_param.layer == cls
                        and spec.python_param.param_str == param_str):
                    key = (spec.name or (spec.top[0] if len(spec.top) else ""), where)
                    if key not in found:
                        found.append(key)
        if not found:
            return None
        names = " or ".join(sorted({f"'{name}'" for name, _ in found}))
        return ", ".join(sorted({where for _, where in found})), f"layer {names}"

    def spec(self, layer):
        """The ``LayerParameter`` of a layer object, when it is known for sure (else None)."""
        if id(layer) in self.live:
            where, name = self.live[id(layer)]
            found = [spec for w, net, _ in self.nets if w == where for spec in net.layer if spec.name == name]
        else:
            cls, param_str = type(layer).__name__, getattr(layer, "param_str", None)
            found = [spec for _, net, _ in self.nets for spec in net.layer
                     if spec.type == "Python" and spec.python_param.layer == cls
                     and spec.python_param.param_str == param_str]
        bottoms = {tuple(spec.bottom) for spec in found}
        return found[0] if len(bottoms) == 1 else None

    def describe_module(self, module):
        """The layers whose ``python_param { module }`` is ``module`` (an import failed)."""
        found = [(spec.name, where) for where, net, _ in self.nets for spec in net.layer
                 if spec.type == "Python" and spec.python_param.module == module]
        if not found:
            return None
        return ", ".join(sorted({w for _, w in found})), \
            "layer " + " or ".join(sorted({f"'{n}'" for n, _ in found}))


def _caffe_layer_in(frames):
    """The innermost ``self`` among ``frames`` that is a ``caffe.Layer`` (a Python layer), or None."""
    import caffe
    found = None
    for frame in frames:
        obj = frame.f_locals.get("self")
        if isinstance(obj, caffe.Layer):
            found = obj
    return found


def _traceback_frames(err):
    tb, frames = err.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def with_blob_names(message, layer, spec):
    """A layer's message with its bottoms named as the net names them, not by their role.

    The layers name a bottom by its role (``bottom 'scores'``); in a net whose
    blob is ``score``, the message says ``bottom 'score'``.  Caffe tells a
    Python layer its name and tops (the project's build) but not its bottoms,
    so the names come from the prototxt's layer.
    """
    roles = tuple(getattr(layer, "BOTTOMS", ())) + tuple(getattr(layer, "OPTIONAL_BOTTOMS", ()))
    blobs = list(spec.bottom) if spec is not None else []
    rename = {role: blobs[i] for i, role in enumerate(roles) if i < len(blobs) and blobs[i] != role}
    rename.update({f"bottom[{i}]": blob for i, blob in enumerate(blobs) if i >= len(roles)})
    if not rename:
        return message
    pattern = re.compile(r"\b(bottom|of|as) '(" + "|".join(re.escape(r) for r in rename) + r")'")
    return pattern.sub(lambda m: f"{m.group(1)} '{rename[m.group(2)]}'", message)


def _layer_error(err, names, when):
    """A :class:`TrainingError` for an exception raised inside Caffe, naming the layer."""
    layer = _caffe_layer_in(_traceback_frames(err))
    if layer is None:
        if isinstance(err, ImportError) and getattr(err, "name", None):
            where = names.describe_module(err.name.split(".")[0]) or names.describe_module(err.name)
            if where:
                return TrainingError(f"{when}: {where[0]}: {where[1]}: python_param module '{err.name}' "
                                     f"could not be imported ({err}). Python layers are imported from "
                                     f"sys.path: run from the folder of your layer modules, or add it to "
                                     f"PYTHONPATH")
        return None
    where = names.describe(layer)
    where = f"{where[0]}: {where[1]}" if where else f"Python layer {type(layer).__name__}"
    ours = type(layer).__module__.split(".")[0] == "caffe_losses"
    details = None if ours else "".join(traceback.format_exception(type(err), err, err.__traceback__))
    message = str(err) if ours else f"{type(err).__name__}: {err}"
    if isinstance(err, MemoryError):     # str(MemoryError()) is empty: "layer 'loss': " said nothing
        message = (f"out of memory (MemoryError{': ' + str(err) if str(err) else ''}): its inputs or files "
                   f"are too large for the memory available")
    suffix = f" {layer.where()}" if ours and hasattr(layer, "where") else ""
    if suffix.strip() and message.endswith(suffix):
        message = message[:-len(suffix)]           # the prefix below names the layer already
    if ours:
        message = with_blob_names(message, layer, names.spec(layer))
    return TrainingError(f"{when}: {where}: {message}", details)


@contextlib.contextmanager
def _warnings_to(progress, names):
    """Warnings raised while training are printed naming the prototxt layer, not a source line."""
    if not progress.report:
        yield
        return

    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        frames, frame = [], sys._getframe(1)
        while frame is not None:
            frames.append(frame)
            frame = frame.f_back
        layer = _caffe_layer_in(reversed(frames))
        where = names.describe(layer) if layer is not None else None
        text = (f"{where[0]}: WARNING {where[1]}: {message}" if where
                else f"WARNING ({category.__name__}): {message}")
        if text not in shown:       # the same layer in the train and the test net: once
            shown.add(text)
            progress.say(text)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
