"""Python layers for tests/test_i19_aborts.py: a layer that runs out of memory."""

import caffe


class OutOfMemory(caffe.Layer):
    """Passes its bottom through on setup; its forward raises an empty MemoryError, as NumPy does."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        raise MemoryError()

    def backward(self, top, propagate_down, bottom):
        pass
