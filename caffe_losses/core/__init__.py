"""Framework-free NumPy cores of the losses: no caffe import.

Each loss module opens with its reference, the specification:
``<loss>_forward(...) -> (loss, cache)`` and ``<loss>_backward(cache, *,
scale, out) -> gradient``, in the dtype they are given (float64 for exact
checks, float32 inside a net).  Where the benchmark shows it pays, a kernel
with the same inputs and results sits beside it (``tests/test_kernels.py``
holds each to its reference).  ``common`` holds what they share.
"""
