"""Angular-margin logits (SphereFace, CosFace / AM-Softmax, ArcFace, combined margin) with the class weights as a layer blob (issue 22)."""

from caffe_losses.losses.family import Family, ForkBlock, ForkLayer
from caffe_losses.losses.margin import lint, migrate

SPHEREFACE = "SphereFace's MarginInnerProduct"
COMBINED = "CombinedMargin-caffe's / arcface-caffe's CombinedMargin"
ARCFACE = "arcface-caffe's CosinAddm"
AMSOFTMAX = "AM-Softmax's LabelSpecificAdd"

FAMILY = Family(
    name="margin",
    layers=("MarginProduct",),
    docs="margin.md",
    templates=("margin_digits",),
    demo="margin",
    native={"MarginProduct": "InnerProduct"},   # InnerProduct (no bias) before the same softmax loss
    migrate=(
        ForkLayer("MarginInnerProduct", SPHEREFACE, migrate.sphereface, blocks=("margin_inner_product_param",),
                  doc="`MarginProduct` with `feature_norm: true`, `m1` from its type, its lambda annealing, "
                      "`gradient: sphereface` and class weights (`--weights` carries them; the iteration "
                      "count becomes blob 1)"),
        ForkLayer("CombinedMargin", COMBINED, migrate.combined_margin, blocks=("combined_margin_param",),
                  doc="refused: one `MarginProduct` replaces its cosine chain (Normalize, normalized "
                      "InnerProduct, Scale); the message writes it (docs/margin.md)"),
        ForkLayer("CosinAddm", ARCFACE, migrate.cosin_add_m, blocks=("cosin_add_m_param",),
                  doc="refused: one `MarginProduct` with `m2: m` replaces its cosine chain (docs/margin.md)"),
        ForkLayer("LabelSpecificAdd", AMSOFTMAX, migrate.label_specific_add, blocks=("label_specific_add_param",),
                  doc="refused: one `MarginProduct` with `m2: 0, m3: -bias` replaces the AM-Softmax chain "
                      "(docs/margin.md)"),
    ),
    fork_blocks=(
        ForkBlock("margin_inner_product_param", SPHEREFACE, "MarginInnerProductParameter",
                  fields=(("num_output", "UINT32"), ("type", "ENUM"),
                          ("weight_filler", "MESSAGE", "FillerParameter"), ("axis", "INT32"),
                          ("base", "FLOAT"), ("gamma", "FLOAT"), ("power", "FLOAT"),
                          ("iteration", "INT32"), ("lambda_min", "FLOAT"))),
        ForkBlock("combined_margin_param", COMBINED, "CombinedMarginParameter",
                  fields=(("m1", "FLOAT"), ("m2", "FLOAT"), ("m3", "FLOAT"), ("transform_test", "BOOL"))),
        ForkBlock("cosin_add_m_param", ARCFACE, "CosinAddmParameter",
                  fields=(("m", "FLOAT"), ("transform_test", "BOOL"))),
        ForkBlock("label_specific_add_param", AMSOFTMAX, "LabelSpecificAddParameter",
                  fields=(("bias", "FLOAT"), ("transform_test", "BOOL"), ("bias_base", "FLOAT"),
                          ("bias_gamma", "FLOAT"), ("bias_power", "FLOAT"), ("bias_min", "FLOAT"),
                          ("bias_max", "FLOAT"))),
    ),
    movable={"margin_inner_product_param": {"num_output": "num_classes", "weight_filler": "weight_filler",
                                            "base": "base", "gamma": "gamma", "power": "power",
                                            "lambda_min": "lambda_min", "iteration": "iteration"}},
    # fork_keys: SphereFace's num_output is caffe-face's too (num_classes): center's hint says it
    weights={"MarginProduct": migrate.carry_weights},
    bench=True,
    lint=lint.RULES,
)
