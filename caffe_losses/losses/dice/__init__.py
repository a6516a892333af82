"""Dice loss (Milletari et al. 2016; Sudre et al. 2017): soft Dice of softmax or sigmoid probabilities, for segmentation."""

from caffe_losses.losses.dice import lint, migrate
from caffe_losses.losses.family import Family, ForkLayer

FAMILY = Family(
    name="dice",
    layers=("DiceLoss",),
    docs="dice.md",
    templates=("dice_segmentation",),
    demo="dice",
    native={"DiceLoss": "SoftmaxWithLoss"},
    bench=True,
    migrate=(ForkLayer("Python", migrate.VNET, migrate.vnet_dice, python=("pyLayer", "DiceLoss"),
                       doc="`DiceLoss` with `activation: none` (on the same Softmax probabilities), "
                           "`squared: true`, `include_background: false`: the gradient V-Net's "
                           "backward writes on channel 1, divided by N"),
             ForkLayer("DiceLoss", migrate.ORGANSEG, migrate.organseg_dice, blocks=("loss_param",),
                       doc="`DiceLoss` with `activation: sigmoid`, `batch: true`, `smooth: 1e-6` and "
                           "`weights` of one 1 per channel (one Dice pooled over the whole blob): "
                           "the same loss and gradient")),
    lint=lint.RULES,
)
