"""Net surgery: set a layer's fixed kernel to given values and save the net's weights.

The library side of ``caffe-losses net-surgery`` (:mod:`caffe_losses.cli.net_surgery`),
also used by the ``age_softmax_surgery`` template's ``prepare`` step: a
Softmax over K age bins followed by a fixed Convolution (or InnerProduct)
whose kernel is ``0, 1, ..., K-1`` outputs the expected age, and Caffe has no
filler for such a kernel.  :func:`surgery` builds the net, sets the kernel,
saves the weights of the whole net, reloads the file to verify it, and
reports what it changed.
"""

import os
import shutil
import sys

import numpy as np

from caffe_losses.nets import preflight
from caffe_losses.nets.prototxt import read_net_param
from caffe_losses.files.safety import OutputError, check_output, output_file
from caffe_losses.training.snapshots import _ChildFailed, _in_child

# caffe (pycaffe) is imported inside the functions that use it: the CLI imports this
# module, and must run without pycaffe to say that it is missing (tests/test_layout.py).

__all__ = ["SurgeryError", "SUPPORTED", "MAX_VALUES", "surgery", "find_layer", "lr_mults"]

SUPPORTED = ("Convolution", "InnerProduct")
# A Caffe blob holds at most INT_MAX values: no kernel takes more.
MAX_VALUES = 2 ** 31 - 1


class SurgeryError(Exception):
    """Bad input to the surgery: the message says what to fix."""


def _describe(values):
    v = [f"{x:g}" for x in values]
    return ", ".join(v) if len(v) <= 6 else ", ".join(v[:3]) + ", ..., " + ", ".join(v[-2:])


def check_data_sources(param, phase):
    try:
        preflight.check_data_sources(param, phase)
    except preflight.PreflightError as err:
        raise SurgeryError(str(err)) from None


def check_weights(path, net):
    """Refuses weights that do not fit ``net``, or of which nothing would be copied (another net's).

    Returns:
      (copied, missing): the net's layers with parameters that the file
      holds, and those it does not (left as the prototxt initialises them).
    """
    try:
        preflight.check_weights(path, net, option="--weights", require_match=True)
        missing = preflight.unmatched_layers(path, net, "--weights")
    except preflight.PreflightError as err:
        raise SurgeryError(str(err)) from None
    copied = [name for name, blobs in preflight.net_shapes(net).items()
              if any(owned for _, owned in blobs) and name not in missing]
    return copied, missing


