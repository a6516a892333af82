"""Age from bins: SmoothL1Loss, the Expectation over bins and MeanVarianceLoss (seed 003)."""

from caffe_losses.losses.family import Family

FAMILY = Family(
    name="regression",
    layers=("SmoothL1Loss", "Expectation", "MeanVarianceLoss"),
    docs="regression.md",
    templates=("age_sigmoid_smoothl1", "age_softmax_surgery", "age_expectation", "age_mean_variance"),
    demo="age",
    native={"SmoothL1Loss": "EuclideanLoss"},
    bench=True,
)
