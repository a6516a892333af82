"""The infogain layers inside real Caffe nets: gradients, and equality with native layers.

Every comparison builds one net in which the same Input blobs feed our
Python layer and Caffe's native layer through a Split, so both see identical
float32 inputs; the Split's two tops keep each layer's own gradient.
"""

import textwrap

import numpy as np
import pytest

from caffe_losses.losses.infogain import core
from caffe_losses.losses.common import softmax
from caffe_losses.files.hmatrix import save_h
from caffe_losses.glue.testing import check_net_gradient, layer_net, net_from_text

RNG = np.random.RandomState(11)
IGN = 255
NORMALIZATIONS = ["VALID", "FULL", "BATCH_SIZE", "NONE"]


def shape_text(shape):
    return " ".join(f"dim: {int(d)}" for d in shape)


def inputs(shape, label_shape, ignore=False, seed=0, scale=2.0):
    rng = np.random.RandomState(seed)
    x = (scale * rng.randn(*shape)).astype(np.float32)
    C = shape[1]
    y = rng.randint(0, C, label_shape).astype(np.float32)
    if ignore:
        y.flat[1::3] = IGN
    return x, y


def backward_source(bottom, top):
    """``top = 1 * bottom`` through a Scale layer with a learnable scale.

    Caffe's native InfogainLoss aborts (LOG(FATAL) "cannot backpropagate to
    infogain inputs") under ``force_backward: true`` when H is a bottom, since
    force_backward asks every non-label bottom for a diff. So these nets do
    without force_backward: the learnable scale (exactly 1) makes Caffe
    back-propagate into the scores, and into nothing else.
    """
    return [f'layer {{ name: "scale_{bottom}" type: "Scale" bottom: "{bottom}" top: "{top}" '
            f'param {{ lr_mult: 1 }} scale_param {{ filler {{ type: "constant" value: 1 }} }} }}']


def comparison_net(shape, label_shape, *, native="InfogainLoss", ours="SoftmaxWithInfogainLoss",
                   source=None, h_bottom=False, axis=1, ignore_label=None, normalization="VALID",
                   prob_top=False, softmax_first=False):
    """Input x, y (and H) -> Split -> our layer and Caffe's, both with loss_weight 2."""
    C = shape[axis]
    lines = [f'layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {shape_text(shape)} }} }} }}',
             f'layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ {shape_text(label_shape)} }} }} }}']
    lines += backward_source("x", "xs")
    lines.append('layer { name: "split" type: "Split" bottom: "xs" top: "x_ours" top: "x_native" }')
    h_bottoms = ""
    if h_bottom:
        lines.append(f'layer {{ name: "H" type: "Input" top: "H" input_param {{ shape {{ dim: 1 dim: 1 dim: {C} dim: {C} }} }} }}')
        h_bottoms = 'bottom: "H"'
    keys = [f"axis: {axis}", f"normalization: {normalization}"]
    if source:
        keys.append(f"source: '{source}'")
    if ignore_label is not None:
        keys.append(f"ignore_label: {ignore_label}")
    ours_bottom = "x_ours"
    if softmax_first:
        lines.append(f'layer {{ name: "softmax" type: "Softmax" bottom: "x_ours" top: "p_ours" '
                     f'softmax_param {{ axis: {axis} }} }}')
        ours_bottom = "p_ours"
    tops = 'top: "ours"' + (' top: "prob_ours"' if prob_top else "")
    weights = "loss_weight: 2" + (" loss_weight: 0" if prob_top else "")
    lines.append(f'layer {{ name: "ours" type: "Python" bottom: "{ours_bottom}" bottom: "y" {h_bottoms} {tops} '
                 f'python_param {{ module: "caffe_losses" layer: "{ours}" '
                 f'param_str: "{{{", ".join(keys)}}}" }} {weights} }}')
    loss_param = f"normalization: {normalization}"
    if ignore_label is not None:
        loss_param += f" ignore_label: {ignore_label}"
    if native == "InfogainLoss":
        extra = f"infogain_loss_param {{ axis: {axis} {f'source: {chr(34)}{source}{chr(34)}' if source else ''} }}"
    else:
        extra = f"softmax_param {{ axis: {axis} }}"
    ntops = 'top: "native"' + (' top: "prob_native"' if prob_top else "")
    native_h = h_bottoms if native == "InfogainLoss" else ""   # SoftmaxWithLoss takes 2 bottoms
    lines.append(f'layer {{ name: "native" type: "{native}" bottom: "x_native" bottom: "y" {native_h} {ntops} '
                 f'{extra} loss_param {{ {loss_param} }} {weights} }}')
    if prob_top:
        lines.append('layer { name: "silence" type: "Silence" bottom: "prob_ours" bottom: "prob_native" }')
    return net_from_text("\n".join(lines) + "\n")


