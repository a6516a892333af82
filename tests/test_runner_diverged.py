"""The demo's runner refuses a run whose loss turned NaN instead of scoring it."""

import numpy as np
import pytest

import caffe
from caffe_losses.experiments import runner

NET = """
layer { name: "x" type: "DummyData" top: "x" top: "y"
        dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 }
                           data_filler { type: "gaussian" } data_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
"""


class _Job:
    def label(self):
        return "toy ours seed 1"


def _solver(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.01\n'
                                              f'lr_policy: "fixed"\nmax_iter: 10\nsolver_mode: CPU\n')
    caffe.set_mode_cpu()
    return caffe.get_solver(str(tmp_path / "solver.prototxt"))


def test_a_finite_run_passes_and_a_nan_loss_is_named(tmp_path):
    solver = _solver(tmp_path)
    solver.step(2)
    runner._check_finite(solver, _Job())            # finite: nothing raised
    solver.net.blobs["loss"].data[...] = np.nan
    with pytest.raises(RuntimeError, match=r"toy ours seed 1: the training diverged: its output 'loss' is nan "
                                           r"at iteration 2"):
        runner._check_finite(solver, _Job())
