"""``caffe-losses migrate`` on the forks' FocalLoss layers: each fork's formula, transcribed
from its own source below, against the migrated net run by Caffe (loss and gradient)."""

import textwrap

import numpy as np
import pytest

from caffe_losses.glue.testing import net_from_text
from caffe_losses.nets.migrate import migrate_text

RNG = np.random.RandomState(1708)
FLT_MIN = np.float64(np.finfo(np.float32).tiny)      # 1.17549e-38


def caffe_normalizer(mode, outer, inner, valid):
    value = {"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode]
    return max(1.0, float(value))


def softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# ---------------------------------------------------------------------------
# makefile/frcnn, src/caffe/FRCNN/focal_loss/focal_loss_layer.cpp (Forward_cpu, Backward_cpu)
# ---------------------------------------------------------------------------

def frcnn_focal(x, label, *, alpha=0.25, gamma=2.0, ignore_label=None, normalization="VALID", axis=1,
                loss_weight=1.0):
    """Transcribed: log_prob = log(max(p, FLT_MIN)); power = alpha (1 - p)^gamma;
    loss -= power[y] log_prob[y]; grad = -gamma power[y] / max(1 - p_y, 1e-10) log_prob[y] p_y
    + power[y]; diff_y = grad (p_y - 1), diff_c = grad p_c; times loss_weight / normalizer(count)."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)          # (outer, inner..., C)
    prob = softmax(x, -1)
    log_prob = np.log(np.maximum(prob, FLT_MIN))
    power = alpha * (1 - prob) ** gamma
    y = np.asarray(label).reshape(x.shape[:-1]).astype(int)
    valid = np.ones(y.shape, bool) if ignore_label is None else y != ignore_label
    yy = np.where(valid, y, 0)
    take = lambda a: np.take_along_axis(a, yy[..., None], -1)[..., 0]   # noqa: E731
    loss = -(take(power) * take(log_prob))[valid].sum()
    count = int(valid.sum())
    outer = x.shape[0]
    norm = caffe_normalizer(normalization, outer, y.size // outer, count)
    p_y = take(prob)
    grad = -gamma * (take(power) / np.maximum(1 - p_y, 1e-10)) * take(log_prob) * p_y + take(power)
    diff = grad[..., None] * prob
    onehot = np.arange(x.shape[-1]) == yy[..., None]
    diff = np.where(onehot, grad[..., None] * (p_y[..., None] - 1), diff)
    diff *= valid[..., None] * loss_weight / norm
    return loss / norm, np.moveaxis(diff, -1, axis)


# ---------------------------------------------------------------------------
# liaomingg/Focal-Loss, focal_loss_layer.cpp (Forward_cpu, Backward_cpu)
# ---------------------------------------------------------------------------

def liaomingg_focal(x, label, *, alpha=0.25, gamma=2.0, ignore_label=None, normalization="VALID",
                    loss_weight=1.0):
    """Transcribed (axis 1): pk = p_y; loss -= alpha (1 - pk)^gamma log(max(pk, FLT_MIN));
    with pk, pj clamped at FLT_MIN: diff_j (j != y) = -alpha (gamma (1 - pk)^(gamma - 1) pk pj log pk
    - (1 - pk)^gamma pj); diff_y = -alpha (-gamma (1 - pk)^gamma pk log pk + (1 - pk)^(gamma + 1));
    times loss_weight / normalizer(count)."""
    x = np.asarray(x, np.float64)
    prob = softmax(x, 1)
    y = np.asarray(label).reshape(x.shape[0]).astype(int)
    valid = np.ones(y.shape, bool) if ignore_label is None else y != ignore_label
    yy = np.where(valid, y, 0)
    pk = np.maximum(prob[np.arange(len(y)), yy], FLT_MIN)
    loss = -(alpha * (1 - pk) ** gamma * np.log(pk))[valid].sum()
    norm = caffe_normalizer(normalization, x.shape[0], 1, int(valid.sum()))
    pj = np.maximum(prob, FLT_MIN)
    pkc, log_pk = pk[:, None], np.log(pk)[:, None]
    diff = -alpha * (gamma * (1 - pkc) ** (gamma - 1) * pkc * pj * log_pk - (1 - pkc) ** gamma * pj)
    diff_y = -alpha * (-gamma * (1 - pk) ** gamma * pk * np.log(pk) + (1 - pk) ** (gamma + 1))
    diff[np.arange(len(y)), yy] = diff_y
    diff *= valid[:, None] * loss_weight / norm
    return loss / norm, diff


# ---------------------------------------------------------------------------
# owphoo/FocalLoss, src/caffe/layers/focal_loss_layer.cpp (Forward_cpu, Backward_cpu)
# ---------------------------------------------------------------------------

def owphoo_focal(x, label, *, gamma=2.0, alpha=None, ignore_label=None, normalization="VALID", axis=1,
                 loss_weight=1.0):
    """Transcribed: q = 1 - p + 1e-6; loss -= alpha_y q_y^gamma log(max(p_y, FLT_MIN));
    diff_k (k != y) = alpha_y q_y^(gamma-1) (p_k - p_y p_k (1 + gamma log(max(p_y, FLT_MIN))));
    diff_y = alpha_y q_y^gamma (gamma p_y log(max(p_y, FLT_MIN)) + p_y - 1); alpha_y = 1 without
    alpha_balance."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    C = x.shape[-1]
    prob = softmax(x, -1)
    q = 1 - prob + 1e-6
    a = np.ones(C) if alpha is None else np.asarray(alpha, np.float64)
    y = np.asarray(label).reshape(x.shape[:-1]).astype(int)
    valid = np.ones(y.shape, bool) if ignore_label is None else y != ignore_label
    yy = np.where(valid, y, 0)
    take = lambda arr: np.take_along_axis(arr, yy[..., None], -1)[..., 0]   # noqa: E731
    p_l, q_l, a_l = take(prob), take(q), a[yy]
    log_pl = np.log(np.maximum(p_l, FLT_MIN))
    loss = -(a_l * q_l ** gamma * log_pl)[valid].sum()
    count = int(valid.sum())
    norm = caffe_normalizer(normalization, x.shape[0], y.size // x.shape[0], count)
    diff = (a_l * q_l ** (gamma - 1))[..., None] * (prob - p_l[..., None] * prob * (1 + gamma * log_pl[..., None]))
    onehot = np.arange(C) == yy[..., None]
    diff = np.where(onehot, (a_l * q_l ** gamma * (gamma * p_l * log_pl + p_l - 1))[..., None], diff)
    diff *= valid[..., None] * loss_weight / norm
    return loss / norm, np.moveaxis(diff, -1, axis)


# ---------------------------------------------------------------------------
# liuyuisanai/Focal-Loss, focal_loss_layer.cu (FocalLossForwardGPU, FocalLossBackwardSecondItemGPU,
# Forward_gpu, Backward_gpu)
# ---------------------------------------------------------------------------

def liuyuisanai_focal(x, t, *, alpha=0.25, gamma=2.0, ignore_label=None, normalization="BATCH_SIZE",
                      loss_weight=1.0):
    """Transcribed: scale = (t == 1 ? alpha : 1 - alpha) (1 - (t == 1 ? p : 1 - p))^gamma;
    oriloss = -(x (t - (x >= 0)) - log(1 + exp(x - 2 x (x >= 0)))); loss = sum(scale oriloss) / norm;
    diff = scale (p - t) + oriloss * (t == 1 ? alpha : 1 - alpha) gamma (1 - p_t)^(gamma - 1)
    e / (e^2 + 2e + 1) (t == 1 ? -1 : 1), e = exp(-|x|); 0 where ignored; times loss_weight / norm."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    p = 1 / (1 + np.exp(-x))
    pos = t.astype(int) == 1
    valid = np.ones(x.shape, bool) if ignore_label is None else t.astype(int) != ignore_label
    a = np.where(pos, alpha, 1 - alpha)
    one_minus_pt = 1 - np.where(pos, p, 1 - p)
    scale = np.where(valid, a * one_minus_pt ** gamma, 0)
    oriloss = np.where(valid, -(x * (t - (x >= 0)) - np.log(1 + np.exp(x - 2 * x * (x >= 0)))), 0)
    valid_count = valid.sum() if (normalization == "VALID" and ignore_label is not None) else x.size
    norm = caffe_normalizer(normalization, x.shape[0], x.size // x.shape[0], valid_count)
    e = np.exp(-np.abs(x))
    second = a * gamma * one_minus_pt ** (gamma - 1) * e / (e ** 2 + 2 * e + 1) * np.where(pos, -1, 1)
    diff = scale * (p - t) + oriloss * second
    diff = np.where(valid, diff, 0) * loss_weight / norm
    return (scale * oriloss).sum() / norm, diff


# ---------------------------------------------------------------------------
# The migrated nets
# ---------------------------------------------------------------------------

def dims(shape):
    return " ".join(f"dim: {d}" for d in shape)


def migrated_net(layer_text, inputs, extra=""):
    head = "force_backward: true\n" + "".join(
        f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ {dims(s)} }} }} }}\n'
        for n, s in inputs.items())
    result = migrate_text(head + extra + textwrap.dedent(layer_text))
    assert not result.problems, result.problems
    return result, net_from_text(result.text)


def run(net, values, wrt):
    for name, value in values.items():
        net.blobs[name].data[...] = value
    net.forward()
    net.backward()
    loss = float(np.sum([net.blobs[o].data.flat[0] * w for o, w in net.blob_loss_weights.items() if w]))
    return loss, net.blobs[wrt].diff.copy()


FRCNN_CASES = [
    # (focal_loss_param, loss_param, softmax_param, expected kwargs)
    ("alpha: 0.25 gamma: 2 type: ORIGIN", "ignore_label: -1 normalize: true", "",
     dict(alpha=0.25, gamma=2, ignore_label=-1, normalization="VALID")),
    ("gamma: 0.5 type: ORIGIN", "normalization: FULL", "",
     dict(alpha=0.25, gamma=0.5, normalization="FULL")),
    ("type: LINEAR alpha: 1 gamma: 3 beta: 2", "normalize: false", "",
     dict(alpha=1, gamma=3, normalization="BATCH_SIZE")),
    ("type: 0 alpha: 0.5 gamma: 1", "normalization: NONE ignore_label: 2", "axis: 2",
     dict(alpha=0.5, gamma=1, normalization="NONE", ignore_label=2, axis=2)),
]


@pytest.mark.parametrize("focal, loss, softmax_param, kw", FRCNN_CASES)
def test_makefile_frcnn_focal_loss_migrates_to_the_same_loss_and_gradient(focal, loss, softmax_param, kw):
    axis = kw.get("axis", 1)
    shape = (3, 4, 5) if axis == 1 else (3, 5, 4)
    label_shape = (3, 5)
    layer = f"""
        layer {{ name: "loss_cls" type: "FocalLoss" bottom: "score" bottom: "label" top: "loss_cls"
                 propagate_down: 1 propagate_down: 0 loss_weight: 2
                 loss_param {{ {loss} }} focal_loss_param {{ {focal} }}
                 {"softmax_param { " + softmax_param + " }" if softmax_param else ""} }}
    """
    result, net = migrated_net(layer, {"score": shape, "label": label_shape})
    assert "SoftmaxFocalLoss" in result.text and "focal_loss_param" not in result.text
    x = (RNG.randn(*shape) * 3).astype(np.float32)
    y = RNG.randint(0, shape[axis], label_shape).astype(np.float32)
    if "ignore_label" in kw:
        y[0, :2] = kw["ignore_label"]
    loss_value, grad = run(net, {"score": x, "label": y}, "score")
    want_loss, want_grad = frcnn_focal(x, y, loss_weight=2, **kw)
    assert loss_value == pytest.approx(2 * want_loss, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=2e-4, atol=1e-6)
    if "LINEAR" in focal:
        assert any("LINEAR" in n and "ORIGIN form" in n for n in result.notes)
        assert any("beta" in n and "never used" in n for n in result.notes)


OWPHOO_CASES = [
    ("alpha_balance: true gamma: 2 alpha: 0.5 alpha: 1 alpha: 1", "", dict(gamma=2, alpha=[0.5, 1, 1])),
    ("alpha_balance: false gamma: 1.5 alpha: 0.5 alpha: 1 alpha: 3", "normalization: FULL",
     dict(gamma=1.5, normalization="FULL")),
    ("alpha_balance: true gamma: 0.5 alpha: 2 alpha: 1 alpha: 0.25 axis: 1",
     "ignore_label: 1 normalize: false", dict(gamma=0.5, alpha=[2, 1, 0.25], ignore_label=1,
                                              normalization="BATCH_SIZE")),
]


@pytest.mark.parametrize("focal, loss, kw", OWPHOO_CASES)
def test_owphoo_focal_loss_migrates_to_the_same_loss_and_gradient(focal, loss, kw):
    shape, label_shape = (4, 3, 2, 3), (4, 1, 2, 3)
    layer = f"""
        layer {{ name: "loss" type: "FocalLoss" bottom: "feature" bottom: "label" top: "loss"
                 focal_loss_param {{ {focal} }} {"loss_param { " + loss + " }" if loss else ""} }}
    """
    result, net = migrated_net(layer, {"feature": shape, "label": label_shape})
    x = (RNG.randn(*shape) * 2).astype(np.float32)
    y = RNG.randint(0, 3, label_shape).astype(np.float32)
    loss_value, grad = run(net, {"feature": x, "label": y}, "feature")
    want_loss, want_grad = owphoo_focal(x, y, **kw)
    # the fork's 1e-6 inside (1 - p + 1e-6)^gamma: a relative difference of about gamma * 1e-6 / (1 - p)
    assert loss_value == pytest.approx(want_loss, rel=1e-4)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-3, atol=1e-6)
    if "alpha_balance: false" in focal:
        assert any("without alpha_balance" in n for n in result.notes)
    assert "loss_weight: 1" in result.text                  # the native layer's default, written out


LIU_CASES = [
    ("", "normalize: true normalization: FULL", dict(normalization="FULL")),           # its README
    ("alpha: 0.5 gamma: 1", "", dict(alpha=0.5, gamma=1)),                               # BATCH_SIZE
    ("gamma: 2", "ignore_label: -1 normalize: true", dict(gamma=2, ignore_label=-1, normalization="VALID")),
]


@pytest.mark.parametrize("focal, loss, kw", LIU_CASES)
def test_liuyuisanai_focal_loss_on_one_score_migrates_to_sigmoid_focal_loss(focal, loss, kw):
    body = ('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "predicted" '
            'inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 1 } } }\n')
    layer = f"""
        layer {{ name: "loss_focal" type: "FocalLoss" bottom: "predicted" bottom: "label" top: "loss_focal"
                 loss_weight: 10 {"loss_param { " + loss + " }" if loss else ""}
                 {"focal_loss_param { " + focal + " }" if focal else ""} }}
    """
    result, net = migrated_net(layer, {"data": (8, 5), "label": (8, 1)}, extra=body)
    assert 'layer: "SigmoidFocalLoss"' in result.text
    assert any("liuyuisanai" in n and "num_output: 1" in n for n in result.notes)
    t = (RNG.rand(8, 1) < 0.4).astype(np.float32)
    if "ignore_label" in kw:
        t[:2] = -1
    net.blobs["data"].data[...] = RNG.randn(8, 5) * 2
    net.blobs["label"].data[...] = t
    net.forward()
    net.backward()
    x = net.blobs["predicted"].data.astype(np.float64)
    want_loss, want_grad = liuyuisanai_focal(x, t, loss_weight=10, **kw)
    assert float(net.blobs["loss_focal"].data[0]) == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(net.blobs["predicted"].diff, want_grad, rtol=1e-4, atol=1e-6)


def test_alpha_and_gamma_alone_are_refused_naming_both_forks_and_the_way_out():
    text = ('layer { name: "x" type: "Input" top: "score" input_param { shape { dim: 4 dim: 3 } } }\n'
            'layer { name: "y" type: "Input" top: "label" input_param { shape { dim: 4 } } }\n'
            'layer { name: "focal" type: "FocalLoss" bottom: "score" bottom: "label" top: "focal" '
            'loss_param { ignore_label: -1 normalize: true } focal_loss_param { alpha: 0.25 gamma: 2 } }\n')
    result = migrate_text(text)
    (problem,) = result.problems
    assert problem.startswith("layer 'focal': FocalLoss with focal_loss_param { alpha gamma }")
    assert "makefile/frcnn" in problem and "liuyuisanai/Focal-Loss" in problem
    assert "add 'type: ORIGIN'" in problem and "SigmoidFocalLoss" in problem
    # the way out works: frcnn's own field, its default
    fixed = migrate_text(text.replace("alpha: 0.25 gamma: 2", "alpha: 0.25 gamma: 2 type: ORIGIN"))
    assert not fixed.problems and 'layer: "SoftmaxFocalLoss"' in fixed.text
    # the README net with loss_param only: refused the same way
    bare = migrate_text(text.replace(" focal_loss_param { alpha: 0.25 gamma: 2 }", ""))
    assert bare.problems and "FocalLoss with no focal_loss_param" in bare.problems[0]


@pytest.mark.parametrize("layer, message", [
    ('focal_loss_param { type: ORIGIN alpha: 0 }', "makefile/frcnn's FocalLoss refuses alpha <= 0"),
    ('focal_loss_param { type: CUBIC }', "expected one of ORIGIN, LINEAR"),
    ('focal_loss_param { alpha_balance: true gamma: 2 }', "needs one alpha per class"),
    ('focal_loss_param { type: ORIGIN gamma: 2 delta: 1 }', "focal_loss_param { delta } has no counterpart"),
    ('focal_loss_param { alpha: 0.75 gama: 2 }', "the first day's spelling of zimenglan-sysu-512/Focal-Loss"),
    ('focal_loss_param { type: ORIGIN } loss_param { normalization: FULL } top: "p" top: "q"',
     "FocalLoss with 3 tops"),
])
def test_what_cannot_be_expressed_is_refused_naming_the_fork(layer, message):
    text = ('layer { name: "x" type: "Input" top: "score" input_param { shape { dim: 4 dim: 3 } } }\n'
            'layer { name: "y" type: "Input" top: "label" input_param { shape { dim: 4 } } }\n'
            f'layer {{ name: "focal" type: "FocalLoss" bottom: "score" bottom: "label" top: "focal" {layer} }}\n')
    result = migrate_text(text)
    assert any(message in p for p in result.problems), result.problems
    assert result.text == text                                     # nothing written


# ---------------------------------------------------------------------------
# caffe-losses check's rules for the focal layers
# ---------------------------------------------------------------------------

def _findings(text):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    from caffe_losses.nets.lint import lint_net
    net = text_format.Parse(text, caffe_pb2.NetParameter())
    return [str(f) for f in lint_net(net)]


HEAD = ('layer { name: "x" type: "Input" top: "data" top: "label" input_param { shape { dim: 4 dim: 5 } '
        'shape { dim: 4 } } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "score" inner_product_param { num_output: 3 } }\n')


def _loss(layer, bottom, param_str):
    return (f'layer {{ name: "loss" type: "Python" bottom: "{bottom}" bottom: "label" top: "loss" loss_weight: 1 '
            f'python_param {{ module: "caffe_losses" layer: "{layer}" param_str: "{param_str}" }} }}\n')


def test_check_finds_a_softmax_or_a_sigmoid_applied_twice_and_a_wrong_alpha_count():
    twice = _findings(HEAD + 'layer { name: "sm" type: "Softmax" bottom: "score" top: "prob" }\n'
                      + _loss("SoftmaxFocalLoss", "prob", "{gamma: 2}"))
    assert any("[double-softmax]" in f and "SoftmaxFocalLoss applies softmax itself" in f for f in twice)
    sig = _findings(HEAD + 'layer { name: "sg" type: "Sigmoid" bottom: "score" top: "p" }\n'
                    + _loss("SigmoidFocalLoss", "p", "{gamma: 2}"))
    assert any("[focal-logits]" in f and "applied twice" in f for f in sig)
    alpha = _findings(HEAD + _loss("SoftmaxFocalLoss", "score", "{alpha: [1, 2]}"))
    assert any("[focal-alpha]" in f and "alpha has 2 weight(s)" in f and "3 outputs" in f for f in alpha)
    clean = _findings(HEAD + _loss("SoftmaxFocalLoss", "score", "{alpha: [1, 2, 3]}"))
    assert not any(rule in f for f in clean for rule in ("[double-softmax]", "[focal-logits]", "[focal-alpha]"))


def test_a_fork_key_in_param_str_points_to_ours():
    from caffe_losses.glue.params import parse_params
    from caffe_losses.losses.focal.layer import SoftmaxFocalLoss
    with pytest.raises(ValueError, match=r"SoftmaxFocalLoss: unknown key 'alpha_balance' in param_str. "
                                         r"'alpha_balance' is owphoo/FocalLoss's name: here it is 'alpha'"):
        parse_params("SoftmaxFocalLoss", SoftmaxFocalLoss.PARAMS, "{alpha_balance: true}")


def test_a_python_focal_layer_s_ignored_focal_loss_param_moves_gamma_and_refuses_alpha():
    head = ('layer { name: "x" type: "Input" top: "score" input_param { shape { dim: 4 dim: 3 } } }\n'
            'layer { name: "y" type: "Input" top: "label" input_param { shape { dim: 4 } } }\n')
    layer = ('layer {{ name: "loss" type: "Python" bottom: "score" bottom: "label" top: "loss" loss_weight: 1 '
             'python_param {{ module: "caffe_losses" layer: "SoftmaxFocalLoss" }} focal_loss_param {{ {} }} }}\n')
    moved = migrate_text(head + layer.format("gamma: 3"))
    assert not moved.problems and 'param_str: "{gamma: 3}"' in moved.text and "focal_loss_param" not in moved.text
    # owphoo's repeated alpha, read only with alpha_balance: not guessed from the block
    refused = migrate_text(head + layer.format("alpha_balance: true alpha: 0.5 alpha: 1 alpha: 2"))
    assert any("focal_loss_param { alpha_balance } has no counterpart" in p for p in refused.problems)
    assert any("focal_loss_param { alpha } has no counterpart" in p for p in refused.problems)


@pytest.mark.parametrize("focal, loss, kw", [
    ("alpha: 0.25 gamma: 2", "ignore_label: -1 normalize: true", dict(ignore_label=-1)),
    ("alpha: 1 gamma: 0.5", "normalization: BATCH_SIZE", dict(alpha=1, gamma=0.5, normalization="BATCH_SIZE")),
])
def test_liaomingg_focal_loss_marked_as_the_softmax_form_migrates_to_the_same_loss_and_gradient(focal, loss, kw):
    # its text is frcnn's: 'type: ORIGIN' (the refusal's way out) marks the softmax form
    layer = f"""
        layer {{ name: "loss" type: "FocalLoss" bottom: "score" bottom: "label" top: "loss" loss_weight: 3
                 loss_param {{ {loss} }} focal_loss_param {{ {focal} type: ORIGIN }} }}
    """
    result, net = migrated_net(layer, {"score": (6, 4), "label": (6,)})
    x = (RNG.randn(6, 4) * 3).astype(np.float32)
    y = RNG.randint(0, 4, 6).astype(np.float32)
    if "ignore_label" in kw:
        y[:2] = -1
    loss_value, grad = run(net, {"score": x, "label": y}, "score")
    want_loss, want_grad = liaomingg_focal(x, y, loss_weight=3, **kw)
    assert loss_value == pytest.approx(3 * want_loss, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=2e-4, atol=1e-6)
