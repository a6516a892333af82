"""Framework-free NumPy cores of the losses: pure functions, no caffe import.

Each loss module has ``<loss>_forward(...) -> (loss, cache)`` and
``<loss>_backward(cache, ...) -> gradient(s)``; they run in the dtype they are
given (float64 for exact checks, float32 inside a net).
"""