def run_both(net, x, y, H=None):
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = y
    if H is not None:
        net.blobs["H"].data[...] = H.reshape(net.blobs["H"].data.shape)
    net.forward()
    net.backward()
    ours, native = float(net.blobs["ours"].data[0]), float(net.blobs["native"].data)
    return ours, native, net.blobs["x_ours"].diff.copy(), net.blobs["x_native"].diff.copy()


def assert_same(net, x, y, H=None, rtol=2e-5, atol=2e-7):
    ours, native, g_ours, g_native = run_both(net, x, y, H)
    assert net.blobs["native"].data.shape == ()          # native losses have a 0-d top
    assert ours == pytest.approx(native, rel=rtol, abs=1e-6)
    np.testing.assert_allclose(g_ours, g_native, rtol=1e-4, atol=atol)
    assert np.any(g_ours != 0)
    return ours, g_ours


@pytest.fixture(scope="module")
def hfiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("h")
    rng = np.random.RandomState(5)
    files = {}
    for name, H in {"full5": rng.rand(5, 5), "diag5": np.diag(rng.rand(5) + 0.5),
                    "eye5": np.eye(5), "full4": rng.rand(4, 4) + np.eye(4)}.items():
        path = str(folder / f"{name}.binaryproto")
        save_h(path, H)
        files[name] = (path, H.astype(np.float32))
    return files


# ---------------------------------------------------------------------------
# Gradients in float32 inside a net, loss weight 2
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("hname,shape,label_shape,keys", [
    ("full5", (4, 5), (4,), ""),
    ("diag5", (4, 5), (4, 1), "normalization: FULL"),
    ("full4", (2, 4, 3, 2), (2, 1, 3, 2), "ignore_label: 255"),
    ("eye5", (2, 3, 5), (2, 3), "axis: -1, normalization: BATCH_SIZE"),
])
def test_softmax_infogain_gradient_in_net(hfiles, hname, shape, label_shape, keys):
    path, _ = hfiles[hname]
    axis = -1 if "axis: -1" in keys else 1
    net = layer_net("caffe_losses", "SoftmaxWithInfogainLoss", {"x": shape, "y": label_shape},
                    param_str="{source: '%s'%s}" % (path, ", " + keys if keys else ""), loss_weight=2)
    rng = np.random.RandomState(1)
    x = rng.randn(*shape).astype(np.float32)
    y = rng.randint(0, shape[axis], label_shape).astype(np.float32)
    if "ignore_label" in keys:
        y.flat[::4] = IGN
    check_net_gradient(net, {"x": x, "y": y}, wrt=["x"])
    assert np.all(net.blobs["y"].diff == 0)   # force_backward: labels get a zero diff


def test_softmax_infogain_gradient_in_net_with_h_bottom():
    H = RNG.rand(4, 4).astype(np.float32)
    net = layer_net("caffe_losses", "SoftmaxWithInfogainLoss",
                    {"x": (3, 4), "y": (3,), "H": (4, 4)}, loss_weight=2)
    x = RNG.randn(3, 4).astype(np.float32)
    net.blobs["H"].diff[...] = 5.0
    check_net_gradient(net, {"x": x, "y": np.array([0, 3, 1], np.float32), "H": H}, wrt=["x"])
    assert np.all(net.blobs["H"].diff == 0)


