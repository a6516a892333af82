#!/usr/bin/env python3
"""Checks a Caffe build made by install_caffe.sh: imports, flavour, a net in CPU mode.

Used by `make check-cuda-build` (with --expect-cuda) after building the CUDA
flavour on a machine without a GPU: the build must compile, link against the
CUDA 13 libraries, and run a net with a Python layer in CPU mode.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np


def linked_libraries(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def device_memory(blob, cuda, expect_gpu):
    """The device-memory properties install_caffe.sh adds to caffe.Blob.

    CPU_ONLY: the pointers raise a RuntimeError naming CPU_ONLY.  CUDA build
    without a usable device: a RuntimeError saying so (never Caffe's abort).
    With a device: an integer pointer, the head moves to the GPU, the device
    id is reported, and reading .data on the host gives the same values.
    """
    before = np.array(blob.data)
    if blob.data_head not in ("cpu", "synced"):
        print(f"FAIL: data_head {blob.data_head!r} after a CPU forward", file=sys.stderr)
        return False
    try:
        pointer = blob.gpu_data_ptr
    except RuntimeError as e:
        wanted = "no CUDA device" if cuda else "CPU_ONLY"
        if wanted not in str(e) or expect_gpu:
            print(f"FAIL: gpu_data_ptr raised {e}", file=sys.stderr)
            return False
        print(f"device memory: gpu_data_ptr refused as it should here ({e})")
        return True
    head, device = blob.data_head, blob.gpu_device
    same = np.array_equal(np.array(blob.data), before)
    ok = cuda and isinstance(pointer, int) and pointer != 0 and head == "gpu" and isinstance(device, int) and same
    print(f"device memory: gpu_data_ptr {pointer:#x}, head {head!r} after taking it, device {device}, "
          f"host copy {'equal' if same else 'DIFFERS'}: {'ok' if ok else 'FAIL'}")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect-cuda", action="store_true", help="fail unless the build links CUDA")
    parser.add_argument("--expect-gpu", action="store_true",
                        help="fail unless a CUDA device is usable (blob device pointers on the GPU)")
    parser.add_argument("--caffe", help="the `caffe` tool of the same build (default: the one beside this python)")
    args = parser.parse_args(argv)

    import caffe
    import caffe_losses  # noqa: F401
    from caffe_losses.glue.testing import net_from_text

    so = os.path.join(os.path.dirname(caffe.__file__), "_caffe.so")
    libcaffe = [line for line in subprocess.run(["ldd", so], capture_output=True, text=True).stdout.splitlines()
                if "libcaffe" in line][0].split("=>")[1].split()[0]
    libs = linked_libraries(libcaffe)
    cuda_libs = sorted(lib for lib in libs if lib.startswith(("libcudart", "libcublas", "libcurand")))
    print(f"pycaffe: {so}\nlibcaffe: {libcaffe}\nCUDA libraries: {', '.join(cuda_libs) or 'none'}")
    missing = subprocess.run(["ldd", libcaffe], capture_output=True, text=True).stdout.count("not found")
    if missing:
        print("FAIL: libcaffe has unresolved libraries", file=sys.stderr)
        return 1
    if args.expect_cuda and not any(lib.startswith("libcudart.so.13") for lib in cuda_libs):
        print("FAIL: expected a CUDA 13 build (libcudart.so.13)", file=sys.stderr)
        return 1

    caffe.set_mode_cpu()
    net = net_from_text("""
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 6 } } }
        layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 4 dim: 1 } } }
        layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
                inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 0.5 } } }
        layer { name: "s" type: "Split" bottom: "fc" top: "fc1" top: "fc2" }
        layer { name: "ours" type: "Python" bottom: "fc1" bottom: "t" top: "ours"
                python_param { module: "caffe_losses" layer: "SmoothL1Loss" param_str: "{sigma: 0.01}" }
                loss_weight: 1 }
        layer { name: "native" type: "EuclideanLoss" bottom: "fc2" bottom: "t" top: "native" }
    """)
    rng = np.random.RandomState(0)
    net.blobs["x"].data[...] = rng.randn(4, 6)
    net.blobs["t"].data[...] = rng.randn(4, 1)
    net.forward()
    net.backward()
    ours, native = float(net.blobs["ours"].data[0]), float(net.blobs["native"].data)
    # sigma = 0.01: every |d| < 1/sigma^2, SmoothL1 = 0.5 sigma^2 d^2 summed / N = sigma^2 * Euclidean
    ok = np.isclose(ours, 1e-4 * native, rtol=1e-4)
    print(f"CPU-mode net: SmoothL1Loss {ours:.6g}, 1e-4 * EuclideanLoss {1e-4 * native:.6g}: {'ok' if ok else 'MISMATCH'}")
    if not ok:
        return 1

    if not device_memory(net.blobs["x"], cuda=bool(cuda_libs), expect_gpu=args.expect_gpu):
        return 1

    # The `caffe` tool from the same build trains a net with a Python layer.
    caffe_tool = args.caffe or os.path.join(os.path.dirname(sys.executable), "caffe")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "net.prototxt"), "w") as f:
            f.write('layer { name: "d" type: "DummyData" top: "x" top: "y" dummy_data_param { '
                    'shape { dim: 8 dim: 3 } shape { dim: 8 dim: 1 } data_filler { type: "gaussian" } '
                    'data_filler { type: "gaussian" } } }\n'
                    'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" '
                    'inner_product_param { num_output: 1 weight_filler { type: "xavier" } } }\n'
                    'layer { name: "loss" type: "Python" bottom: "fc" bottom: "y" top: "loss" '
                    'python_param { module: "caffe_losses" layer: "SmoothL1Loss" } loss_weight: 1 }\n')
        with open(os.path.join(tmp, "solver.prototxt"), "w") as f:
            f.write('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 3\n'
                    'snapshot_after_train: false\nsolver_mode: CPU\n')
        proc = subprocess.run([caffe_tool, "train", "-solver", "solver.prototxt"], cwd=tmp,
                              capture_output=True, text=True)
    print(f"caffe train (CPU mode, Python layer): exit {proc.returncode}")
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    print("build check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
