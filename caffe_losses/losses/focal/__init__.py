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
    migrate=(ForkLayer("FocalLoss", "the forks' FocalLoss (makefile/frcnn and zimenglan-sysu-512/Focal-Loss, "
                                    "liaomingg/Focal-Loss, owphoo/FocalLoss, liuyuisanai/Focal-Loss)",
                       migrate.fork_focal_loss,
                       blocks=("focal_loss_param", "loss_param", "softmax_param"),
                       doc="softmax forms (frcnn's `type`/`beta`, owphoo's `alpha_balance` list) -> "
                           "`SoftmaxFocalLoss` with the same loss and gradient; liuyuisanai's sigmoid form "
                           "(scores of `num_output: 1`) -> `SigmoidFocalLoss`; `focal_loss_param { alpha "
                           "gamma }` alone, which the softmax forks and liuyuisanai read differently, is "
                           "refused with the way to tell them apart (`type: ORIGIN` marks the softmax form)"),),
    fork_blocks=(ForkBlock("focal_loss_param", "the forks' FocalLoss", "FocalLossParameter",
                           fields=migrate.FIELDS, repeated=("alpha",)),),
    # a Python focal layer's focal_loss_param (ignored by Caffe): gamma moves into param_str; alpha
    # does not (owphoo's is a repeated field read only with alpha_balance: the rule above reads it)
    movable={"focal_loss_param": {"gamma": "gamma"}},
    fork_keys={"alpha_balance": ("owphoo/FocalLoss's", "alpha")},
    lint=lint.RULES,
    bench=True,
)