def test_infogain_on_probabilities_gradient_in_net(hfiles):
    path, _ = hfiles["full5"]
    net = layer_net("caffe_losses", "InfogainLoss", {"p": (4, 5), "y": (4,)},
                    param_str="{source: '%s'}" % path, loss_weight=2)
    p = RNG.uniform(0.3, 0.9, (4, 5)).astype(np.float32)
    check_net_gradient(net, {"p": p, "y": np.array([0, 4, 2, 2], np.float32)}, wrt=["p"],
                       stepsize=1e-3)


def test_infogain_after_softmax_gradient_in_net(hfiles):
    path, _ = hfiles["diag5"]
    text = textwrap.dedent(f"""
        force_backward: true
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 5 dim: 3 }} }} }}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
        layer {{ name: "sm" type: "Softmax" bottom: "x" top: "p" }}
        layer {{ name: "loss" type: "Python" bottom: "p" bottom: "y" top: "loss"
                python_param {{ module: "caffe_losses" layer: "InfogainLoss"
                               param_str: "{{source: '{path}', ignore_label: 255}}" }}
                loss_weight: 2 }}
    """)
    net = net_from_text(text)
    y = np.array([[0, 255, 4], [1, 2, 255]], np.float32)
    check_net_gradient(net, {"x": RNG.randn(2, 5, 3).astype(np.float32), "y": y}, wrt=["x"])


# ---------------------------------------------------------------------------
# Equality with Caffe's native InfogainLoss and SoftmaxWithLoss
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("ignore", [False, True])
def test_matches_native_infogain_with_source(hfiles, normalization, ignore):
    path, _ = hfiles["full5"]
    net = comparison_net((6, 5), (6,), source=path, normalization=normalization,
                         ignore_label=IGN if ignore else None)
    x, y = inputs((6, 5), (6,), ignore=ignore, seed=2)
    assert_same(net, x, y)


@pytest.mark.parametrize("hname", ["full4", "eye5"])
@pytest.mark.parametrize("normalization", ["VALID", "BATCH_SIZE"])
def test_matches_native_infogain_spatial_with_h_bottom(hfiles, hname, normalization):
    _, H = hfiles[hname]
    C = H.shape[0]
    shape = (2, C, 4, 3)
    net = comparison_net(shape, (2, 1, 4, 3), h_bottom=True, ignore_label=IGN,
                         normalization=normalization)
    x, y = inputs(shape, (2, 1, 4, 3), ignore=True, seed=3)
    assert_same(net, x, y, H)
    assert np.all(net.blobs["H"].diff == 0)


def test_matches_native_infogain_on_another_axis(hfiles):
    path, _ = hfiles["full4"]
    net = comparison_net((3, 2, 4), (3, 2), source=path, axis=2)
    x = RNG.randn(3, 2, 4).astype(np.float32)
    y = RNG.randint(0, 4, (3, 2)).astype(np.float32)
    assert_same(net, x, y)


def test_prob_top_matches_native(hfiles):
    path, _ = hfiles["full5"]
    net = comparison_net((4, 5, 2), (4, 2), source=path, prob_top=True)
    x, y = inputs((4, 5, 2), (4, 2), seed=4)
    assert_same(net, x, y)
    np.testing.assert_allclose(net.blobs["prob_ours"].data, net.blobs["prob_native"].data,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net.blobs["prob_ours"].data.sum(axis=1), 1, rtol=1e-6)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("shape,label_shape", [((8, 5), (8,)), ((2, 5, 3, 3), (2, 3, 3))])
def test_identity_h_equals_native_softmax_with_loss(hfiles, normalization, shape, label_shape):
    path, _ = hfiles["eye5"]
    net = comparison_net(shape, label_shape, native="SoftmaxWithLoss", source=path,
                         ignore_label=IGN, normalization=normalization)
    x, y = inputs(shape, label_shape, ignore=True, seed=5)
    assert_same(net, x, y)


def test_identity_h_bottom_equals_native_softmax_without_ignore_label():
    net = comparison_net((7, 3), (7,), native="SoftmaxWithLoss", h_bottom=True)
    x, y = inputs((7, 3), (7,), seed=6)
    assert_same(net, x, y, np.eye(3, dtype=np.float32))


def test_infogain_after_softmax_matches_native_on_scores(hfiles):
    # the classic form behind a Softmax layer = native InfogainLoss on raw scores
    path, _ = hfiles["full5"]
    net = comparison_net((5, 5), (5,), ours="InfogainLoss", source=path, softmax_first=True,
                         ignore_label=IGN)
    x, y = inputs((5, 5), (5,), ignore=True, seed=7)
    assert_same(net, x, y, rtol=1e-5, atol=1e-6)


def test_extreme_logits_ours_exact_native_clamped(hfiles):
    path, H = hfiles["full4"]
    net = comparison_net((2, 4), (2,), source=path)
    x = np.array([[1e4, -1e4, 0, 0], [-1e4, 1e4, -1e4, 1e4]], np.float32)
    y = np.array([1, 0], np.float32)
    ours, native, g_ours, g_native = run_both(net, x, y)
    # exact: log p = x - logsumexp(x); row 0: lse = 1e4, row 1: lse = 1e4 + log 2
    H = H.astype(np.float64)
    logp = np.array([[0, -2e4, -1e4, -1e4], [-2e4 - np.log(2), -np.log(2), -2e4 - np.log(2),
                                               -np.log(2)]])
    expected = -(H[1] @ logp[0] + H[0] @ logp[1]) / 2
    assert np.isfinite(ours) and ours == pytest.approx(expected, rel=1e-6)
    # Caffe clamps log p at log(1e-20) = -46.05: a far smaller loss
    clamped = -(H[1] @ np.maximum(logp[0], np.log(1e-20)) + H[0] @ np.maximum(logp[1], np.log(1e-20))) / 2
    assert native == pytest.approx(clamped, rel=1e-5) and native < ours / 100
    # gradients are exact in both (p * rowsum - H[y]): equal and finite
    assert np.all(np.isfinite(g_ours))
    np.testing.assert_allclose(g_ours, g_native, rtol=1e-5, atol=1e-6)
    p = softmax(x.astype(np.float64))
    expected_grad = 2 * (p * H.sum(1)[[1, 0]][:, None] - H[[1, 0]]) / 2
    np.testing.assert_allclose(g_ours, expected_grad, rtol=1e-5, atol=1e-6)


def test_probabilities_at_zero_give_finite_loss_and_gradient(hfiles):
    path, H = hfiles["full5"]
    net = layer_net("caffe_losses", "InfogainLoss", {"p": (2, 5), "y": (2,)},
                    param_str="{source: '%s'}" % path, loss_weight=2)
    p = np.array([[1, 0, 0, 0, 0], [0, 0, 0.5, 0.5, 0]], np.float32)
    net.blobs["p"].data[...] = p
    net.blobs["y"].data[...] = [3, 2]
    net.forward()
    net.backward()
    q = np.maximum(p.astype(np.float64), 1e-20)
    H = H.astype(np.float64)
    expected = -(H[3] @ np.log(q[0]) + H[2] @ np.log(q[1])) / 2
    assert float(net.blobs["loss"].data[0]) == pytest.approx(expected, rel=1e-5)
    grad = net.blobs["p"].diff
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, 2 * -H[[3, 2]] / q / 2, rtol=1e-5)


# ---------------------------------------------------------------------------
# Constant: H as a third bottom without a data layer
# ---------------------------------------------------------------------------

