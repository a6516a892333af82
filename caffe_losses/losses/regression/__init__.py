"""Age from bins: SmoothL1Loss, the Expectation over bins and MeanVarianceLoss (seed 003)."""

from caffe_losses.losses.family import Family, ForkBlock, ForkLayer
from caffe_losses.losses.regression import lint, migrate

FAST_RCNN = "fast-rcnn / py-faster-rcnn's SmoothL1Loss"

FAMILY = Family(
    name="regression",
    layers=("SmoothL1Loss", "Expectation", "MeanVarianceLoss"),
    docs="regression.md",
    bench=True,
    templates=("age_sigmoid_smoothl1", "age_softmax_surgery", "age_expectation", "age_mean_variance"),
    demo="age",
    native={"SmoothL1Loss": "EuclideanLoss"},
    migrate=(ForkLayer("SmoothL1Loss", FAST_RCNN, migrate.smooth_l1,
                       blocks=("smooth_l1_loss_param", "loss_param"),
                       doc="`SmoothL1Loss` (2 to 4 bottoms, the same `sigma` and weights)"),),
    fork_blocks=(ForkBlock("smooth_l1_loss_param", FAST_RCNN, "SmoothL1LossParameter",
                           fields=(("sigma", "FLOAT"),)),),
    movable={"smooth_l1_loss_param": {"sigma": "sigma"}},
    lint=lint.RULES,
)
