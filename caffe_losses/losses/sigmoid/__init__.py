"""Weighted sigmoid cross-entropy: positives weighted per element or per class (seed 002)."""

from caffe_losses.losses.family import Family, ForkLayer
from caffe_losses.losses.sigmoid import migrate

FAMILY = Family(
    name="sigmoid",
    layers=("WeightedSigmoidCrossEntropyLoss",),
    docs="sigmoid.md",
    bench=True,
    templates=("sigmoid_edges", "sigmoid_multilabel"),
    demo="sigmoid",
    native={"WeightedSigmoidCrossEntropyLoss": "SigmoidCrossEntropyLoss"},
    migrate=(ForkLayer("SigmoidCrossEntropyLoss", "HED's SigmoidCrossEntropyLoss", migrate.hed_sigmoid,
                       blocks=("loss_param",), hed=True,
                       doc="`WeightedSigmoidCrossEntropyLoss` with `balance: auto` (only with `--hed`)"),),
)
