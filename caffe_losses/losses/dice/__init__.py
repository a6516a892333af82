"""Dice loss (Milletari et al. 2016; Sudre et al. 2017): soft Dice of softmax or sigmoid probabilities, for segmentation."""

from caffe_losses.losses.family import Family

FAMILY = Family(
    name="dice",
    layers=("DiceLoss",),
    docs="dice.md",
    templates=("dice_segmentation",),
    demo="dice",
    native={"DiceLoss": "SoftmaxWithLoss"},
    bench=True,
)
