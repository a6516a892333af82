"""A Python loss layer that does nothing: the fixed cost of Caffe's Python layer.

Caffe calls a Python layer's forward and backward through Boost.Python on
every pass; this layer measures that floor (it writes a zero loss and no
diff), so the benchmark can say how much of a small-size time is overhead.
"""

import caffe


class NoOpLoss(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass
