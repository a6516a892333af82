"""``caffe-losses check``'s rules for the regression family (see :mod:`caffe_losses.nets.lint`).

* ``double-softmax``: an ``Expectation`` that applies softmax itself (its
  default) fed by a ``Softmax``.
* ``expectation-kernel-lr``: an expectation computed by a fixed kernel (the
  age recipe's Convolution/InnerProduct with one output and no bias on top
  of a Softmax, its kernel set to 0..K-1 by ``caffe-losses net-surgery``)
  without ``param { lr_mult: 0 }``: the kernel would drift during training.
"""


def expectation_double_softmax(ctx, layer):
    if ctx.ours and ctx.cls_name == "Expectation" and (ctx.params or {}).get("softmax", True):
        ctx.double_softmax(fix=" or set 'softmax: false'")


def expectation_kernel_lr(ctx, layer):
    src = ctx.src
    if layer.type in ("Convolution", "InnerProduct") and src is not None and src.type == "Softmax":
        p = layer.convolution_param if layer.type == "Convolution" else layer.inner_product_param
        if p.num_output == 1 and not p.bias_term:
            mults = ctx.lr_mults(layer)
            if not mults or mults[0] != 0:
                ctx.error("expectation-kernel-lr",
                          f"{layer.type} {ctx.label(layer)} computes an expectation over the Softmax "
                          f"{ctx.label(src)} with a fixed kernel, but its kernel is learnable "
                          f"(lr_mult {mults[0] if mults else 1:g}): the 0..K-1 values set by net surgery "
                          f"would drift. Add 'param {{ lr_mult: 0 }}' (or use the Expectation layer).")


RULES = (expectation_double_softmax, expectation_kernel_lr)
