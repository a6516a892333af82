"""The shared layer machinery inside real Caffe nets, and the `caffe` wrapper."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import caffe
from caffe_losses.glue.base import LossWeightWarning
from caffe_losses.glue.testing import GradientCheckError, check_gradient, check_net_gradient, layer_net, net_from_text

VENV_BIN = os.path.dirname(sys.executable)
RNG = np.random.RandomState(0)
A = RNG.randn(4, 3).astype(np.float32)
B = RNG.randn(4, 3).astype(np.float32)


def test_python_layer_loads_and_honours_loss_weight():
    net = layer_net("helper_layers", "HalfSquaredError", {"a": (4, 3), "b": (4, 3)},
                    param_str="{scale: 3}", loss_weight=2)
    net.blobs["a"].data[...] = A
    net.blobs["b"].data[...] = B
    net.forward()
    expected = 3 * np.sum((A - B) ** 2) / (2 * 4)
    assert net.blobs["loss"].data[0] == pytest.approx(expected, rel=1e-6)
    net.backward()
    # gradient scaled by the loss weight 2 that Caffe put in the top diff
    np.testing.assert_allclose(net.blobs["a"].diff, 2 * 3 * (A - B) / 4, rtol=1e-6)
    np.testing.assert_allclose(net.blobs["b"].diff, -2 * 3 * (A - B) / 4, rtol=1e-6)


def test_matches_native_euclidean_loss():
    text = textwrap.dedent("""
        force_backward: true
        layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 4 dim: 3 } } }
        layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 4 dim: 3 } } }
        layer { name: "sa" type: "Split" bottom: "a" top: "a1" top: "a2" }
        layer { name: "ours" type: "Python" bottom: "a1" bottom: "b" top: "ours"
                python_param { module: "helper_layers" layer: "HalfSquaredError" } loss_weight: 0.5 }
        layer { name: "native" type: "EuclideanLoss" bottom: "a2" bottom: "b" top: "native" loss_weight: 0 }
    """)
    net = net_from_text(text)
    net.blobs["a"].data[...] = A
    net.blobs["b"].data[...] = B
    net.forward()
    assert net.blobs["ours"].data[0] == pytest.approx(float(net.blobs["native"].data), rel=1e-6)


def test_bad_param_str_raises_naming_the_key():
    with pytest.raises(ValueError, match=r"HalfSquaredError: unknown key 'scael'.*Did you mean 'scale'"):
        layer_net("helper_layers", "HalfSquaredError", {"a": (4, 3), "b": (4, 3)}, param_str="{scael: 2}")
    with pytest.raises(ValueError, match=r"HalfSquaredError: 'scale' must be > 0\. Received: scale=-1"):
        layer_net("helper_layers", "HalfSquaredError", {"a": (4, 3), "b": (4, 3)}, param_str="scale: -1")


def test_bottom_count_and_shape_errors():
    with pytest.raises(ValueError, match=r"HalfSquaredError: expected 2 bottom\(s\) \(a, b\), got 1"):
        layer_net("helper_layers", "HalfSquaredError", {"a": (4, 3)})
    with pytest.raises(ValueError, match=r"bottom 'b' must have as many values as 'a' \(4, 3\): expected 12, got 10"):
        layer_net("helper_layers", "HalfSquaredError", {"a": (4, 3), "b": (5, 2)})


def test_zero_loss_weight_warns_once():
    net = layer_net("helper_layers", "HalfSquaredError", {"a": (4, 3), "b": (4, 3)}, loss_weight=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.forward()
        net.forward()
    hits = [w for w in caught if issubclass(w.category, LossWeightWarning)]
    assert len(hits) == 1 and "add 'loss_weight: 1'" in str(hits[0].message)
    net = layer_net("helper_layers", "HalfSquaredError", {"a": (4, 3), "b": (4, 3)}, loss_weight=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.forward()
    assert not [w for w in caught if issubclass(w.category, LossWeightWarning)]


def test_in_net_gradient_checker_passes_a_correct_layer():
    net = layer_net("helper_layers", "HalfSquaredError", {"a": (4, 3), "b": (4, 3)},
                    param_str="{normalization: FULL}", loss_weight=2)
    results = check_net_gradient(net, {"a": A, "b": B}, wrt=["a", "b"])
    a, n = results["a"]
    assert a.shape == (12,) and np.allclose(a, n, atol=1e-3)


def test_in_net_gradient_checker_catches_a_wrong_backward():
    net = layer_net("helper_layers", "WrongBackward", {"a": (4, 3), "b": (4, 3)}, loss_weight=2)
    with pytest.raises(GradientCheckError, match=r"gradient of 'a' disagrees with finite differences"):
        check_net_gradient(net, {"a": A, "b": B}, wrt=["a"])


def test_core_gradient_checker_catches_a_wrong_gradient():
    x = RNG.randn(5)
    check_gradient(lambda v: np.sum(np.sin(v)), np.cos(x), x)
    with pytest.raises(GradientCheckError, match="disagrees"):
        check_gradient(lambda v: np.sum(np.sin(v)), 1.001 * np.cos(x), x)
    with pytest.raises(GradientCheckError, match="shape"):
        check_gradient(lambda v: np.sum(v), np.ones(4), x)


def test_force_backward_leaves_zero_diff_on_non_differentiable_bottom():
    # WrongBackward derives from HalfSquaredError with DIFF_BOTTOMS (0, 1); use a
    # subclass view: a layer that back-propagates into 'a' only.
    net = layer_net("helper_layers", "OnlyFirstBottom", {"a": (4, 3), "b": (4, 3)}, loss_weight=1)
    net.blobs["a"].data[...] = A
    net.blobs["b"].data[...] = B
    net.blobs["b"].diff[...] = 7.0    # stale values must be overwritten
    net.forward()
    net.backward()
    assert np.all(net.blobs["b"].diff == 0)
    assert np.any(net.blobs["a"].diff != 0)


def test_caffe_tool_trains_a_net_with_a_python_layer(tmp_path):
    (tmp_path / "net.prototxt").write_text(textwrap.dedent("""
        name: "tiny"
        layer { name: "x" type: "DummyData" top: "x" top: "y"
                dummy_data_param { shape { dim: 8 dim: 5 } shape { dim: 8 dim: 2 }
                                   data_filler { type: "gaussian" std: 1 }
                                   data_filler { type: "gaussian" std: 1 } } }
        layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
                inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
        layer { name: "loss" type: "Python" bottom: "fc" bottom: "y" top: "loss"
                python_param { module: "helper_layers" layer: "HalfSquaredError" }
                loss_weight: 1 }
    """))
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 5\ndisplay: 1\n'
        'snapshot_after_train: false\nsolver_mode: CPU\n')
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    proc = subprocess.run([os.path.join(VENV_BIN, "caffe"), "train", "-solver", "solver.prototxt"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Iteration 5" in proc.stderr and "Optimization Done" in proc.stderr


def test_caffe_tool_reports_a_python_layer_error(tmp_path):
    (tmp_path / "net.prototxt").write_text(textwrap.dedent("""
        layer { name: "x" type: "DummyData" top: "x" top: "y"
                dummy_data_param { shape { dim: 2 dim: 2 } shape { dim: 2 dim: 2 } } }
        layer { name: "loss" type: "Python" bottom: "x" bottom: "y" top: "loss"
                python_param { module: "helper_layers" layer: "HalfSquaredError" param_str: "{scale: 0}" }
                loss_weight: 1 }
    """))
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.01\nmax_iter: 1\nlr_policy: "fixed"\n')
    proc = subprocess.run([os.path.join(VENV_BIN, "caffe"), "train", "-solver", "solver.prototxt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "HalfSquaredError: 'scale' must be > 0" in proc.stderr


def test_loss_layers_share_the_one_backward():
    # LossLayer.backward is the only backward of the loss layers: each
    # implements gradients(diffs, scale), which is what runs in training
    import caffe_losses
    from caffe_losses.glue.base import LossLayer
    losses = [getattr(caffe_losses, name) for name in caffe_losses.__all__]
    losses = [cls for cls in losses if issubclass(cls, LossLayer)]
    assert len(losses) >= 6
    for cls in losses:
        assert cls.backward is LossLayer.backward, cls.__name__
        assert cls.gradients is not LossLayer.gradients, cls.__name__


def test_caffe_tool_finds_own_layers_in_the_folder_but_never_ahead_of_installed_modules(tmp_path):
    # The user's layer module in the current folder is found; a ./json.py or
    # ./numpy.py there does not shadow the installed module (it comes last).
    (tmp_path / "mylayers.py").write_text(textwrap.dedent("""
        import json
        import numpy as np
        import caffe
        class Copy(caffe.Layer):
            def setup(self, bottom, top):
                json.loads("{}")
            def reshape(self, bottom, top):
                top[0].reshape(*bottom[0].data.shape)
            def forward(self, bottom, top):
                top[0].data[...] = np.asarray(bottom[0].data)
            def backward(self, top, propagate_down, bottom):
                bottom[0].diff[...] = top[0].diff
    """))
    for shadow in ("json", "numpy"):
        (tmp_path / f"{shadow}.py").write_text(f'raise SystemExit("./{shadow}.py was imported")\n')
    (tmp_path / "net.prototxt").write_text(textwrap.dedent("""
        layer { name: "x" type: "DummyData" top: "x" top: "y"
                dummy_data_param { shape { dim: 4 dim: 2 } shape { dim: 4 dim: 2 } } }
        layer { name: "copy" type: "Python" bottom: "x" top: "x2"
                python_param { module: "mylayers" layer: "Copy" } }
        layer { name: "loss" type: "Python" bottom: "x2" bottom: "y" top: "loss"
                python_param { module: "caffe_losses" layer: "SmoothL1Loss" } loss_weight: 1 }
    """))
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nmax_iter: 2\nlr_policy: "fixed"\nsnapshot_after_train: false\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([os.path.join(VENV_BIN, "caffe"), "train", "-solver", "solver.prototxt"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "was imported" not in proc.stderr
