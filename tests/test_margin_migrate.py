"""migrate's rules for the angular-margin forks, each fork's formula transcribed from its source.

* SphereFace's MarginInnerProduct (wy1iu/sphereface, tools/caffe-sphereface/src/caffe/layers/
  margin_inner_product_layer.cpp): translated; the same logits and lambda; --weights carries its
  class weights (a .caffemodel written here for the fork's layer name).
* CombinedMargin (gehaocool/CombinedMargin-caffe and xialuxi/arcface-caffe combined_margin_layer.cpp),
  CosinAddm (xialuxi/arcface-caffe cosin_add_m_layer.cpp), LabelSpecificAdd (happynear/caffe-windows
  label_specific_add.cpp, AM-Softmax's nets): refused with the layers named and the MarginProduct
  that replaces the chain; that MarginProduct gives the chain's logits and gradients.
"""

import math
import os
import subprocess
import sys
import textwrap

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from caffe_losses.glue.testing import net_from_text
from caffe_losses.losses.margin import core
from caffe_losses.nets.migrate import migrate_text

# ---------------------------------------------------------------------------
# The forks' formulas, transcribed
# ---------------------------------------------------------------------------


def caffe_sign(a):
    return (a > 0).astype(a.dtype) - (a < 0).astype(a.dtype)       # caffe_cpu_sign


def sphereface_forward(x, w, label, margin_type, lam):
    """wy1iu/sphereface MarginInnerProductLayer::Forward_cpu (W rows normalised in place first)."""
    w = w / np.sqrt((w * w).sum(1, keepdims=True))
    x_norm = np.sqrt((x * x).sum(1))
    cos_t = (x @ w.T) / x_norm[:, None]
    sign_0 = caffe_sign(cos_t)
    top = x @ w.T
    rows, y = np.arange(len(x)), label.astype(int)
    c = cos_t[rows, y]
    if margin_type == "SINGLE":
        return top, w
    if margin_type == "DOUBLE":
        t = x_norm * (2 * sign_0[rows, y] * c ** 2 - 1)
    elif margin_type == "TRIPLE":
        sign_1 = caffe_sign(np.abs(c) - 0.5)
        sign_2 = sign_0[rows, y] * (1 + sign_1) - 2
        t = x_norm * (sign_1 * (4 * c ** 3 - 3 * c) + sign_2)
    else:
        sign_3 = sign_0[rows, y] * caffe_sign(2 * c ** 2 - 1)
        sign_4 = 2 * sign_0[rows, y] + sign_3 - 3
        t = x_norm * (sign_3 * (8 * c ** 4 - 8 * c ** 2 + 1) + sign_4)
    top[rows, y] = t
    top = (top + lam * (x @ w.T)) / (1 + lam)
    return top, w


def sphereface_lambda(it, base, gamma, power, lambda_min):
    # iter_ += 1 first; lambda_ = max(base * (1 + gamma * iter_)^-power, lambda_min)
    return max(base * (1 + gamma * it) ** (-power), lambda_min)


def sphereface_backward(x, w, label, margin_type, lam, top_diff):
    """MarginInnerProductLayer::Backward_cpu, loop by loop (w: the unit rows its forward left)."""
    x_norm = np.sqrt((x * x).sum(1))
    cos_t = (x @ w.T) / x_norm[:, None]
    sign_0 = caffe_sign(cos_t)
    w_diff = top_diff.T @ x                                   # caffe_cpu_gemm(CblasTrans, ..., top_diff, bottom_data)
    if margin_type == "SINGLE":
        return top_diff @ w, w_diff
    bottom_diff = np.zeros_like(x)
    for i in range(len(x)):
        gt = int(label[i])
        for j in range(w.shape[0]):
            c, s0 = cos_t[i, j], sign_0[i, j]
            if j != gt:
                bottom_diff[i] += 1.0 / (1.0 + lam) * top_diff[i, j] * w[j]
                continue
            if margin_type == "DOUBLE":
                coeff_w = 4.0 * s0 * c
                coeff_x = 1.0 / (-x_norm[i]) * (2.0 * s0 * c * c + 1.0)
            elif margin_type == "TRIPLE":
                s1 = caffe_sign(np.array(abs(c) - 0.5))
                s2 = s0 * (1 + s1) - 2
                coeff_w = s1 * (12.0 * c * c - 3.0)
                coeff_x = 1.0 / (-x_norm[i]) * (8.0 * s1 * c ** 3 - s2)
            else:
                s3 = s0 * caffe_sign(np.array(2 * c * c - 1))
                s4 = 2 * s0 + s3 - 3
                coeff_w = s3 * (32.0 * c ** 3 - 16.0 * c)
                coeff_x = 1.0 / (-x_norm[i]) * (s3 * (24.0 * c ** 4 - 8.0 * c * c - 1.0) - s4)
            coeff_norm = math.sqrt(coeff_w * coeff_w + coeff_x * coeff_x)
            coeff_w, coeff_x = coeff_w / coeff_norm, coeff_x / coeff_norm
            bottom_diff[i] += 1.0 / (1.0 + lam) * top_diff[i, j] * coeff_w * w[j]
            bottom_diff[i] += 1.0 / (1.0 + lam) * top_diff[i, j] * coeff_x * x[i]
    bottom_diff += lam / (1.0 + lam) * top_diff @ w           # + lambda/(1 + lambda) * w
    return bottom_diff, w_diff


