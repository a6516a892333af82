"""InfogainLoss, stable: softmax and the infogain matrix H in one layer (seed 001)."""

from caffe_losses.losses.family import Family, ForkLayer
from caffe_losses.losses.infogain import lint, migrate

FAMILY = Family(
    name="infogain",
    layers=("SoftmaxWithInfogainLoss", "InfogainLoss", "Constant"),
    docs="infogain.md",
    bench=True,
    templates=("infogain_digits_source", "infogain_digits_constant", "infogain_segmentation"),
    demo="infogain",
    native={"SoftmaxWithInfogainLoss": "InfogainLoss", "InfogainLoss": "InfogainLoss"},
    migrate=(ForkLayer("InfogainLoss", "Caffe's native InfogainLoss", migrate.native_infogain,
                       blocks=("infogain_loss_param", "loss_param"),
                       doc="`SoftmaxWithInfogainLoss` on raw scores; `InfogainLoss` (ours, on "
                           "probabilities) when a `Softmax` feeds it"),),
    movable={"infogain_loss_param": {"source": "source", "axis": "axis"}},
    lint=lint.RULES,
)
