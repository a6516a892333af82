"""CenterLoss under real Caffe solvers: update modes, snapshots, resume."""

import os
import shutil
import textwrap
import warnings

import numpy as np
import pytest

import caffe
from caffe_losses.losses.center.layer import CenterUpdateWarning
from caffe_losses.nets.templates import TEMPLATE_ROOT, prepare_template
from caffe_losses.training import train

RNG = np.random.RandomState(11)
N, D, C = 8, 2, 3


def write_solver(folder, update, *, lr_mult, decay_mult=0, weight_decay=0, alpha=None, base_lr=1.0):
    """A net of Input blobs feeding CenterLoss, and a plain SGD solver."""
    alpha_key = f"alpha: {alpha}, " if alpha is not None else ""
    spec = f"param {{ lr_mult: {lr_mult} decay_mult: {decay_mult} }}" if lr_mult is not None else ""
    (folder / "net.prototxt").write_text(textwrap.dedent(f"""
        # force_backward: the Inputs need no gradient, and with lr_mult 0 Caffe
        # would otherwise skip the layer's backward (and so the direct update)
        force_backward: true
        layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {N} dim: {D} }} }} }}
        layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: {N} }} }} }}
        layer {{ name: "center_loss" type: "Python" bottom: "x" bottom: "y" top: "loss"
                python_param {{ module: "caffe_losses" layer: "CenterLoss"
                               param_str: "{{num_classes: {C}, {alpha_key}update: {update}}}" }}
                {spec}
                loss_weight: 0.1 }}
    """))
    (folder / "solver.prototxt").write_text(
        f'net: "{folder / "net.prototxt"}"\ntype: "SGD"\nbase_lr: {base_lr}\nlr_policy: "fixed"\n'
        f"momentum: 0\nweight_decay: {weight_decay}\nmax_iter: 100\nsnapshot_after_train: false\n")
    return caffe.get_solver(str(folder / "solver.prototxt"))


def run_steps(solver, batches, init):
    solver.net.params["center_loss"][0].data[...] = init
    history = []
    for x, y in batches:
        solver.net.blobs["x"].data[...] = x
        solver.net.blobs["y"].data[...] = y
        solver.step(1)
        history.append(solver.net.params["center_loss"][0].data.copy())
    return np.array(history)


@pytest.mark.parametrize("alpha, base_lr, lr_mult", [(1.0, 1.0, 1), (0.5, 1.0, 0.5), (0.5, 0.25, 2)])
def test_solver_update_with_sgd_at_rate_alpha_reproduces_direct_update(tmp_path, alpha, base_lr, lr_mult):
    # plain SGD at rate base_lr * lr_mult = alpha; (1, 1, 1) is "SGD at lr 1" == direct with alpha 1
    batches = [(RNG.randn(N, D) * 3, RNG.randint(0, C, N)) for _ in range(6)]
    batches[2][1][:] = 0          # one batch with a single class: the others must stay put
    init = RNG.randn(C, D)
    (tmp_path / "direct").mkdir()
    (tmp_path / "solver").mkdir()
    direct = run_steps(write_solver(tmp_path / "direct", "direct", lr_mult=0, alpha=alpha), batches, init)
    solver = run_steps(write_solver(tmp_path / "solver", "solver", lr_mult=lr_mult, base_lr=base_lr),
                       batches, init)
    assert not np.allclose(direct[-1], init.astype(np.float32), atol=1e-2)   # the centers did move
    np.testing.assert_array_equal(direct[2][1:], direct[1][1:])              # classes 1, 2 absent
    np.testing.assert_allclose(solver, direct, rtol=1e-6, atol=1e-6)


def test_direct_update_warns_when_the_solver_also_moves_the_centers(tmp_path):
    # no param { lr_mult: 0 decay_mult: 0 }: weight decay shrinks the centers behind the layer's back
    solver = write_solver(tmp_path, "direct", lr_mult=None, weight_decay=0.1, base_lr=0.1)
    solver.net.params["center_loss"][0].data[...] = RNG.randn(C, D)
    solver.net.blobs["x"].data[...] = RNG.randn(N, D)
    solver.net.blobs["y"].data[...] = RNG.randint(0, C, N)
    with pytest.warns(CenterUpdateWarning, match=r"CenterLoss: the centers changed .* lr_mult: 0 decay_mult: 0"):
        solver.step(2)


def test_direct_update_with_frozen_centers_does_not_warn(tmp_path):
    solver = write_solver(tmp_path, "direct", lr_mult=0, weight_decay=0.1)
    solver.net.blobs["x"].data[...] = RNG.randn(N, D)
    solver.net.blobs["y"].data[...] = RNG.randint(0, C, N)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CenterUpdateWarning)
        solver.step(3)


def test_template_snapshot_then_resume_restores_the_centers(tmp_path, monkeypatch):
    folder = tmp_path / "center_loss_lenetpp"
    shutil.copytree(os.path.join(TEMPLATE_ROOT, "center_loss_lenetpp"), folder)
    prepare_template(str(folder), small=True)
    monkeypatch.chdir(folder)
    solver_text = (folder / "solver.prototxt").read_text()
    solver_text = solver_text.replace("snapshot: 1000", "snapshot: 5")
    (folder / "solver.prototxt").write_text(solver_text)

    first = train("solver.prototxt", max_iter=8, progress=False)
    saved = first["solver"].net.params["center_loss"][0].data   # view; compare with the file below
    snap_model = folder / "lenetpp_center_iter_5.caffemodel"
    snap_state = folder / "lenetpp_center_iter_5.solverstate"
    assert snap_model.is_file() and snap_state.is_file()
    at_snapshot = caffe.Net("train_val.prototxt", caffe.TEST, weights=str(snap_model))
    centers_at_5 = at_snapshot.params["center_loss"][0].data.copy()
    assert np.all(np.abs(centers_at_5) > 1e-3)     # they all moved from their zero start
    assert not np.allclose(saved, centers_at_5)      # and kept moving after the snapshot

    # resume: a fresh solver restores the snapshot; the centers must be those at iteration 5
    resumed = caffe.get_solver("solver.prototxt")
    assert np.all(resumed.net.params["center_loss"][0].data == 0)
    resumed.restore(str(snap_state))
    assert resumed.iter == 5
    np.testing.assert_array_equal(resumed.net.params["center_loss"][0].data, centers_at_5)

    # and through caffe_losses.training.train(snapshot=...): training goes on from there
    again = train("solver.prototxt", snapshot=str(snap_state), max_iter=5, progress=False)
    np.testing.assert_array_equal(again["solver"].net.params["center_loss"][0].data, centers_at_5)
    assert again["solver"].iter == 5 and again["iters"] == []
