"""SmoothL1Loss takes any finite inside/outside weights, as rbgirshick/caffe-fast-rcnn does (issue 18).

BVLC Caffe has no SmoothL1Loss: the fork's net is migrated and run here, and
compared with the fork's kernels transcribed term by term
(``test_migrate.fork_smooth_l1``).  Like the fork's own layer test
(``test_smooth_L1_loss_layer.cpp``), both weight bottoms are Gaussian.
"""

import numpy as np
import pytest

from caffe_losses.nets.lint import lint_file
from test_migrate import fork_smooth_l1, inputs, migrate, net

RNG = np.random.RandomState(1818)
NAMES = ["bbox_pred", "bbox_targets", "bbox_inside_weights", "bbox_outside_weights"]


def fork_net(shape, loss_weight=1):
    """A faster-rcnn head's loss as the fork's prototxt writes it (4 bottoms, sigma 3)."""
    return inputs(**{n: shape for n in NAMES}) + (
        "layer {\n  name: \"loss_bbox\"\n  type: \"SmoothL1Loss\"\n"
        + "".join(f'  bottom: "{n}"\n' for n in NAMES)
        + f'  top: "loss_bbox"\n  loss_weight: {loss_weight}\n  smooth_l1_loss_param {{ sigma: 3.0 }}\n}}\n')


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_weights_as_the_forks_layer_test(seed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shape = (4, 8, 3, 3)
    rng = np.random.RandomState(seed)
    text = fork_net(shape, loss_weight=2)
    result = migrate(text)
    data = {n: rng.randn(*shape).astype(np.float32) for n in NAMES}   # weights of both signs
    assert (data[NAMES[2]] < 0).any() and (data[NAMES[3]] < 0).any()
    n = net(result.text)
    for k, v in data.items():
        n.blobs[k].data[...] = v
    n.forward()
    n.backward()
    d = {k: v.astype(np.float64) for k, v in data.items()}
    loss, ga, gb = fork_smooth_l1(d[NAMES[0]], d[NAMES[1]], d[NAMES[2]], d[NAMES[3]], 3.0, 2.0)
    assert float(n.blobs["loss_bbox"].data.flat[0]) == pytest.approx(loss, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(n.blobs[NAMES[0]].diff, ga, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(n.blobs[NAMES[1]].diff, gb, rtol=1e-4, atol=1e-6)
    path = tmp_path / "migrated.prototxt"
    path.write_text(result.text)
    assert not [f for _, f in lint_file(str(path)) if f.severity == "error"]


def test_a_negative_outside_weight_gives_a_negative_term_and_a_negative_inside_weight_does_not(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shape = (2, 4)
    n = net(migrate(fork_net(shape)).text)
    n.blobs["bbox_pred"].data[...] = 1.0                 # d = 1 (sigma 3: linear region, f = 1 - 1/18)
    n.blobs["bbox_targets"].data[...] = 0.0
    n.blobs["bbox_inside_weights"].data[...] = 1.0
    n.blobs["bbox_outside_weights"].data[...] = 0.0
    n.blobs["bbox_inside_weights"].data[0, 0] = -1.0     # d = -1: the same term
    n.blobs["bbox_outside_weights"].data[0, 0] = 1.0
    n.forward()
    n.backward()
    f = 1 - 0.5 / 9
    assert float(n.blobs["loss_bbox"].data.flat[0]) == pytest.approx(f / 2, rel=1e-6)
    assert n.blobs["bbox_pred"].diff[0, 0] == pytest.approx((-1) * (-1) * 1 / 2)   # f'(-1) w_in w_out / N
    n.blobs["bbox_inside_weights"].data[0, 0] = 1.0
    n.blobs["bbox_outside_weights"].data[0, 0] = -1.0    # the fork's signed sum: a negative loss
    n.forward()
    n.backward()
    assert float(n.blobs["loss_bbox"].data.flat[0]) == pytest.approx(-f / 2, rel=1e-6)
    assert n.blobs["bbox_pred"].diff[0, 0] == pytest.approx(-0.5)   # pushes the error up


@pytest.mark.parametrize("which", [2, 3])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_weights_stay_refused(which, bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = net(migrate(fork_net((2, 4))).text)
    for k in NAMES:
        n.blobs[k].data[...] = 1.0
    n.blobs[NAMES[which]].data[1, 2] = bad
    name = "inside_weights" if which == 2 else "outside_weights"
    with pytest.raises(ValueError, match=rf"^SmoothL1Loss: bottom '{name}' holds {bad} at index \(1, 2\); "
                                         r"expected finite weights"):
        n.forward()