def constant_net(source, C=5, native=True):
    text = textwrap.dedent(f"""
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 6 dim: {C} }} }} }}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 6 }} }} }}
        layer {{ name: "H" type: "Python" top: "H"
                python_param {{ module: "caffe_losses" layer: "Constant" param_str: "{{source: '{source}'}}" }} }}
        {backward_source("x", "xs")[0]}
        layer {{ name: "split" type: "Split" bottom: "xs" top: "x_ours" top: "x_native" }}
        layer {{ name: "ours" type: "Python" bottom: "x_ours" bottom: "y" bottom: "H" top: "ours"
                python_param {{ module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" }} loss_weight: 2 }}
    """)
    if native:
        text += ('layer { name: "native" type: "InfogainLoss" bottom: "x_native" bottom: "y" '
                 'bottom: "H" top: "native" loss_weight: 2 }\n')
    return net_from_text(text)


def test_constant_feeds_h_to_ours_and_native(hfiles):
    path, H = hfiles["full5"]
    net = constant_net(path)
    assert net.blobs["H"].data.shape == (1, 1, 5, 5)
    x, y = inputs((6, 5), (6,), seed=8)
    for _ in range(3):   # emitted unchanged every iteration, even if overwritten in between
        assert_same(net, x, y)
        np.testing.assert_array_equal(net.blobs["H"].data.reshape(5, 5), H)
        net.blobs["H"].data[...] = -1
    # and the loss equals the one with H from 'source'
    ref = comparison_net((6, 5), (6,), source=path)
    assert run_both(ref, x, y)[0] == pytest.approx(run_both(net, x, y)[0], rel=1e-6)


def test_constant_reads_npy(tmp_path):
    H = RNG.rand(5, 5).astype(np.float32)
    np.save(tmp_path / "H.npy", H)
    net = constant_net(str(tmp_path / "H.npy"), native=False)
    x, y = inputs((6, 5), (6,), seed=9)
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = y
    net.forward()
    assert net.blobs["H"].data.shape == (5, 5)
    np.testing.assert_array_equal(net.blobs["H"].data, H)
    p = softmax(x.astype(np.float64))
    yi = y.astype(int)
    expected = -np.sum(H[yi].astype(np.float64) * np.log(p)) / 6
    assert float(net.blobs["ours"].data[0]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("layer", ["SoftmaxWithInfogainLoss", "InfogainLoss"])
@pytest.mark.parametrize("keys", ["", ", ignore_label: 255"])
def test_layer_follows_shape_changes_and_checks_every_batch(tmp_path, layer, keys):
    H = RNG.rand(4, 4) + np.eye(4)
    path = str(tmp_path / "H.npy")
    np.save(path, H)
    net = layer_net("caffe_losses", layer, {"x": (3, 4), "y": (3,)},
                    param_str="{source: '%s'%s}" % (path, keys), loss_weight=2)
    for n in (3, 3, 5, 2, 5):
        if net.blobs["x"].data.shape[0] != n:
            net.blobs["x"].reshape(n, 4)
            net.blobs["y"].reshape(n)
            net.reshape()
        x = softmax(RNG.randn(n, 4)) if layer == "InfogainLoss" else RNG.randn(n, 4)
        y = RNG.randint(0, 4, n).astype(np.float32)
        net.blobs["x"].data[...] = x
        net.blobs["y"].data[...] = y
        net.forward()
        net.backward()
        core_fwd = core.infogain_forward if layer == "InfogainLoss" else core.softmax_infogain_forward
        core_bwd = core.infogain_backward if layer == "InfogainLoss" else core.softmax_infogain_backward
        loss, cache = core_fwd(net.blobs["x"].data.astype(np.float64), y, H)
        assert float(net.blobs["loss"].data[0]) == pytest.approx(loss, rel=1e-5)
        np.testing.assert_allclose(net.blobs["x"].diff, 2 * core_bwd(cache), rtol=1e-4, atol=1e-6)
        # a bad label in an unchanged shape is still caught, with its index
        y[n - 1] = 7
        net.blobs["y"].data[...] = y
        with pytest.raises(ValueError, match=rf"{layer}: bottom 'label' holds 7\.0 at index \({n - 1},\)"):
            net.forward()
