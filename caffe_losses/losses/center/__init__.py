"""Center loss (Wen et al. 2016) beside a softmax loss (seed 004)."""

from caffe_losses.losses.family import Family

FAMILY = Family(
    name="center",
    layers=("CenterLoss",),
    docs="center_loss.md",
    templates=("center_loss_lenetpp",),
    demo="center",
    native={},      # none: its baseline is the same net without it
    bench=True,
)
