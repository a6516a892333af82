"""Angular-margin logits (SphereFace, CosFace / AM-Softmax, ArcFace, combined margin) with the class weights as a layer blob (issue 22)."""

from caffe_losses.losses.family import Family

FAMILY = Family(
    name="margin",
    layers=("MarginProduct",),
    docs="margin.md",
    templates=("margin_digits",),
    demo="margin",
    native={"MarginProduct": "InnerProduct"},   # InnerProduct (no bias) before the same softmax loss
)
