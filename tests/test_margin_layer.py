"""MarginProduct in real caffe.Nets: float32 gradients (features and class weights), equality with
native InnerProduct where the two coincide, TEST phase / no label, SphereFace's iteration blob,
snapshots and resume, Caffe's filler and seed, and bad input naming the layer and the key."""

import math
import textwrap

import caffe
import numpy as np
import pytest

from caffe_losses.glue.testing import check_net_gradient, layer_net, net_from_text
from caffe_losses.losses.margin import core

from test_margin_core import reference_logits


def margin_net(param_str, n=6, d=4, label=True, tops=("logits",), phase=None):
    bottoms = {"x": (n, d), "label": (n,)} if label else {"x": (n, d)}
    if phase is None:
        return layer_net("caffe_losses", "MarginProduct", bottoms, tops=tops, loss_weight=None,
                         param_str=param_str)
    from caffe_losses.glue.testing import layer_net_param
    from google.protobuf import text_format
    param = layer_net_param("caffe_losses", "MarginProduct", bottoms, tops=tops, loss_weight=None,
                            param_str=param_str)
    return net_from_text(text_format.MessageToString(param), phase=phase)


def _inputs(seed, n=6, d=4, c=5):
    rng = np.random.RandomState(seed)
    return rng.randn(n, d).astype(np.float32), rng.randint(0, c, n).astype(np.float32)


PARAMS = ["{num_classes: 5, scale: 4}", "{num_classes: 5, scale: 4, m2: 0.3, m3: 0.2}",
          "{num_classes: 5, scale: 3, m2: 0, m3: 0.35}", "{num_classes: 5, scale: 4, m2: 0.5, easy_margin: true}",
          "{num_classes: 5, m1: 4, feature_norm: true, base: 3, lambda_min: 1}",
          "{num_classes: 5, m1: 2, scale: 3, m2: 0}", "{num_classes: 5, scale: 2, feature_norm: false, ignore_label: 1}"]


def _far_from_kinks(net, x, y):
    w = net.params["under_test"][0].data.astype(np.float64)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    v = w / np.linalg.norm(w, axis=1, keepdims=True)
    t = (u * v[y.astype(int)]).sum(1)
    return np.abs(t[:, None] - np.array([0.0, -math.cos(0.5), -math.cos(0.3), math.cos(math.pi / 4),
                                         -math.cos(math.pi / 4), 1, -1])).min() > 0.05


@pytest.mark.parametrize("param_str", PARAMS)
def test_float32_gradients_in_a_net(param_str):
    net = margin_net(param_str)
    for seed in range(50):
        x, y = _inputs(seed)
        if _far_from_kinks(net, x, y):
            break
    check_net_gradient(net, {"x": x, "label": y}, wrt=["x"], stepsize=1e-3, threshold=2e-2)
    # the class weights: Caffe's GradientChecker perturbs blobs as well; the same here
    coefs = np.random.RandomState(3).randn(6, 5).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["label"].data[...] = y
    net.params["under_test"][0].diff[...] = 0
    net.forward()
    net.backward(logits=coefs)
    analytic = net.params["under_test"][0].diff.astype(np.float64).copy()
    w = net.params["under_test"][0].data
    numeric = np.zeros_like(analytic)
    for idx in np.ndindex(w.shape):
        old = float(w[idx])
        values = []
        for h in (1e-3, -1e-3):
            w[idx] = old + h
            net.forward()
            values.append(float((net.blobs["logits"].data.astype(np.float64) * coefs).sum()))
        w[idx] = old
        numeric[idx] = (values[0] - values[1]) / 2e-3
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-2)


def test_weight_diff_accumulates_as_caffe_parameter_diffs_do():
    net = margin_net("{num_classes: 5, scale: 4}")
    x, y = _inputs(1)
    net.blobs["x"].data[...], net.blobs["label"].data[...] = x, y
    net.params["under_test"][0].diff[...] = 0
    net.forward()
    net.backward(logits=np.ones((6, 5), np.float32))
    once = net.params["under_test"][0].diff.copy()
    net.forward()
    net.backward(logits=np.ones((6, 5), np.float32))
    np.testing.assert_allclose(net.params["under_test"][0].diff, 2 * once, rtol=1e-6)


def test_logits_in_a_net_match_the_reference():
    for param_str, kw in [("{num_classes: 5, scale: 4, m2: 0.5, m3: 0.1}", dict(scale=4, m2=0.5, m3=0.1)),
                          ("{num_classes: 5, m1: 4, feature_norm: true, base: 10, gamma: 1}",
                           dict(scale=None, feature_norm=True, m1=4, lam=10 / 2))]:
        net = margin_net(param_str)
        x, y = _inputs(2)
        net.blobs["x"].data[...], net.blobs["label"].data[...] = x, y
        net.forward()       # the first forward is SphereFace's iteration 1: lambda = 10 (1 + 1)^-1
        w = net.params["under_test"][0].data.astype(np.float64)
        ref = reference_logits(x.astype(np.float64), w, y.astype(int), **kw)
        np.testing.assert_allclose(net.blobs["logits"].data, ref, rtol=1e-4, atol=1e-4)


