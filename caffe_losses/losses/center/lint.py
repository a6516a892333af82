"""``caffe-losses check``'s rule for CenterLoss (see :mod:`caffe_losses.nets.lint`).

* ``center-update``: a ``CenterLoss`` with ``update: direct`` whose centers
  the solver would also move, or with ``update: solver`` whose centers the
  solver never moves (lr_mult 0).  In direct mode the layer writes no diff
  to the centers, so the solver moves them only through weight decay: an
  error needs ``lr_mult`` and ``decay_mult`` non-zero (and, when a solver
  is checked, its ``weight_decay``).
"""


def center_update(ctx, layer):
    params = ctx.params
    if not (ctx.ours and ctx.cls_name == "CenterLoss" and params is not None):
        return
    mults = ctx.lr_mults(layer)
    lr = mults[0] if mults else 1.0
    decay = layer.param[0].decay_mult if len(layer.param) and layer.param[0].HasField("decay_mult") else 1.0
    # direct: the layer writes no diff to the centers, so the solver's
    # step there is lr * (momentum of) weight decay alone
    if params.get("update") == "direct" and lr != 0 and decay != 0 and ctx.weight_decay != 0:
        ctx.error("center-update",
                  f"CenterLoss with update: direct moves its centers itself, and the solver would "
                  f"move them too: with lr_mult {lr:g} and decay_mult {decay:g} weight decay "
                  f"shrinks them every step. Add 'param {{ lr_mult: 0 decay_mult: 0 }}' (or "
                  f"decay_mult: 0), or set 'update: solver'.")
    if params.get("update") == "solver" and lr == 0:
        ctx.warning("center-update",
                    "CenterLoss with update: solver leaves the centers to the solver, but lr_mult is 0: "
                    "the centers never move. Set lr_mult to alpha / base_lr, or use update: direct.")


RULES = (center_update,)
