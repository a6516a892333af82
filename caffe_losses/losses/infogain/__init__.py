"""InfogainLoss, stable: softmax and the infogain matrix H in one layer (seed 001)."""

from caffe_losses.losses.family import Family

FAMILY = Family(
    name="infogain",
    layers=("SoftmaxWithInfogainLoss", "InfogainLoss", "Constant"),
    docs="infogain.md",
    templates=("infogain_digits_source", "infogain_digits_constant", "infogain_segmentation"),
    demo="infogain",
    native={"SoftmaxWithInfogainLoss": "InfogainLoss", "InfogainLoss": "InfogainLoss"},
    bench=True,
)