NATIVE_TWIN = textwrap.dedent("""\
    force_backward: true
    layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 6 dim: 4 } } }
    layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 6 } } }
    layer { name: "margin" type: "Python" bottom: "x" bottom: "label" top: "ours"
            python_param { module: "caffe_losses" layer: "MarginProduct"
                           param_str: "{num_classes: 5, feature_norm: true, m2: 0}" } }
    layer { name: "ip" type: "InnerProduct" bottom: "x" top: "native"
            inner_product_param { num_output: 5 bias_term: false weight_filler { type: "xavier" } } }
    layer { name: "sum" type: "Eltwise" bottom: "ours" bottom: "native" top: "both" }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "both" bottom: "label" top: "loss" }
    """)


def test_no_margin_with_feature_norm_is_native_inner_product_on_unit_weights():
    # z_j = |x| cos(theta_j) = <x, W_j / |W_j|>: native InnerProduct (no bias) with unit rows,
    # the same logits and the same feature gradient (SphereFace's SINGLE type)
    net = net_from_text(NATIVE_TWIN)
    w = net.params["margin"][0].data
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    net.params["ip"][0].data[...] = w
    x, y = _inputs(4)
    net.blobs["x"].data[...], net.blobs["label"].data[...] = x, y
    net.forward()
    np.testing.assert_allclose(net.blobs["ours"].data, net.blobs["native"].data, rtol=1e-5, atol=1e-6)
    net.backward()
    # the x-gradient flows through both branches equally: ours = native, checked through one branch each
    d_both = net.blobs["both"].diff.copy()
    np.testing.assert_allclose(net.blobs["x"].diff, 2 * d_both @ w, rtol=1e-4, atol=1e-6)


def test_test_phase_and_no_label_give_plain_scaled_cosines():
    x, y = _inputs(5)
    outputs = {}
    for name, param_str, label, phase in [
            ("train", "{num_classes: 5, scale: 4, m2: 0, m3: 0.3}", True, caffe.TRAIN),
            ("test", "{num_classes: 5, scale: 4, m2: 0, m3: 0.3}", True, caffe.TEST),
            ("test_margin", "{num_classes: 5, scale: 4, m2: 0, m3: 0.3, margin_in_test: true}", True, caffe.TEST),
            ("deploy", "{num_classes: 5, scale: 4, m2: 0, m3: 0.3, margin_in_test: true}", False, caffe.TEST),
            ("train_no_label", "{num_classes: 5, scale: 4, m2: 0, m3: 0.3}", False, caffe.TRAIN)]:
        caffe.set_random_seed(11)
        net = margin_net(param_str, label=label, phase=phase)
        net.blobs["x"].data[...] = x
        if label:
            net.blobs["label"].data[...] = y
        net.forward()
        outputs[name] = net.blobs["logits"].data.copy()
    rows = np.arange(6), y.astype(int)
    np.testing.assert_allclose(outputs["train"][rows], outputs["test"][rows] - 4 * 0.3, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outputs["test_margin"], outputs["train"])
    for name in ("deploy", "train_no_label"):
        np.testing.assert_array_equal(outputs[name], outputs["test"])


SOLVER_NET = textwrap.dedent("""\
    name: "margin_solver"
    layer { name: "data" type: "Input" top: "data" top: "label"
            input_param { shape { dim: 8 dim: 6 } shape { dim: 8 } } }
    layer { name: "fc5" type: "InnerProduct" bottom: "data" top: "fc5"
            inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
    layer { name: "fc6" type: "Python" bottom: "fc5" bottom: "label" top: "fc6" top: "lambda"
            python_param { module: "caffe_losses" layer: "MarginProduct"
                           param_str: "{num_classes: 4, m1: 4, feature_norm: true, base: 1000, gamma: 0.12, power: 1, lambda_min: 5, iteration: 2}" }
            PARAMS }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc6" bottom: "label" top: "loss" }
    """)


def _solver(tmp_path, params="param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 0 decay_mult: 0 }",
            seed=3):
    (tmp_path / "net.prototxt").write_text(SOLVER_NET.replace("PARAMS", params))
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path}/net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.9\n'
        f'weight_decay: 0.0005\nmax_iter: 100\nsnapshot: 3\nsnapshot_prefix: "{tmp_path}/snap"\n'
        f'random_seed: {seed}\nsnapshot_after_train: false\n')
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    solver.net.blobs["data"].data[...] = np.random.RandomState(0).randn(8, 6)   # the same batch every step
    solver.net.blobs["label"].data[...] = np.arange(8) % 4
    return solver