def _names(names, most=6):
    return ", ".join(f"'{n}'" for n in names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def find_layer(param, name, phase):
    """The layer called ``name`` in ``param`` (checked: exists, in phase, supported type)."""
    from caffe.proto import caffe_pb2
    matches = [layer for layer in param.layer if layer.name == name]
    if not matches:
        names = ", ".join(f"{layer.name} ({layer.type})" for layer in param.layer
                          if layer.type in SUPPORTED) or "none"
        raise SurgeryError(f"--layer: no layer named '{name}' in the model. "
                           f"Convolution/InnerProduct layers: {names}")
    layer = next((m for m in matches if preflight.in_phase(m, phase)), None)
    if layer is None:
        raise SurgeryError(f"--layer: layer '{name}' is not in the "
                           f"{caffe_pb2.Phase.Name(phase)} phase (see its include/exclude)")
    if layer.type not in SUPPORTED:
        raise SurgeryError(f"--layer: layer '{name}' is a {layer.type} layer; expected one of "
                           f"{', '.join(SUPPORTED)}")
    return layer


def lr_mults(layer):
    """The ``lr_mult`` of each of the layer's parameter blobs (Caffe's default is 1)."""
    n = 2 if (layer.type == "Convolution" and layer.convolution_param.bias_term) or \
        (layer.type == "InnerProduct" and layer.inner_product_param.bias_term) else 1
    return [layer.param[i].lr_mult if i < len(layer.param) else 1.0 for i in range(n)]


def _save(net, tmp, output):
    """``net.save(tmp)`` in a forked child where the OS has fork: Caffe's writer aborts the process
    on a full disk (a CHECK), which then ends only the child, and the caller removes ``tmp``."""
    if not hasattr(os, "fork"):
        net.save(tmp)
        return
    try:
        _in_child(lambda: net.save(tmp))
    except _ChildFailed as err:
        folder = os.path.dirname(os.path.abspath(tmp))
        try:
            free = f"; {shutil.disk_usage(folder).free / 2**30:.1f} GiB free in {folder}"
        except OSError:
            free = ""
        raise SurgeryError(f"--output {output}: {err}{free}. Nothing was written "
                           f"under that name") from None


def surgery(model, layer_name, values, output, *, weights=None, phase="TRAIN", out=None, err=None):
    """Sets ``layer_name``'s kernel to ``values`` and saves the net's weights to ``output``.

    Messages go to ``out`` (default stdout) and warnings to ``err`` (default stderr).

    Returns:
      dict with ``layer``, ``type``, ``shape``, ``values`` (float32), ``before``
      (the old kernel), ``warnings`` (list of str) and ``output``.

    Raises:
      SurgeryError with a message naming the file, layer or option at fault.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        check_output(output, {"--model": model, "--weights": weights})
    except OutputError as error:
        raise SurgeryError(str(error)) from None
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    from caffe.proto import caffe_pb2
    caffe.set_mode_cpu()
    phase_id = getattr(caffe_pb2, phase)
    values = np.asarray(values, dtype=np.float32)
    try:
        param = read_net_param(model)
    except (FileNotFoundError, ValueError) as error:
        raise SurgeryError(f"--model: {error}") from None
    layer = find_layer(param, layer_name, phase_id)
    check_data_sources(param, phase_id)
    try:     # what Caffe's Net::Init aborts on (unknown layer types, bottoms no layer makes)
        preflight.check_net_structure(param, phase_id, f"--model {model}")
    except preflight.PreflightError as err:
        raise SurgeryError(str(err)) from None
    warnings = []
    mults = lr_mults(layer)
    if mults[0] != 0:
        warnings.append(f"layer '{layer_name}' has lr_mult {mults[0]:g} on its kernel: the "
                        f"kernel would drift from the values during training. Add "
                        f"'param {{ lr_mult: 0 }}' to the layer.")
    net = caffe.Net(model, getattr(caffe, phase))
    copied = missing = ()
    if weights:
        copied, missing = check_weights(weights, net)
        net.copy_from(weights)
    if layer_name not in net.params:
        raise SurgeryError(f"--layer: layer '{layer_name}' has no parameters in the built net")
    blobs = net.params[layer_name]
    kernel = blobs[0].data
    shape = tuple(kernel.shape)
    if kernel.size != values.size:
        num_out = layer.convolution_param.num_output if layer.type == "Convolution" \
            else layer.inner_product_param.num_output
        raise SurgeryError(
            f"layer '{layer_name}' ({layer.type}) has a kernel of shape {shape}, {kernel.size} "
            f"weights, but --values gives {values.size} numbers: the kernel must hold exactly one "
            f"weight per value (num_output: 1 -- the layer has {num_out} -- and a bottom of "
            f"{values.size} channels)")
    before = kernel.copy()
    kernel[...] = values.reshape(shape)
    if len(blobs) > 1:
        bias = blobs[1].data
        warnings.append(f"layer '{layer_name}' has a bias term (now {_describe(bias.ravel())}), "
                        f"left as it is; the answer's recipe uses 'bias_term: false'")
        if len(mults) > 1 and mults[1] != 0:
            warnings.append(f"layer '{layer_name}' has lr_mult {mults[1]:g} on its bias: it "
                            f"will be trained")
    saved = {name: [b.data.copy() for b in net.params[name]] for name in net.params}
    # Written beside the output, verified, then renamed into place: a failure
    # leaves no file, and never a clobbered one.
    with output_file(output, {"--model": model, "--weights": weights}) as tmp:
        _save(net, tmp, output)
        # Verify: a fresh net from the same prototxt, loaded from the file just written.
        check = caffe.Net(model, getattr(caffe, phase))
        check.copy_from(tmp)
        for name, arrays in saved.items():
            for i, a in enumerate(arrays):
                if not np.array_equal(check.params[name][i].data, a):
                    raise SurgeryError(f"verification failed: layer '{name}' blob {i} differs after "
                                       f"reloading what was written for {output}")
        if not np.array_equal(check.params[layer_name][0].data.ravel(), values):
            raise SurgeryError(f"verification failed: the kernel of '{layer_name}' written for "
                               f"{output} is not the values")

    for w in warnings:
        print(f"warning: {w}", file=err)
    was = "all zeros" if not before.any() else _describe(before.ravel())
    print(f"{layer_name} ({layer.type}): kernel {shape} set to {_describe(values)} "
          f"({values.size} values; was {was})", file=out)
    if weights:
        others = [name for name in copied if name != layer_name]
        line = (f"other layers: {len(others)} copied from {weights} ({_names(others)})" if others else
                f"other layers: none copied from {weights} (it holds only '{layer_name}')")
        if missing:
            line += f"; not in {weights}, left as the prototxt initialises them: {_names(missing)}"
        print(line, file=out)
    n_layers = len(saved)
    print(f"wrote {output}: {n_layers} layer(s) with parameters, verified by reloading", file=out)
    return {"layer": layer_name, "type": layer.type, "shape": shape, "values": values,
            "before": before, "warnings": warnings, "output": output}
