"""Focal loss (Lin et al. 2017, RetinaNet): sigmoid and softmax forms, for dense, heavily imbalanced tasks (issue 21)."""

from caffe_losses.losses.family import Family, ForkBlock, ForkLayer
from caffe_losses.losses.focal import lint, migrate

FAMILY = Family(
    name="focal",
    layers=("SigmoidFocalLoss", "SoftmaxFocalLoss"),
    docs="focal_loss.md",
    templates=("focal_digits_sigmoid", "focal_digits_softmax"),
    demo="focal",
    native={"SigmoidFocalLoss": "SigmoidCrossEntropyLoss", "SoftmaxFocalLoss": "SoftmaxWithLoss"},
    migrate=(ForkLayer("FocalLoss", "the forks' FocalLoss (makefile/frcnn, owphoo/FocalLoss, "
                                    "liuyuisanai/Focal-Loss)", migrate.fork_focal_loss,
                       blocks=("focal_loss_param", "loss_param", "softmax_param"),
                       doc="makefile/frcnn's and owphoo/FocalLoss's (softmax form) -> `SoftmaxFocalLoss` "
                           "(owphoo's `alpha_balance` list -> `alpha: [...]`); liuyuisanai/Focal-Loss's "
                           "(sigmoid form) -> `SigmoidFocalLoss`; `focal_loss_param { alpha gamma }` "
                           "alone, which frcnn and liuyuisanai read differently, is refused with the "
                           "way to tell them apart"),),
    fork_blocks=(ForkBlock("focal_loss_param", "the forks' FocalLoss", "FocalLossParameter",
                           fields=migrate.FIELDS, repeated=("alpha",)),),
    # a Python focal layer's focal_loss_param (ignored by Caffe): gamma moves into param_str; alpha
    # does not (owphoo's is a repeated field read only with alpha_balance: the rule above reads it)
    movable={"focal_loss_param": {"gamma": "gamma"}},
    fork_keys={"alpha_balance": ("owphoo/FocalLoss's", "alpha")},
    lint=lint.RULES,
    bench=True,
)
