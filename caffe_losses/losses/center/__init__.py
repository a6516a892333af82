"""Center loss (Wen et al. 2016) beside a softmax loss (seed 004)."""

from caffe_losses.losses.center import lint, migrate
from caffe_losses.losses.family import Family, ForkBlock, ForkLayer

CAFFE_FACE = "caffe-face's CenterLoss"

FAMILY = Family(
    name="center",
    layers=("CenterLoss",),
    docs="center_loss.md",
    bench=True,
    templates=("center_loss_lenetpp",),
    demo="center",
    native={},      # none: its baseline is the same net without it
    migrate=(ForkLayer("CenterLoss", CAFFE_FACE, migrate.caffe_face_center,
                       blocks=("center_loss_param", "loss_param"),
                       doc="`CenterLoss`, `update: solver` (the same centers, filler and `param { }`): "
                           "BVLC Caffe has no such layer; the fork's formula and update"),),
    fork_blocks=(ForkBlock("center_loss_param", CAFFE_FACE, "CenterLossParameter",
                           fields=(("num_output", "UINT32"),
                                   ("center_filler", "MESSAGE", "FillerParameter"),
                                   ("axis", "INT32"))),),
    movable={"center_loss_param": {"num_output": "num_classes", "center_filler": "center_filler"}},
    fork_keys={"num_output": ("caffe-face's", "num_classes")},
    lint=lint.RULES,
    weights={"CenterLoss": migrate.carry_centers},
)
