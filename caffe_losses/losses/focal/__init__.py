"""Focal loss (Lin et al. 2017, RetinaNet): sigmoid and softmax forms, for dense, heavily imbalanced tasks (issue 21)."""

from caffe_losses.losses.family import Family

FAMILY = Family(
    name="focal",
    layers=("SigmoidFocalLoss", "SoftmaxFocalLoss"),
    docs="focal_loss.md",
    templates=("focal_digits_sigmoid", "focal_digits_softmax"),
    demo="focal",
    native={"SigmoidFocalLoss": "SigmoidCrossEntropyLoss", "SoftmaxFocalLoss": "SoftmaxWithLoss"},
)
