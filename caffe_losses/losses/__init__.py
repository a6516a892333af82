"""The loss families, one registry line each (see :mod:`caffe_losses.losses.family`).

Each family is a package here: its reference core, its layer, its data and
demo recipe, and its declaration ``FAMILY``.  ``common`` holds what the cores
share.  Add a family: its package, then its line below.
"""

from caffe_losses.glue import params
from caffe_losses.losses import center, dice, focal, infogain, margin, regression, sigmoid
from caffe_losses.nets import prototxt

FAMILIES = (
    infogain.FAMILY,
    sigmoid.FAMILY,
    regression.FAMILY,
    center.FAMILY,
    focal.FAMILY,
    dice.FAMILY,
    margin.FAMILY,
)

LAYERS = {layer: family for family in FAMILIES for layer in family.layers}
"""layer class name -> its family"""

DEMOS = {family.demo: family for family in FAMILIES if family.demo}
"""``caffe-losses demo --only`` name -> its family, in the demo's order"""

# what the modules below the families (they read nets and param_str for the
# families' rules) learn from the declarations: the forks' blocks, for messages
# naming a field BVLC's caffe.proto lacks, and the forks' spellings of keys
prototxt.FORK_FIELDS.update({block.name: block.fork for family in FAMILIES for block in family.fork_blocks})
params.FORK_KEYS.update({key: spelled for family in FAMILIES for key, spelled in family.fork_keys.items()})
