"""Set a layer's fixed kernel to an arithmetic range (e.g. ages 0..99) and save a .caffemodel.

The second recipe of the age-regression answer puts a fixed Convolution
(or InnerProduct) layer after a Softmax over 100 age bins, so that its
output is the expected age sum_k k p_k -- but Caffe cannot fill a kernel
with 0, 1, ..., 99, and the answer's remedy is net surgery in Python. This
tool does that surgery: it builds the net, sets the layer's kernel to the
values, saves the weights of the whole net, reloads the file to verify it,
and prints what it changed. Train from the file it writes:

  caffe-losses net-surgery --model train_val.prototxt --layer pred_age \\
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
import sys

import numpy as np

from caffe_losses.files.safety import FLOAT32_MAX, float32_overflow

FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)   # 1.4e-45
from caffe_losses.nets.surgery import MAX_VALUES, SurgeryError, surgery

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
    small = np.flatnonzero((values != 0) & (values.astype(np.float32) == 0))
    if small.size:
        i = int(small[0])
        raise SurgeryError(f"--values: {values[i]:g} (value {i}) would be 0 in float32, the type "
                           f"of Caffe's weights (0 or at least {FLOAT32_TINY:.2g} in magnitude); "
                           f"{small.size} value(s) would be 0: scale them up. Received: {shown}")
    return values.astype(np.float32)



def run(args):
    try:
        values = parse_values(args.values)
        surgery(args.model, args.layer, values, args.output, weights=args.weights,
                phase=args.phase)
    except SurgeryError as err:
        print(f"net-surgery: error: {err}", file=sys.stderr)
        return 2
    return 0