def test_class_weights_and_sphereface_iteration_survive_snapshot_and_resume(tmp_path):
    solver = _solver(tmp_path)
    w0 = solver.net.params["fc6"][0].data.copy()
    solver.step(3)                                       # snapshot at iteration 3
    assert not np.allclose(solver.net.params["fc6"][0].data, w0)      # the solver trains W
    assert solver.net.params["fc6"][1].data[0] == 2 + 3                # iteration 2, three forwards
    assert float(solver.net.blobs["lambda"].data[0]) == pytest.approx(1000 / (1 + 0.12 * 5), rel=1e-6)
    w3 = solver.net.params["fc6"][0].data.copy()
    solver.step(2)
    lam5 = float(solver.net.blobs["lambda"].data[0])
    w5 = solver.net.params["fc6"][0].data.copy()
    resumed = _solver(tmp_path, seed=99)
    resumed.restore(str(tmp_path / "snap_iter_3.solverstate"))
    np.testing.assert_array_equal(resumed.net.params["fc6"][0].data, w3)
    assert resumed.net.params["fc6"][1].data[0] == 5
    resumed.step(2)
    assert float(resumed.net.blobs["lambda"].data[0]) == pytest.approx(lam5, rel=1e-6)   # lambda goes on
    np.testing.assert_allclose(resumed.net.params["fc6"][0].data, w5, rtol=1e-5, atol=1e-6)
    # and a .caffemodel carries W into a TEST net (fine-tuning / deploy), shared with the iteration
    test = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TEST, weights=str(tmp_path / "snap_iter_3.caffemodel"))
    np.testing.assert_array_equal(test.params["fc6"][0].data, w3)


def test_solver_seed_repeats_the_class_weights_drawn_by_caffes_filler(tmp_path):
    a = _solver(tmp_path, seed=5).net.params["fc6"][0].data.copy()
    b = _solver(tmp_path, seed=5).net.params["fc6"][0].data.copy()
    c = _solver(tmp_path, seed=6).net.params["fc6"][0].data.copy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    bound = math.sqrt(3 / 3)                             # xavier: U[-sqrt(3 / fan_in)], fan_in = D = 3
    assert np.abs(a).max() <= bound and len(np.unique(a)) == a.size


def test_solver_moving_the_iteration_count_is_refused(tmp_path):
    solver = _solver(tmp_path, params="param { lr_mult: 1 decay_mult: 1 }")   # the count gets lr_mult 1
    with pytest.raises(ValueError, match=r"MarginProduct: blob 1, SphereFace's iteration count.*"
                                         r"lr_mult: 0 decay_mult: 0.*\[layer 'fc6'\]"):
        solver.step(3)


BAD = [
    ("{num_classes: 5, sclae: 3}", "sclae"),
    ("{scale: 3}", "num_classes"),
    ("{num_classes: 5, m1: 1.5}", "'m1' must be an integer"),
    ("{num_classes: 5, m1: 0}", "'m1' must be >= 1"),
    ("{num_classes: 5, m2: 3.2}", "'m2' must be < 3.14"),
    ("{num_classes: 5, scale: 0}", "'scale' must be > 0"),
    ("{num_classes: 5, m1: 4, m2: 0.5}", "SphereFace's psi"),
    ("{num_classes: 5, m1: 2, m3: 0.1}", "SphereFace's psi"),
    ("{num_classes: 5, m1: 2, easy_margin: true}", "SphereFace's psi"),
    ("{num_classes: 5, gamma: 0.1}", "gamma: SphereFace's lambda annealing is for m1 > 1"),
    ("{num_classes: 5, scale: 30, feature_norm: true}", "'scale' and 'feature_norm: true'"),
    ("{num_classes: 5, m2: 0, easy_margin: true}", "easy_margin"),
    ("{num_classes: 5, weight_filler: {type: bogus}}", "weight_filler"),
    ("{num_classes: 5, margin_in_test: yes}", "margin_in_test"),
]


@pytest.mark.parametrize("param_str,message", BAD)
def test_bad_param_str_names_the_layer_and_key(param_str, message):
    with pytest.raises(ValueError, match=r"MarginProduct") as err:
        margin_net(param_str)
    assert message in str(err.value) and "[layer 'under_test']" in str(err.value)


