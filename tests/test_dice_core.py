"""DiceLoss's NumPy core: the formulas against a loop transcription, float64 finite differences of
every key combination, stability at logits of +-1e4, and the refused settings."""

import itertools

import numpy as np
import pytest

from caffe_losses.glue.testing import check_gradient
from caffe_losses.losses.dice import core

IGNORE = 255


def _probabilities(x, activation):
    if activation == "none":
        return x
    if activation == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1 / (1 + np.exp(-x))


def loop_dice(x, label, *, activation="softmax", smooth=1e-5, squared=False, weights="none",
              batch=False, include_background=True, ignore_label=None):
    """The issue's formula written out with loops over samples and classes (an independent reading)."""
    n, c = x.shape[:2]
    x = x.reshape(n, c, -1)
    p = _probabilities(x, activation)
    if activation != "sigmoid":
        y = label.reshape(n, -1)
        valid = np.ones_like(y, bool) if ignore_label is None else y != ignore_label
        g = np.stack([(y == k) & valid for k in range(c)], axis=1).astype(float)
        v = np.repeat(valid[:, None, :], c, axis=1)
    else:
        t = label.reshape(n, c, -1)
        v = np.ones_like(t, bool) if ignore_label is None else t != ignore_label
        g = np.where(v, t, 0).astype(float)
    k = 2 if squared else 1
    classes = range(0 if include_background else 1, c)
    rows = [list(range(n))] if batch else [[i] for i in range(n)]
    stats = []                                   # per row: {class: (I, P, G)}
    for row in rows:
        s = {}
        for cl in classes:
            inter = sum((p[i, cl] * g[i, cl] * v[i, cl]).sum() for i in row)
            psum = sum(((p[i, cl] ** k) * v[i, cl]).sum() for i in row)
            gsum = sum((g[i, cl] ** k).sum() for i in row)
            s[cl] = (inter, psum, gsum)
        stats.append(s)
    if weights == "none":
        terms = [(2 * I + smooth) / (P + G + smooth) for s in stats for (I, P, G) in s.values()]
        return 1 - np.mean(terms)
    ratios = []
    for s in stats:
        if weights == "generalized":
            present = {cl: 1 / G ** 2 for cl, (I, P, G) in s.items() if G > 0}
            top = max(present.values()) if present else 0.0
            w = {cl: present.get(cl, top) for cl in s}
        else:
            w = {cl: weights[cl] for cl in s}
        num = 2 * sum(w[cl] * I for cl, (I, P, G) in s.items()) + smooth
        den = sum(w[cl] * (P + G) for cl, (I, P, G) in s.items()) + smooth
        ratios.append(num / den)
    return 1 - np.mean(ratios)


def _case(activation, *, ignore=False, seed=0, shape=(3, 4, 3, 5), absent=None):
    rng = np.random.RandomState(seed)
    x = rng.randn(*shape) * 2
    if activation == "none":                     # probabilities, away from 0 and 1 for the differences
        x = 0.05 + 0.9 * rng.rand(*shape)
    n, c = shape[:2]
    if activation != "sigmoid":
        label = rng.randint(0, c, (n, 1) + shape[2:]).astype(float)
        if absent is not None:
            label[label == absent] = (absent + 1) % c
    else:
        label = (rng.rand(*shape) < 0.3).astype(float)
        if absent is not None:
            label[:, absent] = 0
    if ignore:
        label.reshape(-1)[rng.rand(label.size) < 0.2] = IGNORE
    return x, label


KEYS = dict(activation=("softmax", "sigmoid", "none"), squared=(False, True),
            weights=("none", "generalized", "list"), batch=(False, True),
            include_background=(True, False), ignore=(False, True))
COMBOS = [dict(zip(KEYS, v)) for v in itertools.product(*KEYS.values())]


def _settings(combo, c):
    kw = dict(combo)
    ignore = kw.pop("ignore")
    if kw["weights"] == "list":
        kw["weights"] = [0.5, 2.0, 1.0, 3.0][:c]
    if ignore:
        kw["ignore_label"] = IGNORE
    return kw, ignore


@pytest.mark.parametrize("combo", COMBOS, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_every_combination_matches_the_formula_and_finite_differences(combo):
    kw, ignore = _settings(combo, 4)
    # one class absent from some samples: the generalized weights' MONAI rule is exercised
    x, label = _case(kw["activation"], ignore=ignore, seed=len(str(combo)), shape=(3, 4, 2, 3),
                     absent=2)
    kw["smooth"] = 0.1
    loss, cache = core.dice_forward(x, label, **kw)
    assert loss == pytest.approx(loop_dice(x, label, **kw), rel=1e-12, abs=1e-12)
    grad = core.dice_backward(cache, scale=1.0)
    check_gradient(lambda z: core.dice_forward(z, label, **kw)[0], grad, x, eps=1e-6, rtol=1e-6,
                   atol=1e-9)
    # scale folds in, out= receives it in another shape of the same count
    out = np.empty(x.size)
    assert core.dice_backward(cache, scale=-2.5, out=out) is out
    np.testing.assert_allclose(out, -2.5 * grad.reshape(-1), rtol=1e-12, atol=1e-15)


def test_float32_close_to_float64():
    x, label = _case("softmax", ignore=True, shape=(2, 3, 8, 8))
    for kw in (dict(), dict(squared=True, weights="generalized", batch=True)):
        l64, c64 = core.dice_forward(x, label, ignore_label=IGNORE, **kw)
        l32, c32 = core.dice_forward(x.astype(np.float32), label.astype(np.float32),
                                     ignore_label=IGNORE, **kw)
        assert l32 == pytest.approx(l64, rel=1e-5)
        g32 = core.dice_backward(c32)
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, core.dice_backward(c64), rtol=1e-3, atol=1e-7)


def test_perfect_prediction_gives_zero_and_wrong_one_gives_one():
    label = np.array([[[0, 1, 1, 2]]], float)                 # (1, 1, 4)
    onehot = np.eye(3)[label[0, 0].astype(int)].T[None]       # (1, 3, 4)
    assert core.dice_forward(1e4 * onehot, label, smooth=1e-5)[0] == pytest.approx(0, abs=1e-12)
    wrong = np.roll(onehot, 1, axis=1)
    assert core.dice_forward(1e4 * wrong, label, smooth=1e-5)[0] == pytest.approx(1, abs=1e-5)


def test_absent_class_gets_the_largest_present_weight_not_inf():
    x, label = _case("softmax", shape=(2, 3, 4, 4), absent=1)
    gsum = np.array([[(label[i] == k).sum() for k in range(3)] for i in range(2)], float)
    assert (gsum[:, 1] == 0).all()
    w = core._generalized_weights(gsum)
    np.testing.assert_allclose(w[:, 1], np.maximum(1 / gsum[:, 0] ** 2, 1 / gsum[:, 2] ** 2))
    loss, cache = core.dice_forward(x, label, weights="generalized")
    assert np.isfinite(loss) and np.isfinite(core.dice_backward(cache)).all()
    # a row with no class present at all (every label ignored): weights 0, R = s / s, loss 0
    all_ignored = np.full_like(label, IGNORE)
    loss, cache = core.dice_forward(x, all_ignored, weights="generalized", ignore_label=IGNORE)
    assert loss == pytest.approx(0.0, abs=1e-12)
    assert not core.dice_backward(cache).any()


def test_ignored_positions_leave_every_sum():
    x, label = _case("softmax", ignore=True, shape=(2, 3, 5, 5))
    keep = label[:, 0] != IGNORE
    x2 = x.copy()
    x2[np.broadcast_to(~keep[:, None], x.shape)] = 123.0     # scores there do not matter
    for kw in (dict(), dict(squared=True), dict(weights="generalized", batch=True)):
        a, ca = core.dice_forward(x, label, ignore_label=IGNORE, **kw)
        b, _ = core.dice_forward(x2, label, ignore_label=IGNORE, **kw)
        assert a == b
        g = core.dice_backward(ca)
        assert not g[np.broadcast_to(~keep[:, None], x.shape)].any()


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extreme_logits_stay_finite(activation, dtype):
    x, label = _case(activation, ignore=True, shape=(2, 3, 4, 4))
    x = (np.sign(x) * 1e4).astype(dtype)
    for combo in COMBOS[::5]:
        kw, _ = _settings(combo, 3)
        kw.update(activation=activation, ignore_label=IGNORE, smooth=1e-5)
        loss, cache = core.dice_forward(x, label.astype(dtype), **kw)
        assert np.isfinite(loss) and 0 <= loss <= 1
        g = core.dice_backward(cache)
        assert g.dtype == dtype and np.isfinite(g).all()
    # and the tiniest smooth with a class absent and saturated probabilities
    loss, cache = core.dice_forward(x, label.astype(dtype), activation=activation, smooth=1e-30,
                                    ignore_label=IGNORE)
    assert np.isfinite(loss) and np.isfinite(core.dice_backward(cache)).all()


