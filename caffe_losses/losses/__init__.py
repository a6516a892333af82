"""The loss families, one registry line each (see :mod:`caffe_losses.losses.family`).

Each family is a package here: its reference core, its layer, its data and
demo recipe, and its declaration ``FAMILY``.  ``common`` holds what the cores
share.  Add a family: its package, then its line below.
"""

from caffe_losses.losses import center, infogain, margin, regression, sigmoid

FAMILIES = (infogain.FAMILY, sigmoid.FAMILY, regression.FAMILY, center.FAMILY, margin.FAMILY)

LAYERS = {layer: family for family in FAMILIES for layer in family.layers}
"""layer class name -> its family"""

DEMOS = {family.demo: family for family in FAMILIES if family.demo}
"""``caffe-losses demo --only`` name -> its family, in the demo's order"""