def normalized_chain(x, w):
    """The forks' Normalize (L2 of the features) and InnerProduct with normalize: true (rows of W)."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    v = w / np.linalg.norm(w, axis=1, keepdims=True)
    return u, v, u @ v.T


def chain_grads(x, w, dcos):
    """d/dx and d/dW through u = x/|x|, v = W/|W|, cos = u v^T (exact, the forks' normalize layers)."""
    u, v, _ = normalized_chain(x, w)
    du, dv = dcos @ v, dcos.T @ u
    dx = (du - (du * u).sum(1, keepdims=True) * u) / np.linalg.norm(x, axis=1, keepdims=True)
    dw = (dv - (dv * v).sum(1, keepdims=True) * v) / np.linalg.norm(w, axis=1, keepdims=True)
    return dx, dw


def combined_margin(cos, label, m1, m2, m3):
    """CombinedMarginLayer::Forward_cpu / Backward_cpu: top and d top / d cos at the label."""
    top, slope = cos.copy(), np.ones_like(cos)
    for i, gt in enumerate(label.astype(int)):
        if gt < 0:
            continue
        theta = math.acos(cos[i, gt])
        top[i, gt] = math.cos(m1 * theta + m2) - m3
        slope[i, gt] = m1 * (1 - cos[i, gt] ** 2) ** -0.5 * math.sin(m1 * theta + m2)
    return top, slope


def cosin_add_m(cos, label, m):
    """arcface-caffe CosinAddmLayer: cos(theta + m), or cos - sin(pi - m) m past cos(pi - m)."""
    threshold = math.cos(math.pi - m)
    top, slope = cos.copy(), np.ones_like(cos)
    for i, gt in enumerate(label.astype(int)):
        c = cos[i, gt]
        s = math.sqrt(1 - c * c)
        if c <= threshold:
            top[i, gt], slope[i, gt] = c - math.sin(math.pi - m) * m, 1.0
        else:
            top[i, gt] = c * math.cos(m) - s * math.sin(m)
            slope[i, gt] = math.cos(m) + math.sin(m) * c / s
    return top, slope


def label_specific_add(cos, label, bias):
    """happynear LabelSpecificAddLayer (TRAIN): cos + bias at the label where cos > -bias; gradient 1."""
    top = cos.copy()
    for i, gt in enumerate(label.astype(int)):
        if top[i, gt] > -bias:
            top[i, gt] += bias
    return top, np.ones_like(cos)


# ---------------------------------------------------------------------------
# SphereFace: translated
# ---------------------------------------------------------------------------

SPHEREFACE_NET = textwrap.dedent("""\
    name: "sphereface_tail"
    layer { name: "data" type: "Input" top: "fc5" top: "label"
            input_param { shape { dim: 6 dim: 4 } shape { dim: 6 } } }
    layer {
      name: "fc6"
      type: "MarginInnerProduct"
      bottom: "fc5"
      bottom: "label"
      top: "fc6"
      top: "lambda"
      param {
        lr_mult: 1
        decay_mult: 1
      }
      margin_inner_product_param {
        num_output: 5
        type: TYPE
        weight_filler {
          type: "xavier"
        }
        base: 1000
        gamma: 0.12
        power: 1
        lambda_min: 5
        iteration: 0
      }
    }
    layer { name: "softmax_loss" type: "SoftmaxWithLoss" bottom: "fc6" bottom: "label" top: "softmax_loss" }
    """)


@pytest.mark.parametrize("margin_type", ["SINGLE", "DOUBLE", "TRIPLE", "QUADRUPLE"])
def test_sphereface_logits_and_lambda_as_the_fork(margin_type):
    result = migrate_text(SPHEREFACE_NET.replace("TYPE", margin_type))
    assert not result.problems, result.problems
    assert "MarginInnerProduct" not in result.text and "loss_weight" not in result.text.split("softmax_loss")[0]
    net = net_from_text("force_backward: true\n" + result.text)
    rng = np.random.RandomState(0)
    x, y = rng.randn(6, 4).astype(np.float32), np.array([0, 1, 2, 3, 4, 0], np.float32)
    w = net.params["fc6"][0].data.astype(np.float64).copy()
    for it in (1, 2, 3):
        net.blobs["fc5"].data[...], net.blobs["label"].data[...] = x, y
        net.forward()
        lam = sphereface_lambda(it, 1000, 0.12, 1, 5)
        expected, _ = sphereface_forward(x.astype(np.float64), w, y, margin_type, lam)
        np.testing.assert_allclose(net.blobs["fc6"].data, expected, rtol=2e-4, atol=2e-4)
        assert float(net.blobs["lambda"].data[0]) == pytest.approx(lam if margin_type != "SINGLE" else 0.0,
                                                                   rel=1e-6)


@pytest.mark.parametrize("margin_type", ["SINGLE", "DOUBLE", "TRIPLE", "QUADRUPLE"])
def test_sphereface_gradients_are_the_forks(margin_type):
    # migrate sets gradient: sphereface: the fork's Backward_cpu, its W normalised in place
    result = migrate_text(SPHEREFACE_NET.replace("TYPE", margin_type))
    assert "gradient: sphereface" in result.text
    net = net_from_text("force_backward: true\n" + result.text)
    rng = np.random.RandomState(6)
    x, y = rng.randn(6, 4).astype(np.float32), np.array([0, 1, 2, 3, 4, 0], np.float32)
    for it in (1, 2):
        net.params["fc6"][0].diff[...] = 0
        net.blobs["fc5"].data[...], net.blobs["label"].data[...] = x, y
        net.forward()
        w = net.params["fc6"][0].data.astype(np.float64).copy()
        np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1, rtol=1e-6)     # normalised in place
        dz = rng.randn(6, 5).astype(np.float32)
        net.blobs["fc6"].diff[...] = dz
        net.backward(start="fc6")
        lam = sphereface_lambda(it, 1000, 0.12, 1, 5)
        bottom_diff, w_diff = sphereface_backward(x.astype(np.float64), w, y, margin_type, lam, dz.astype(np.float64))
        np.testing.assert_allclose(net.blobs["fc5"].diff, bottom_diff, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(net.params["fc6"][0].diff, w_diff, rtol=1e-4, atol=1e-5)


def test_gradient_sphereface_only_with_the_forks_logits():
    from caffe_losses.glue.testing import layer_net
    with pytest.raises(ValueError, match="'gradient: sphereface'.*feature_norm=False"):
        layer_net("caffe_losses", "MarginProduct", {"x": (2, 3), "label": (2,)}, tops=("z",), loss_weight=None,
                  param_str="{num_classes: 4, m1: 4, gradient: sphereface}")


def test_sphereface_single_gradient_is_the_forks():
    # SINGLE: the fork's bottom diff is top_diff W (unit rows): d(|x| cos)/dx exactly
    result = migrate_text(SPHEREFACE_NET.replace("TYPE", "SINGLE"))
    net = net_from_text("force_backward: true\n" + result.text)
    rng = np.random.RandomState(1)
    x, y = rng.randn(6, 4).astype(np.float32), np.array([0, 1, 2, 3, 4, 0], np.float32)
    net.blobs["fc5"].data[...], net.blobs["label"].data[...] = x, y
    net.forward()
    dz = rng.randn(6, 5).astype(np.float32)
    net.blobs["fc6"].diff[...] = dz
    net.backward(start="fc6")
    w = net.params["fc6"][0].data.astype(np.float64)
    _, wn = sphereface_forward(x.astype(np.float64), w, y, "SINGLE", 0)
    np.testing.assert_allclose(net.blobs["fc5"].diff, dz @ wn, rtol=1e-4, atol=1e-5)


def _fork_model(path, shapes, name="fc6", layer_type="MarginInnerProduct", seed=2):
    """A .caffemodel as the fork's caffe writes it for the layer (blobs only; the fork's own
    margin_inner_product_param is not in BVLC's caffe.proto, and Caffe copies by name)."""
    rng = np.random.RandomState(seed)
    model = caffe_pb2.NetParameter(name="sphereface_tail")
    layer = model.layer.add(name=name, type=layer_type, bottom=["fc5", "label"], top=["fc6", "lambda"])
    arrays = []
    for shape in shapes:
        a = rng.randn(*shape).astype(np.float32)
        blob = layer.blobs.add()
        blob.shape.dim[:] = list(shape)
        blob.data[:] = a.ravel().tolist()
        arrays.append(a)
    path.write_bytes(model.SerializeToString())
    return arrays


def _cli(*args, cwd):
    env = dict(os.environ, GLOG_minloglevel="2")
    tool = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
    return subprocess.run([tool, "migrate", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("margin_type", ["SINGLE", "QUADRUPLE"])
def test_weights_carry_the_forks_class_weights(tmp_path, margin_type):
    (tmp_path / "fork.prototxt").write_text(SPHEREFACE_NET.replace("TYPE", margin_type))
    (w_fork,) = _fork_model(tmp_path / "fork.caffemodel", [(5, 4)])
    proc = _cli("fork.prototxt", "-o", "ours.prototxt", "--weights", "fork.caffemodel",
                "--weights-out", "ours.caffemodel", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "copied, the class weights (5x4)" in proc.stdout
    assert ("iteration count starts at 0" in proc.stdout) == (margin_type == "QUADRUPLE")
    # SINGLE: one blob, as the fork's: the model loads as it is; QUADRUPLE: blob 1 (the count) added
    assert (tmp_path / "ours.caffemodel").exists() == (margin_type == "QUADRUPLE")
    model = "ours.caffemodel" if margin_type == "QUADRUPLE" else "fork.caffemodel"
    net = caffe.Net(str(tmp_path / "ours.prototxt"), caffe.TRAIN, weights=str(tmp_path / model))
    np.testing.assert_array_equal(net.params["fc6"][0].data, w_fork)
    if margin_type == "QUADRUPLE":
        assert net.params["fc6"][1].data.tolist() == [0.0]
    x, y = np.random.RandomState(3).randn(6, 4).astype(np.float32), np.array([4, 3, 2, 1, 0, 0], np.float32)
    net.blobs["fc5"].data[...], net.blobs["label"].data[...] = x, y
    net.forward()
    expected, _ = sphereface_forward(x.astype(np.float64), w_fork.astype(np.float64), y, margin_type,
                                     sphereface_lambda(1, 1000, 0.12, 1, 5))
    np.testing.assert_allclose(net.blobs["fc6"].data, expected, rtol=2e-4, atol=2e-4)


def test_weights_of_another_shape_are_refused_and_nothing_written(tmp_path):
    (tmp_path / "fork.prototxt").write_text(SPHEREFACE_NET.replace("TYPE", "DOUBLE"))
    _fork_model(tmp_path / "fork.caffemodel", [(7, 4)])
    proc = _cli("fork.prototxt", "-o", "ours.prototxt", "--weights", "fork.caffemodel",
                "--weights-out", "ours.caffemodel", cwd=tmp_path)
    assert proc.returncode != 0
    assert "layer 'fc6'" in proc.stderr and "7x4" in proc.stderr and "num_classes: 5" in proc.stderr
    assert not (tmp_path / "ours.prototxt").exists() and not (tmp_path / "ours.caffemodel").exists()


def test_sphereface_settings_it_cannot_express_are_refused():
    bad = SPHEREFACE_NET.replace("TYPE", "DOUBLE").replace("iteration: 0", "iteration: 0\n    axis: 2")
    result = migrate_text(bad)
    assert any("axis: 2" in p for p in result.problems)
    assert "MarginInnerProduct" in result.text            # nothing rewritten
    no_block = SPHEREFACE_NET.split("  margin_inner_product_param")[0] + "}\n"
    result = migrate_text(no_block + 'layer { name: "l" type: "SoftmaxWithLoss" bottom: "fc6" bottom: "label" top: "l" }\n')
    assert any("cannot tell the number of classes" in p for p in result.problems)


def test_sphereface_without_param_gets_both_specs_and_trains(tmp_path):
    text = SPHEREFACE_NET.replace("TYPE", "TRIPLE").replace(
        "  param {\n    lr_mult: 1\n    decay_mult: 1\n  }\n", "")
    result = migrate_text(text)
    assert not result.problems
    assert result.text.count("param { lr_mult") == 2          # W's, then the count's
    assert "param { lr_mult: 1 decay_mult: 1 }" in result.text
    assert result.text.index("param { lr_mult: 1 decay_mult: 1 }") < result.text.index(
        "param { lr_mult: 0 decay_mult: 0 }")


# ---------------------------------------------------------------------------
# The cosine-margin forks: refused, with the MarginProduct that replaces the chain
# ---------------------------------------------------------------------------

CHAIN = textwrap.dedent("""\
    name: "fork_chain"
    layer { name: "data" type: "Input" top: "fc5" top: "label"
            input_param { shape { dim: 6 dim: 4 } shape { dim: 6 } } }
    layer { name: "norm1" type: "Normalize" bottom: "fc5" top: "norm1" }
    layer { name: "fc6_l2" type: "InnerProduct" bottom: "norm1" top: "fc6"
            param { lr_mult: 1 }
            inner_product_param { num_output: 5 weight_filler { type: "xavier" } bias_term: false } }
    MARGIN
    layer { name: "fc6_margin_scale" type: "Scale" bottom: "fc6_margin" top: "fc6_margin_scale"
            param { lr_mult: 0 decay_mult: 0 } scale_param { filler { type: "constant" value: 30 } } }
    layer { name: "softmax_loss" type: "SoftmaxWithLoss" bottom: "fc6_margin_scale" bottom: "label"
            top: "softmax_loss" }
    """)

MARGINS = {
    "combined": ('layer { name: "combined_margin" type: "CombinedMargin" bottom: "fc6" bottom: "label" '
                 'top: "fc6_margin" combined_margin_param { m1: 1 m2: 0.3 m3: 0.2 } }',
                 "{num_classes: 5, scale: 30, m2: 0.3, m3: 0.2}"),
    "arcface": ('layer { name: "arc" type: "CosinAddm" bottom: "fc6" bottom: "label" top: "fc6_margin" '
                'cosin_add_m_param { m: 0.5 } }', "{num_classes: 5, scale: 30, m2: 0.5, m3: 0}"),
    "amsoftmax": ('layer { name: "label_specific_margin" type: "LabelSpecificAdd" bottom: "fc6" '
                  'bottom: "label" top: "fc6_margin" label_specific_add_param { bias: -0.35 } }',
                  "{num_classes: 5, scale: 30, m2: 0, m3: 0.35}"),
}


@pytest.mark.parametrize("fork", sorted(MARGINS))
def test_cosine_margin_forks_are_refused_with_the_replacement(fork):
    layer_text, expected = MARGINS[fork]
    result = migrate_text(CHAIN.replace("MARGIN", layer_text))
    assert len(result.problems) == 1, result.problems
    problem = result.problems[0]
    for name in ("'norm1' (Normalize)", "'fc6_l2' (InnerProduct, normalize: true)", "Scale",
                 'name: "fc6_l2"', 'bottom: "fc5"', "docs/margin.md"):
        assert name in problem, (name, problem)
    assert expected.replace("scale: 30", "scale: <the Scale's value>") in problem
    assert result.text == CHAIN.replace("MARGIN", layer_text)      # nothing written


def test_combined_margin_with_m1_is_refused_for_its_formula():
    layer_text = MARGINS["combined"][0].replace("m1: 1", "m1: 1.35")
    result = migrate_text(CHAIN.replace("MARGIN", layer_text))
    assert any("m1: 1.35" in p and "not monotonic" in p for p in result.problems)


def _ours(param_str, x, w, y):
    opts = dict(scale=30.0, m2=0.0, m3=0.0)
    for item in param_str.strip("{}").split(","):
        key, value = (s.strip() for s in item.split(":"))
        if key in ("scale", "m2", "m3"):
            opts[key] = float(value)
    return core.margin_forward(x, w, y, **opts)


@pytest.mark.parametrize("fork", sorted(MARGINS))
def test_the_replacement_gives_the_chains_logits_and_gradients(fork):
    rng = np.random.RandomState(4)
    w = rng.randn(5, 6)
    y = rng.randint(0, 5, 40)
    x = w[y] * rng.uniform(-0.5, 1.5, (40, 1)) + rng.randn(40, 6)    # cosines over the whole range
    dz = rng.randn(40, 5)
    _, _, cos = normalized_chain(x, w)
    if fork == "combined":
        top, slope = combined_margin(cos, y, 1.0, 0.3, 0.2)
        keep = cos[np.arange(40), y] > math.cos(math.pi - 0.3) + 1e-3   # where the fork has no fallback
    elif fork == "arcface":
        top, slope = cosin_add_m(cos, y, 0.5)
        keep = np.abs(cos[np.arange(40), y] - math.cos(math.pi - 0.5)) > 1e-3
    else:
        top, slope = label_specific_add(cos, y, -0.35)
        keep = cos[np.arange(40), y] > 0.35 + 1e-3                       # where the fork adds its bias
    assert keep.sum() >= 10
    z, cache = _ours(MARGINS[fork][1], x, w, y)
    fork_logits = 30 * top
    np.testing.assert_allclose(z[keep], fork_logits[keep], rtol=1e-10, atol=1e-10)
    # gradients: the fork's slope at the label, the scale, then the (exact) normalize layers
    dz_kept = dz * keep[:, None]
    gx, gw = core.margin_backward(cache, dz_kept)
    fx, fw = chain_grads(x, w, 30 * dz_kept * slope)
    np.testing.assert_allclose(gx, fx, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gw, fw, rtol=1e-8, atol=1e-10)


def test_where_the_forks_differ_from_marginproduct():
    # CombinedMargin past theta + m2 = pi: the fork's cos(theta + m2) rises; MarginProduct falls back
    cos = np.array([[-0.99, 0.1]])
    top, _ = combined_margin(cos, np.array([0]), 1.0, 0.3, 0.0)
    g, _, _ = core.target_margin(cos[:, 0], np.sqrt(1 - cos[:, 0] ** 2), m2=0.3)
    assert top[0, 0] > -0.99 and g[0] == pytest.approx(-0.99 - 0.3 * math.sin(0.3))
    # AM-Softmax's LabelSpecificAdd below cos = m: no margin in the fork, m3 subtracted here
    top, _ = label_specific_add(np.array([[0.2, 0.1]]), np.array([0]), -0.35)
    assert top[0, 0] == pytest.approx(0.2)
    g, _, _ = core.target_margin(np.array([0.2]), np.array([math.sqrt(1 - 0.04)]), m2=0, m3=0.35)
    assert g[0] == pytest.approx(0.2 - 0.35)


def test_migrated_sphereface_net_trains_with_weight_decay(tmp_path):
    # the count's param { lr_mult: 0 decay_mult: 0 } that migrate adds keeps the solver off blob 1
    result = migrate_text(SPHEREFACE_NET.replace("TYPE", "QUADRUPLE"))
    (tmp_path / "net.prototxt").write_text(result.text)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path}/net.prototxt"\nbase_lr: 0.1\nmomentum: 0.9\nweight_decay: 0.0005\n'
        f'lr_policy: "fixed"\nmax_iter: 10\nsnapshot_after_train: false\nrandom_seed: 1\n')
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    solver.net.blobs["fc5"].data[...] = np.random.RandomState(5).randn(6, 4)
    solver.net.blobs["label"].data[...] = [0, 1, 2, 3, 4, 0]
    w0 = solver.net.params["fc6"][0].data.copy()
    solver.step(4)
    assert solver.net.params["fc6"][1].data.tolist() == [4.0]
    assert not np.allclose(solver.net.params["fc6"][0].data, w0)
    assert float(solver.net.blobs["lambda"].data[0]) == pytest.approx(sphereface_lambda(4, 1000, 0.12, 1, 5))


def test_the_replacement_loads_the_forks_normalised_inner_product_weights(tmp_path):
    # the docs' recipe: MarginProduct named as the fork's InnerProduct (normalize: true, no bias)
    (w,) = _fork_model(tmp_path / "fork.caffemodel", [(5, 4)], name="fc6_l2", layer_type="InnerProduct")
    net_text = textwrap.dedent("""\
        layer { name: "data" type: "Input" top: "fc5" top: "label"
                input_param { shape { dim: 6 dim: 4 } shape { dim: 6 } } }
        layer { name: "fc6_l2" type: "Python" bottom: "fc5" bottom: "label" top: "fc6_margin_scale"
                python_param { module: "caffe_losses" layer: "MarginProduct"
                               param_str: "{num_classes: 5, scale: 30, m2: 0, m3: 0.35}" }
                param { lr_mult: 1 } }
        """)
    net = net_from_text(net_text, weights=str(tmp_path / "fork.caffemodel"))
    np.testing.assert_array_equal(net.params["fc6_l2"][0].data, w)
