"""Weighted sigmoid cross-entropy: positives weighted per element or per class (seed 002)."""

from caffe_losses.losses.family import Family

FAMILY = Family(
    name="sigmoid",
    layers=("WeightedSigmoidCrossEntropyLoss",),
    docs="sigmoid.md",
    templates=("sigmoid_edges", "sigmoid_multilabel"),
    demo="sigmoid",
    native={"WeightedSigmoidCrossEntropyLoss": "SigmoidCrossEntropyLoss"},
    bench=True,
)
