"""Set a layer's fixed kernel to an arithmetic range (e.g. ages 0..99) and save a .caffemodel.

The second recipe of the age-regression answer puts a fixed Convolution
(or InnerProduct) layer after a Softmax over 100 age bins, so that its
output is the expected age sum_k k p_k -- but Caffe cannot fill a kernel
with 0, 1, ..., 99, and the answer's remedy is net surgery in Python. This
tool does that surgery: it builds the net, sets the layer's kernel to the
values, saves the weights of the whole net, reloads the file to verify it,
and prints what it changed. Train from the file it writes:

  python tools/net_surgery.py --model train_val.prototxt --layer pred_age \\
      --values 0:100 --output init_weights.caffemodel
  caffe train -solver solver.prototxt -weights init_weights.caffemodel

--values is START:STOP[:STEP] (Python's range: 0:100 is 0, 1, ..., 99) or a
comma-separated list. The kernel must hold exactly that many weights (the
layer needs num_output: 1 and a bottom of that many channels). Give the
layer `param { lr_mult: 0 }` so the solver leaves the kernel alone: the tool
warns when it does not. --weights starts from a pretrained .caffemodel
(copied first; the surgery then overwrites the one layer). Data layers must
find their sources, as with `caffe train`: run it from the folder the
prototxt's paths are relative to, after writing the data. The Expectation
layer of this package (`caffe_losses.Expectation`) does the same with no
surgery at all.
"""

import math
import os
import sys

import numpy as np

from caffe_losses import preflight
from caffe_losses.prototxt import read_net_param
from caffe_losses.safety import FLOAT32_MAX, OutputError, check_output, float32_overflow, output_file

SUPPORTED = ("Convolution", "InnerProduct")
# A Caffe blob holds at most INT_MAX values: no kernel takes more.
MAX_VALUES = 2 ** 31 - 1


class SurgeryError(Exception):
    """Bad input to the surgery: the message says what to fix."""


def add_arguments(parser):
    parser.add_argument("--model", required=True,
                        help="the net prototxt (e.g. train_val.prototxt)")
    parser.add_argument("--layer", required=True,
                        help="name of the Convolution or InnerProduct layer whose kernel to set")
    parser.add_argument("--values", required=True,
                        help="START:STOP[:STEP] as Python's range (0:100 gives 0..99), "
                             "or a comma-separated list of numbers")
    parser.add_argument("--output", required=True, help=".caffemodel to write")
    parser.add_argument("--weights", help="pretrained .caffemodel to start from (optional)")
    parser.add_argument("--phase", choices=("TRAIN", "TEST"), default="TRAIN",
                        help="phase to build the net in (default TRAIN, as the answer does)")


def parse_values(text):
    """``START:STOP[:STEP]`` (half-open, like ``range``) or ``a,b,c`` -> float32 array."""
    text = str(text).strip()
    shown = repr(text if len(text) <= 60 else text[:57] + "...")
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
                raise ValueError
            start, stop = float(parts[0]), float(parts[1])
            step = float(parts[2]) if len(parts) == 3 else 1.0
            if not all(math.isfinite(v) for v in (start, stop, step)):
                raise SurgeryError(f"--values: START, STOP and STEP must be finite numbers. "
                                   f"Received: {shown}")
            if step == 0:
                raise SurgeryError(f"--values: STEP must not be 0. Received: {shown}")
            count = math.ceil((stop - start) / step - 1e-9)
            if count > MAX_VALUES:
                raise SurgeryError(f"--values gives {count:.4g} numbers, more than a Caffe kernel "
                                   f"can hold ({MAX_VALUES}). Received: {shown}")
            values = start + step * np.arange(max(count, 0), dtype=np.float64)
        else:
            values = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise SurgeryError(f"--values must be START:STOP[:STEP] (e.g. 0:100) or a comma-separated "
                           f"list of numbers. Received: {shown}") from None
    if values.size == 0:
        raise SurgeryError(f"--values gives no numbers (STOP must be beyond START in the "
                           f"direction of STEP). Received: {shown}")
    if not np.all(np.isfinite(values)):
        raise SurgeryError(f"--values must be finite numbers. Received: {shown}")
    bad = float32_overflow(values)
    if bad is not None:
        raise SurgeryError(f"--values: {values[bad]:g} (value {bad[0]}) is beyond float32, the type "
                           f"of Caffe's weights (at most {FLOAT32_MAX:.4g} in magnitude). "
                           f"Received: {shown}")
    return values.astype(np.float32)


def _describe(values):
    v = [f"{x:g}" for x in values]
    return ", ".join(v) if len(v) <= 6 else ", ".join(v[:3]) + ", ..., " + ", ".join(v[-2:])


def read_net(path):
    """Parses a net prototxt into a ``caffe_pb2.NetParameter``."""
    try:
        return read_net_param(path)
    except (FileNotFoundError, ValueError) as err:
        raise SurgeryError(f"--model: {err}") from None


def check_data_sources(param, phase):
    try:
        preflight.check_data_sources(param, phase)
    except preflight.PreflightError as err:
        raise SurgeryError(str(err)) from None


def check_weights(path, net):
    try:
        preflight.check_weights(path, net, option="--weights")
    except preflight.PreflightError as err:
        raise SurgeryError(str(err)) from None


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
    param = read_net(model)
    layer = find_layer(param, layer_name, phase_id)
    check_data_sources(param, phase_id)
    warnings = []
    mults = lr_mults(layer)
    if mults[0] != 0:
        warnings.append(f"layer '{layer_name}' has lr_mult {mults[0]:g} on its kernel: the "
                        f"kernel would drift from the values during training. Add "
                        f"'param {{ lr_mult: 0 }}' to the layer.")
    net = caffe.Net(model, getattr(caffe, phase))
    if weights:
        check_weights(weights, net)
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
        net.save(tmp)
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
        print(f"other layers: copied from {weights}", file=out)
    n_layers = len(saved)
    print(f"wrote {output}: {n_layers} layer(s) with parameters, verified by reloading", file=out)
    return {"layer": layer_name, "type": layer.type, "shape": shape, "values": values,
            "before": before, "warnings": warnings, "output": output}


def run(args):
    try:
        values = parse_values(args.values)
        surgery(args.model, args.layer, values, args.output, weights=args.weights,
                phase=args.phase)
    except SurgeryError as err:
        print(f"net-surgery: error: {err}", file=sys.stderr)
        return 2
    return 0
