"""CenterLoss's center_filler draws from Caffe's own generator (issue 18, section 4).

caffe-face fills its (num_output, K) centers with Caffe's filler during
set-up; the migrated Python layer runs Caffe's filler at the same point, so
a seed gives the same centers on every run, and the very numbers Caffe's
filler gives a native blob of that shape (here: an InnerProduct's weights
(num_output, K), filled by the same filler at the same place in the net).
"""

import os
import subprocess
import sys
import textwrap

import caffe
import numpy as np
import pytest

from test_migrate import CAFFE_FACE, migrate

# LeNet++'s tail as caffe-face writes it: a learnable 2-D feature before the loss
HEAD = textwrap.dedent("""\
    layer { name: "input" type: "Input" top: "data" top: "label"
            input_param { shape { dim: 16 dim: 8 } shape { dim: 16 } } }
    layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
            inner_product_param { num_output: 2 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
    """)


def _native_twin(filler):
    """The centers' blob as a native layer: an InnerProduct (10, 2) with the same filler, at the same place."""
    return HEAD + textwrap.dedent(f"""\
        layer {{ name: "center_loss" type: "InnerProduct" bottom: "ip1" top: "twin"
                inner_product_param {{ num_output: 10 bias_term: false weight_filler {{ {filler} }} }} }}
        layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
                inner_product_param {{ num_output: 10 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
        """)


def _face(filler):
    face = CAFFE_FACE.replace('type: "xavier"', filler)
    return HEAD + face + textwrap.dedent("""\
        layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
                inner_product_param { num_output: 10 weight_filler { type: "gaussian" std: 0.1 } } }
        """)


def _net(path, text, seed):
    path.write_text(text)
    caffe.set_random_seed(seed)
    return caffe.Net(str(path), caffe.TRAIN)


FILLERS = ['type: "xavier"', 'type: "gaussian" std: 0.3', 'type: "uniform" min: -1 max: 2',
           'type: "msra" variance_norm: AVERAGE', 'type: "positive_unitball"']


@pytest.mark.parametrize("filler", FILLERS)
def test_the_centers_are_caffes_filler_numbers(filler, tmp_path):
    migrated = migrate(_face(filler)).text
    assert "center_filler" in migrated
    ours = _net(tmp_path / "ours.prototxt", migrated, 7)
    native = _net(tmp_path / "native.prototxt", _native_twin(filler), 7)
    centers = ours.params["center_loss"][0].data
    assert centers.shape == (10, 2) and len(np.unique(centers)) > 10
    np.testing.assert_array_equal(centers, native.params["center_loss"][0].data)
    # the generator's stream is where Caffe leaves it: the layers before and after get the same draws
    for name in ("ip1", "ip2"):
        np.testing.assert_array_equal(ours.params[name][0].data, native.params[name][0].data)
    again = _net(tmp_path / "again.prototxt", migrated, 7)
    np.testing.assert_array_equal(again.params["center_loss"][0].data, centers)
    other = _net(tmp_path / "other.prototxt", migrated, 8)
    assert not np.array_equal(other.params["center_loss"][0].data, centers)


SCRIPT = textwrap.dedent("""\
    import hashlib, sys
    import caffe
    solver = caffe.SGDSolver(sys.argv[1])
    start = hashlib.sha256(solver.net.params["center_loss"][0].data.tobytes()).hexdigest()
    solver.step(1)
    print("CENTERS", start, float(solver.net.blobs["center_loss"].data.flat[0]))
    """)


def _solver(tmp_path, seed):
    path = tmp_path / f"solver_{seed}.prototxt"
    path.write_text(f'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 1\n'
                    f'random_seed: {seed}\nsnapshot_after_train: false\n')
    return path


def test_two_processes_with_the_same_solver_seed_start_from_the_same_centers(tmp_path):
    net = migrate(_face('type: "xavier"')).text.replace(
        'layer { name: "input" type: "Input" top: "data" top: "label"\n'
        '        input_param { shape { dim: 16 dim: 8 } shape { dim: 16 } } }',
        'layer { name: "data" type: "DummyData" top: "data" top: "label"\n'
        '        dummy_data_param { shape { dim: 16 dim: 8 } shape { dim: 16 }\n'
        '          data_filler { type: "gaussian" } data_filler { type: "constant" value: 3 } } }')
    assert "DummyData" in net
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "run.py").write_text(SCRIPT)
    env = dict(os.environ, GLOG_minloglevel="2")
    runs = []
    for seed in (5, 5, 6):
        proc = subprocess.run([sys.executable, "run.py", str(_solver(tmp_path, seed))], cwd=tmp_path,
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append([line for line in proc.stdout.splitlines() if line.startswith("CENTERS")][0])
    assert runs[0] == runs[1]                 # same centers, same first loss
    assert runs[0].split()[1] != runs[2].split()[1]


def test_no_layer_draws_from_numpys_global_generator():
    """Every random draw in a layer comes from Caffe's generator (issue 18): no np.random in caffe_losses'
    layers or the modules they use."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "caffe_losses")
    found = []
    families = os.path.join(root, "losses")
    # each family's layer and core (its data.py, experiment.py and bench.py draw data, not weights)
    for family in sorted(os.listdir(families)):
        for part in ("layer.py", "core.py"):
            path = os.path.join(families, family, part)
            if os.path.isfile(path):
                text = open(path).read()
                if "np.random" in text or "import random" in text:
                    found.append(f"losses/{family}/{part}")
    assert len([f for f in os.listdir(families) if os.path.isfile(os.path.join(families, f, "layer.py"))]) >= 4
    for name in ("losses/common.py", "glue/base.py", "glue/fillers.py", "glue/params.py", "files/hmatrix.py"):
        if "np.random." in open(os.path.join(root, name)).read():
            found.append(name)
    assert not found, found
