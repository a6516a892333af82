# Public code from the web, kept verbatim for comparison and benchmarks: the
# forum layer of "Weighted Caffe Sigmoid Cross Entropy" (haomeiwen.com,
# 2018-12-27), class SigmoidCrossEntropyWeightLossLayer, as the post gives it.
# tests/test_sigmoid_seed.py checks that WeightedSigmoidCrossEntropyLoss loads
# its prototxt and matches its formula; a benchmark times it.  Do not use it:
#
# * it computes log(1 + exp(-x)) and 1 / (1 + exp(-x)) directly: exp(-x)
#   overflows for x below about -88 in float32, so the loss becomes inf (NaN
#   for some weights) where the stable form softplus(-x) = max(-x, 0) +
#   log1p(exp(-|x|)) is exact;
# * it reads param_str with eval() (arbitrary code from a prototxt);
# * it returns the unnormalized sum (N times the default BATCH_SIZE value),
#   ignores the loss weight in top[0].diff and propagate_down in backward,
#   has no ignore label, and checks nothing but the counts;
# * on a NaN loss it calls exit(), killing the training process silently.

import caffe
import numpy as np

class SigmoidCrossEntropyWeightLossLayer(caffe.Layer):

    def setup(self, bottom, top):
        # check for all inputs
        params = eval(self.param_str)
        self.cls_weight = float(params["cls_weight"])
        if len(bottom) != 2:
            raise Exception("Need two inputs (scores and labels) to compute sigmoid crossentropy loss.")

    def reshape(self, bottom, top):
        # check input dimensions match between the scores and labels
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        # difference would be the same shape as any input
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        # layer output would be an averaged scalar loss
        top[0].reshape(1)

    def forward(self, bottom, top):
        score=bottom[0].data
        label=bottom[1].data

        first_term = -(label-1)*score
        second_term = -((1-self.cls_weight)*label - 1)*np.log(1+np.exp(-score))

        top[0].data[...] = np.sum(first_term + second_term)

        sig = 1.0/(1.0+np.exp(-score))
        self.diff = ((self.cls_weight-1)*label+1)*sig - self.cls_weight*label
        if np.isnan(top[0].data):
                exit()

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...]=self.diff