def test_bad_bottoms_are_refused_with_the_layer_and_bottom():
    net = margin_net("{num_classes: 5, scale: 4}")
    x, y = _inputs(6)
    net.blobs["x"].data[...] = x
    net.blobs["label"].data[...] = np.where(np.arange(6) == 2, 5, y)
    with pytest.raises(ValueError, match=r"MarginProduct: bottom 'label' holds 5\.0 at index \(2,\).*under_test"):
        net.forward()
    net.blobs["label"].data[...] = y
    net.blobs["x"].data[3] = 0
    with pytest.raises(ValueError, match=r"bottom 'features' row 3 has norm 0\.0.*under_test"):
        net.forward()
    net.blobs["x"].data[3] = np.nan
    with pytest.raises(ValueError, match=r"bottom 'features' row 3 has norm nan"):
        net.forward()
    net.blobs["x"].reshape(6, 7)
    with pytest.raises(ValueError, match=r"bottom 'features' must be \(N, 4\).*got shape \(6, 7\)"):
        net.forward()
    net.blobs["x"].reshape(6, 4)
    net.blobs["label"].reshape(5)
    with pytest.raises(ValueError, match=r"bottom 'label' must hold one label per sample"):
        net.forward()


def test_zero_class_weight_row_is_refused():
    net = margin_net("{num_classes: 5, scale: 4, weight_filler: {type: constant, value: 0}}")
    net.blobs["x"].data[...], net.blobs["label"].data[...] = _inputs(7)
    with pytest.raises(ValueError, match=r"the class weights \(blob 0\) row 0 has norm 0\.0 \(5 such row"):
        net.forward()


@pytest.mark.parametrize("value", [1e4, -1e4, 1e30])
def test_extreme_features_give_finite_logits_and_gradients(value):
    net = margin_net("{num_classes: 5, scale: 64, m2: 0.5}")
    x, y = _inputs(8)
    net.blobs["x"].data[...] = x * np.float32(value)
    net.blobs["label"].data[...] = y
    net.forward()
    net.backward(logits=np.ones((6, 5), np.float32))
    assert np.isfinite(net.blobs["logits"].data).all() and np.abs(net.blobs["logits"].data).max() <= 64 * (1 + 0.5 * math.sin(0.5))
    assert np.isfinite(net.blobs["x"].diff).all() and np.isfinite(net.params["under_test"][0].diff).all()


def test_logits_beyond_float32_with_feature_norm_are_refused():
    net = margin_net("{num_classes: 5, feature_norm: true, m2: 0}")
    x, y = _inputs(9)
    x[2] = [3e38, -3e38, 1, 1]             # finite values whose norm is beyond float32
    net.blobs["x"].data[...] = x
    net.blobs["label"].data[...] = y
    with pytest.raises(ValueError, match="overflow float32"):
        net.forward()


def test_lambda_top_follows_the_forks_count():
    net = margin_net("{num_classes: 5, m1: 3, scale: 2, base: 100, gamma: 1, power: 2}", tops=("logits", "lambda"))
    net.blobs["x"].data[...], net.blobs["label"].data[...] = _inputs(10)
    for it in (1, 2, 3):
        net.forward()
        assert float(net.blobs["lambda"].data[0]) == pytest.approx(core.sphereface_lambda(
            it, base=100, gamma=1, power=2), rel=1e-6)
        assert net.params["under_test"][1].data[0] == it


def test_four_d_features_batch_changes_and_unread_test_labels():
    # (N, D, 1, 1) features, a batch-size change, and TEST labels outside the classes (open-set data)
    net = margin_net("{num_classes: 5, scale: 4, m2: 0.2}", n=6, d=4, phase=caffe.TEST)
    net.blobs["x"].reshape(3, 4, 1, 1)
    net.blobs["label"].reshape(3)
    rng = np.random.RandomState(12)
    net.blobs["x"].data[...] = rng.randn(3, 4, 1, 1)
    net.blobs["label"].data[...] = [7, 8, 9]              # not classes of the layer: not read in TEST
    net.forward()
    assert net.blobs["logits"].data.shape == (3, 5)
    w = net.params["under_test"][0].data.astype(np.float64)
    x = net.blobs["x"].data.reshape(3, 4).astype(np.float64)
    np.testing.assert_allclose(net.blobs["logits"].data, reference_logits(x, w, [], scale=4), rtol=1e-5, atol=1e-5)
    train = margin_net("{num_classes: 5, scale: 4, m2: 0.2}", n=6, d=4)
    train.blobs["x"].reshape(3, 4, 1, 1)
    train.blobs["label"].reshape(3)
    train.blobs["x"].data[...] = rng.randn(3, 4, 1, 1)
    train.blobs["label"].data[...] = [7, 8, 9]
    with pytest.raises(ValueError, match=r"bottom 'label' holds 7\.0"):
        train.forward()