def test_one_channel_sigmoid_equals_the_formula_by_hand():
    rng = np.random.RandomState(3)
    x = rng.randn(2, 1, 6)
    t = (rng.rand(2, 1, 6) < 0.5).astype(float)
    p = 1 / (1 + np.exp(-x))
    d = (2 * (p * t).sum(axis=(1, 2)) + 1) / (p.sum(axis=(1, 2)) + t.sum(axis=(1, 2)) + 1)
    assert core.dice_forward(x, t, activation="sigmoid", smooth=1)[0] == pytest.approx(1 - d.mean())


@pytest.mark.parametrize("kwargs, label_shape, words", [
    (dict(activation="softmax"), (2, 1, 4), "at least 2 classes"),
    (dict(activation="tanh"), (2, 1, 4), "'activation' must be one of"),
    (dict(weights="inverse"), (2, 1, 4), "'weights' must be none, generalized"),
    (dict(weights=[1.0, -1.0, 1.0]), (2, 1, 4), "finite numbers >= 0"),
    (dict(weights=[1.0, 1.0]), (2, 1, 4), "has 2 weight(s)"),
])
def test_bad_settings_are_refused(kwargs, label_shape, words):
    c = 1 if "at least 2" in words else 3
    x = np.zeros((2, c, 4))
    with pytest.raises(ValueError, match="^dice: .*" + words.replace("(", r"\(").replace(")", r"\)")):
        core.dice_forward(x, np.zeros(label_shape), **kwargs)


def test_bad_shapes_and_labels_are_refused():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="bottom 'label' must hold one class index per position"):
        core.dice_forward(x, np.zeros((2, 1, 5)))
    with pytest.raises(ValueError, match="at least 2 axes"):
        core.dice_forward(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"bottom 'label' holds 3.0 at index \(0, 0, 1\)"):
        core.dice_forward(x, np.array([[[0, 3, 1, 1]], [[0, 0, 0, 0]]], float))
    with pytest.raises(ValueError, match=r"bottom 'label' holds 0.5 .*expected 0 or 1"):
        core.dice_forward(x, np.full(x.shape, 0.5), activation="sigmoid")
    with pytest.raises(ValueError, match="drops class 0, the only class"):
        core.dice_forward(np.zeros((2, 1, 4)), np.zeros((2, 1, 4)), activation="sigmoid",
                          include_background=False)
    with pytest.raises(ValueError, match="non-finite value nan"):
        core.dice_forward(np.full((2, 3, 4), np.nan), np.zeros((2, 1, 4)))


def test_activation_none_takes_probabilities_and_refuses_scores():
    rng = np.random.RandomState(5)
    x = rng.randn(2, 3, 4)
    label = rng.randint(0, 3, (2, 1, 4)).astype(float)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    a, ca = core.dice_forward(x, label, activation="softmax", squared=True)
    b, cb = core.dice_forward(p, label, activation="none", squared=True)
    assert a == pytest.approx(b, rel=1e-12)
    # the chain rule through softmax of the probabilities' gradient is the softmax form's gradient
    q = core.dice_backward(cb)
    np.testing.assert_allclose(p * (q - (p * q).sum(axis=1, keepdims=True)), core.dice_backward(ca),
                               rtol=1e-10, atol=1e-15)
    with pytest.raises(ValueError, match=r"^dice: bottom 'scores' holds -0\.5 at index \(0, 1, 2\); "
                                         r"activation none expects probabilities in \[0, 1\]"):
        bad = p.copy()
        bad[0, 1, 2] = -0.5
        core.dice_forward(bad, label, activation="none")
