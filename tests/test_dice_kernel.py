"""DiceLoss's softmax kernel against its reference, over a grid of sizes and settings, both dtypes."""

import itertools

import numpy as np
import pytest

from caffe_losses.losses import common
from caffe_losses.losses.dice import core

IGNORE = 255
SETTINGS = [dict(zip(("squared", "weights", "batch", "include_background"), v)) for v in
            itertools.product((False, True), ("none", "generalized", "list"), (False, True), (True, False))]


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 5, 16, 16), (2, 64, 8, 8), (3, 2, 4096)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ignore", [False, True])
def test_kernel_equals_the_reference(shape, dtype, ignore):
    rng = np.random.RandomState(sum(shape))
    n, c = shape[:2]
    x = (rng.randn(*shape) * 3).astype(dtype)
    label = rng.randint(0, c, (n, 1) + shape[2:]).astype(dtype)
    label[:, :, :1] = c - 1 if c > 2 else 0          # a class absent from some rows, sometimes
    if ignore:
        label.reshape(-1)[rng.rand(label.size) < 0.2] = IGNORE
    ws, ws_back = common.Workspace(), common.Workspace()
    tol = dict(rtol=1e-10, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-8)
    for kw in SETTINGS:
        kw = dict(kw)
        if kw["weights"] == "list":
            kw["weights"] = list(np.linspace(0.5, 2, c))
        if ignore:
            kw["ignore_label"] = IGNORE
        ref, cache = core.dice_forward(x, label, **kw)
        got, kcache = core.dice_softmax_kernel(x, label, workspace=ws, **kw)
        assert got == pytest.approx(ref, rel=1e-12 if dtype == np.float64 else 1e-6, abs=1e-12), kw
        out = np.full(x.size, np.nan, dtype)
        core.dice_softmax_kernel_backward(kcache, scale=-1.5, out=out, workspace=ws_back)
        ref_grad = core.dice_backward(cache, scale=-1.5).reshape(-1)
        scale = np.abs(ref_grad).max()
        np.testing.assert_allclose(out, ref_grad, rtol=tol["rtol"], atol=tol["atol"] + tol["rtol"] * scale,
                                   err_msg=str(kw))


def test_kernel_at_extreme_logits_and_its_checks():
    rng = np.random.RandomState(1)
    x = np.sign(rng.randn(2, 3, 6)).astype(np.float32) * 1e4
    label = rng.randint(0, 3, (2, 1, 6)).astype(np.float32)
    loss, cache = core.dice_softmax_kernel(x, label)
    assert loss == pytest.approx(core.dice_forward(x, label)[0], abs=1e-6)
    assert np.isfinite(core.dice_softmax_kernel_backward(cache)).all()
    with pytest.raises(ValueError, match="activation softmax only"):
        core.dice_softmax_kernel(x, label, activation="sigmoid")
    with pytest.raises(ValueError, match=r"dice: bottom 'label' holds 7.0 at index \(1, 0, 2\)"):
        label[1, 0, 2] = 7
        core.dice_softmax_kernel(x, label)
    with pytest.raises(ValueError, match="non-finite value nan"):
        x[0, 0, 0] = np.nan
        label[1, 0, 2] = 0
        core.dice_softmax_kernel(x, label)


@pytest.mark.parametrize("shape", [(2, 1, 4, 5), (4, 3, 16, 16), (2, 2, 4096)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ignore", [False, True])
def test_sigmoid_kernel_equals_the_reference(shape, dtype, ignore):
    rng = np.random.RandomState(sum(shape) + 1)
    c = shape[1]
    x = (rng.randn(*shape) * 3).astype(dtype)
    x.reshape(-1)[:3] = (1e4, -1e4, 0)
    label = (rng.rand(*shape) < 0.3).astype(dtype)
    label[:, 0, :1] = 0                              # a channel absent from some rows, sometimes
    if ignore:
        label.reshape(-1)[rng.rand(label.size) < 0.2] = IGNORE
    ws, ws_back = common.Workspace(), common.Workspace()
    tol = dict(rtol=1e-10, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-8)
    for kw in SETTINGS:
        kw = dict(kw, activation="sigmoid")
        if not kw["include_background"] and c < 2:
            continue
        if kw["weights"] == "list":
            kw["weights"] = list(np.linspace(0.5, 2, c))
        if ignore:
            kw["ignore_label"] = IGNORE
        ref, cache = core.dice_forward(x, label, **kw)
        got, kcache = core.dice_sigmoid_kernel(x, label, workspace=ws, **kw)
        assert got == pytest.approx(ref, rel=1e-12 if dtype == np.float64 else 1e-6, abs=1e-12), kw
        out = np.full(x.size, np.nan, dtype)
        core.dice_sigmoid_kernel_backward(kcache, scale=2.5, out=out, workspace=ws_back)
        ref_grad = core.dice_backward(cache, scale=2.5).reshape(-1)
        scale = np.abs(ref_grad).max()
        np.testing.assert_allclose(out, ref_grad, rtol=tol["rtol"], atol=tol["atol"] + tol["rtol"] * scale,
                                   err_msg=str(kw))


def test_sigmoid_kernel_checks_as_the_reference():
    x = np.zeros((2, 2, 3))
    for label, words in ((np.full((2, 2, 3), 0.5), r"holds 0.5 at index \(0, 0, 0\); expected 0 or 1"),
                         (np.full((2, 2, 3), np.nan), "holds nan"),
                         (np.full((2, 2, 3), 2.0), "holds 2.0")):
        with pytest.raises(ValueError, match="dice: bottom 'label' " + words):
            core.dice_sigmoid_kernel(x, label)
    with pytest.raises(ValueError, match="activation sigmoid only"):
        core.dice_sigmoid_kernel(x, np.zeros((2, 2, 3)), activation="softmax")
