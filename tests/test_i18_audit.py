"""Issue 18, re-tried by hand on the merged work: what still failed, fixed and held here.

- ``check`` (and so ``train``'s pre-check) passed a native ``InfogainLoss``
  that Caffe's layer aborts on while setting up: ``loss_param { normalize }``
  (refused since Caffe 1.0) and no H at all. Each net is first run in
  Caffe, in a child process, to show that Caffe really aborts on it.
- ``migrate`` of a layer with a block given twice printed a translation
  (``loss_param { normalization: 0 } -> param_str ignore_label: 5``) before
  refusing the net: a refused net shows no translation.
- ``net-surgery --model`` on a net Caffe cannot build (a bottom no layer
  makes, a misspelt type) ended in SIGABRT.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from caffe_losses.files.hmatrix import save_h

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
ENV = dict(os.environ, GLOG_minloglevel="2")

INPUT = ('layer { name: "data" type: "Input" top: "data" top: "label"\n'
         '  input_param { shape { dim: 8 dim: 5 } shape { dim: 8 } } }\n'
         'layer { name: "fc8" type: "InnerProduct" bottom: "data" top: "fc8"\n'
         '  inner_product_param { num_output: 3 } }\n')


def run_cli(*args, cwd):
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, env=ENV, timeout=300)


def caffe_builds(path):
    """Builds the net in Caffe in a child process: (returncode, stderr)."""
    proc = subprocess.run([sys.executable, "-c", "import sys, caffe; caffe.Net(sys.argv[1], caffe.TRAIN)",
                           str(path)], cwd=os.path.dirname(str(path)), capture_output=True, text=True,
                          env=ENV, timeout=300)
    return proc.returncode, proc.stderr


def infogain(loss_fields):
    return INPUT + ('layer { name: "loss" type: "InfogainLoss" bottom: "fc8" bottom: "label" top: "loss"\n'
                    f'  {loss_fields} }}\n')


@pytest.mark.parametrize("normalize, mode", [("true", "VALID"), ("false", "BATCH_SIZE"), ("1", "VALID")])
def test_check_names_the_normalize_native_infogain_aborts_on(normalize, mode, tmp_path):
    save_h(str(tmp_path / "H.binaryproto"), np.eye(3))
    net = tmp_path / "net.prototxt"
    net.write_text(infogain(f'infogain_loss_param {{ source: "H.binaryproto" }} '
                            f'loss_param {{ normalize: {normalize} ignore_label: 255 }}'))
    code, stderr = caffe_builds(net)
    assert code != 0 and "normalize is deprecated" in stderr          # Caffe itself aborts
    proc = run_cli("check", "net.prototxt", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"net.prototxt: ERROR [native-infogain] layer 'loss': native InfogainLoss refuses loss_param "
            f"{{ normalize: {'false' if mode == 'BATCH_SIZE' else 'true'} }}") in proc.stdout
    assert f"Write 'normalization: {mode}' instead" in proc.stdout
    # train's pre-check refuses it in one line instead of Caffe's SIGABRT
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n'
                                              'max_iter: 1\nsolver_mode: CPU\n')
    proc = run_cli("train", "solver.prototxt", cwd=tmp_path)
    assert proc.returncode > 0 and "[native-infogain]" in proc.stdout + proc.stderr
    assert "Check failed" not in proc.stderr
    # the migrated net (normalize -> normalization) and the native net written with normalization pass
    assert run_cli("migrate", "net.prototxt", "-o", "m.prototxt", cwd=tmp_path).returncode == 0
    assert "native-infogain" not in run_cli("check", "m.prototxt", cwd=tmp_path).stdout
    net.write_text(infogain(f'infogain_loss_param {{ source: "H.binaryproto" }} '
                            f'loss_param {{ normalization: {mode} ignore_label: 255 }}'))
    assert caffe_builds(net)[0] == 0
    proc = run_cli("check", "net.prototxt", cwd=tmp_path)
    assert proc.returncode == 0 and "0 error(s)" in proc.stdout, proc.stdout


def test_check_names_a_native_infogain_without_h(tmp_path):
    net = tmp_path / "net.prototxt"
    net.write_text(infogain('loss_param { normalization: VALID }'))
    code, stderr = caffe_builds(net)
    assert code != 0 and "Infogain matrix source must be specified" in stderr
    proc = run_cli("check", "net.prototxt", cwd=tmp_path)
    assert proc.returncode == 1
    assert ("ERROR [native-infogain] layer 'loss': native InfogainLoss has neither infogain_loss_param "
            "{ source } nor a third bottom H") in proc.stdout
    # a third bottom H is an H: no such error, and Caffe builds it
    net.write_text(INPUT.replace('top: "label"\n', 'top: "label" top: "H"\n').replace(
        'shape { dim: 8 } }', 'shape { dim: 8 } shape { dim: 1 dim: 1 dim: 3 dim: 3 } }') +
        'layer { name: "loss" type: "InfogainLoss" bottom: "fc8" bottom: "label" bottom: "H" top: "loss" }\n')
    assert caffe_builds(net)[0] == 0
    assert "native-infogain" not in run_cli("check", "net.prototxt", cwd=tmp_path).stdout


def test_a_block_given_twice_shows_no_translation_before_the_refusal(tmp_path):
    save_h(str(tmp_path / "H.binaryproto"), np.eye(3))
    (tmp_path / "net.prototxt").write_text(infogain(
        'infogain_loss_param { source: "H.binaryproto" } loss_param { normalization: 0 } '
        'loss_param { ignore_label: 5 }'))
    proc = run_cli("migrate", "net.prototxt", "-o", "m.prototxt", cwd=tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "m.prototxt").exists()
    assert proc.stdout == ""                       # no "loss_param { normalization: 0 } -> ignore_label: 5"
    assert proc.stderr.splitlines() == [
        "cannot translate: layer 'loss' (InfogainLoss): 'loss_param' is given twice; Caffe refuses the net "
        "(\"Non-repeated field \"loss_param\" is specified multiple times\"): keep one (merge the two)",
        "caffe-losses migrate: 1 problem(s) in net.prototxt; nothing written"]


@pytest.mark.parametrize("edit, said", [
    (('bottom: "fc2" bottom: "label"', 'bottom: "fc2x" bottom: "label"'),
     "--model net.prototxt: layer 'loss' reads bottom 'fc2x', which no layer before it makes in the TRAIN net (Caffe would abort)"),
    (('type: "InnerProduct" bottom: "fc1"', 'type: "InnerProduc" bottom: "fc1"'),
     "--model net.prototxt: layer 'fc2' has type 'InnerProduc', which this Caffe does not have. "
     "Did you mean 'InnerProduct'?"),
])
def test_net_surgery_on_a_net_caffe_cannot_build_is_an_error_not_an_abort(edit, said, tmp_path):
    text = ('layer { name: "data" type: "Input" top: "data" top: "label" '
            'input_param { shape { dim: 8 dim: 5 } shape { dim: 8 } } }\n'
            'layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1" '
            'inner_product_param { num_output: 1 bias_term: false } }\n'
            'layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 3 } }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }\n')
    (tmp_path / "good.prototxt").write_text(text)
    assert run_cli("net-surgery", "--model", "good.prototxt", "--layer", "fc1", "--values", "0:5",
                   "--output", "good.caffemodel", cwd=tmp_path).returncode == 0
    net = tmp_path / "net.prototxt"
    net.write_text(text.replace(*edit))
    assert caffe_builds(net)[0] != 0                    # Caffe aborts on it
    proc = run_cli("net-surgery", "--model", "net.prototxt", "--layer", "fc1", "--values", "0:5",
                   "--output", "out.caffemodel", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"net-surgery: error: {said}"
    assert not (tmp_path / "out.caffemodel").exists()


@pytest.mark.parametrize("in_place", [True, False])
def test_double_softmax_advice_fits_an_in_place_softmax(in_place, tmp_path):
    """Feeding "the raw scores 'fc8'" is no advice when the Softmax overwrote fc8 in place."""
    save_h(str(tmp_path / "H.binaryproto"), np.eye(3))
    top = "fc8" if in_place else "prob"
    (tmp_path / "net.prototxt").write_text(
        INPUT + f'layer {{ name: "prob" type: "Softmax" bottom: "fc8" top: "{top}" }}\n'
        f'layer {{ name: "loss" type: "InfogainLoss" bottom: "{top}" bottom: "label" top: "loss" '
        'infogain_loss_param { source: "H.binaryproto" } }\n')
    proc = run_cli("check", "net.prototxt", cwd=tmp_path)
    assert proc.returncode == 1
    line = proc.stdout.splitlines()[0]
    assert "ERROR [double-softmax] layer 'loss': native InfogainLoss applies softmax itself" in line
    if in_place:
        assert "comes from Softmax layer 'prob' (in place)" in line
        assert "Remove the in-place Softmax layer 'prob' (it overwrites the raw scores 'fc8')" in line
        assert "Feed it" not in line
    else:
        assert "Feed it the raw scores ('fc8')" in line
    assert "caffe-losses migrate carries it over" in line
    # and migrate does carry it over: the migrated net passes check
    assert run_cli("migrate", "net.prototxt", "-o", "m.prototxt", cwd=tmp_path).returncode == 0
    proc = run_cli("check", "m.prototxt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout


def test_migrate_names_a_folder_or_fifo_given_as_net_or_weights(tmp_path):
    """Not "not found" for a path that exists; a FIFO is never opened (the command would hang)."""
    (tmp_path / "net.prototxt").write_text(infogain('loss_param { normalization: VALID }'))
    (tmp_path / "dir").mkdir()
    os.mkfifo(str(tmp_path / "fifo"))
    (tmp_path / "solver.prototxt").write_text('net: "dir"\nbase_lr: 0.1\n')
    for args, said in [
            (("net.prototxt", "--weights", "dir"), "weights file is a folder, not a file: dir"),
            (("net.prototxt", "--weights", "fifo"),
             "weights file is not a regular file (a FIFO, a device or a socket): fifo"),
            (("dir",), "net file is a folder, not a file: dir"),
            (("fifo",), "net file is not a regular file (a FIFO, a device or a socket): fifo"),
            (("solver.prototxt",), "net file is a folder, not a file: dir (named by the solver solver.prototxt"),
            (("gone.prototxt",), "net file not found: gone.prototxt")]:
        proc = run_cli("migrate", args[0], "-o", "out.prototxt", *args[1:], cwd=tmp_path)
        assert proc.returncode == 2 and f"caffe-losses migrate: {said}" in proc.stderr, (args, proc.stderr)
        assert not (tmp_path / "out.prototxt").exists()


# ---------------------------------------------------------------------------
# center_filler { sparse }: Caffe's gaussian filler runs it, so migrate carries it over
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("filler, zeros", [('type: "gaussian" mean: 1 std: 0.3 sparse: 2', True),
                                           ('type: "gaussian" std: 0.3 sparse: 10', False),
                                           ('type: "gaussian" std: 0.3 sparse: -1', False)])
def test_a_sparse_gaussian_center_filler_gives_caffes_numbers(filler, zeros, tmp_path):
    from test_i18_center_filler import _face, _native_twin, _net
    from test_migrate import migrate
    result = migrate(_face(filler))
    assert not result.problems
    assert ("sparse: " in result.text) == ("sparse: -1" not in filler)   # -1 is Caffe's default: dropped
    ours = _net(tmp_path / "ours.prototxt", result.text, 7)
    native = _net(tmp_path / "native.prototxt", _native_twin(filler), 7)
    centers = ours.params["center_loss"][0].data
    np.testing.assert_array_equal(centers, native.params["center_loss"][0].data)
    assert bool((centers == 0).any()) == zeros
    for name in ("ip1", "ip2"):           # the generator's stream is where Caffe leaves it
        np.testing.assert_array_equal(ours.params[name][0].data, native.params[name][0].data)


@pytest.mark.parametrize("filler, said", [
    ('type: "xavier" sparse: 3', "sparse is for the gaussian filler only: Caffe's xavier filler aborts on it"),
    ('type: "gaussian" sparse: 1.5', "'sparse: 1.5' in center_filler: expected an integer"),
])
def test_a_sparse_filler_caffe_aborts_on_is_refused_by_migrate(filler, said):
    from caffe_losses.nets.migrate import migrate_text
    from test_i18_center_filler import _face
    problems = migrate_text(_face(filler)).problems
    assert len(problems) == 1 and said in problems[0], problems


def test_a_sparse_filler_beyond_the_rows_is_a_layer_error_not_an_abort(tmp_path):
    """Caffe's Bernoulli draw aborts for sparse / rows > 1; the layer says so first."""
    import caffe
    from test_i18_center_filler import _face
    from test_migrate import migrate
    path = tmp_path / "net.prototxt"
    path.write_text(migrate(_face('type: "gaussian" sparse: 11')).text)
    with pytest.raises(Exception, match=r"CenterLoss: center_filler: sparse 11 is more than the 10 rows to "
                                        r"fill.*\[layer 'center_loss'\]"):
        caffe.Net(str(path), caffe.TRAIN)


def test_a_latin1_string_is_named_as_such_not_called_an_invalid_net(tmp_path):
    """Caffe reads a Latin-1 file name; Python's protobuf cannot: say that, in one line, for check and train."""
    save_h(str(tmp_path / "H.binaryproto"), np.eye(3))
    os.rename(str(tmp_path / "H.binaryproto"), os.path.join(os.fsencode(str(tmp_path)), b"H\xe9.binaryproto"))
    net = tmp_path / "net.prototxt"
    net.write_bytes(infogain('infogain_loss_param { source: "H@.binaryproto" }').encode().replace(b"@", b"\xe9"))
    assert caffe_builds(net)[0] == 0                   # Caffe reads it (and opens the file)
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n'
                                              'max_iter: 1\nsolver_mode: CPU\n')
    said = ("is not UTF-8 text (a Latin-1 file name?): Caffe reads it as bytes, "
            "but Python's protobuf, which caffe-losses reads net files with, refuses it.")
    for args in (("check", "net.prototxt"), ("train", "solver.prototxt", "--no-check")):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode in (1, 2) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert said in proc.stderr and "not a valid" not in proc.stderr, proc.stderr
        assert "net.prototxt: a string at 6:" in proc.stderr          # the file and the line


# ---------------------------------------------------------------------------
# A fork's layer is named as a fork's layer: no "Did you mean 'Pooling'?", no migrate loop
# ---------------------------------------------------------------------------

ROI_NET = INPUT + (
    'layer { name: "rois" type: "Input" top: "rois" input_param { shape { dim: 2 dim: 5 } } }\n'
    'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 '
    'kernel_size: 1 } }\n'
    'layer { name: "roi_pool5" type: "ROIPooling" bottom: "conv" bottom: "rois" top: "pool5"\n'
    '  roi_pooling_param { pooled_w: 6 pooled_h: 6 spatial_scale: 0.0625 } }\n')


def test_a_forks_layer_type_is_not_called_a_typo_of_a_bvlc_type(tmp_path):
    (tmp_path / "net.prototxt").write_text(ROI_NET)
    proc = run_cli("migrate", "net.prototxt", "-o", "kept.prototxt", "--keep-unknown", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("check", "kept.prototxt", cwd=tmp_path)
    line = [l for l in proc.stdout.splitlines() if "[layer-type]" in l]
    assert len(line) == 1 and "type 'ROIPooling' is not a layer type of this Caffe" in line[0]
    assert "Did you mean" not in line[0] and "No translation in caffe-losses migrate" in line[0]
    # a real typo still gets its suggestion
    (tmp_path / "typo.prototxt").write_text(INPUT.replace('"InnerProduct"', '"InnerProdcut"'))
    assert "Did you mean 'InnerProduct'?" in run_cli("check", "typo.prototxt", cwd=tmp_path).stdout
    # net-surgery and train read the kept net: the fork's field is named, and migrate is not offered
    # (it would refuse the same field: a loop)
    (tmp_path / "solver.prototxt").write_text('net: "kept.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n'
                                              'max_iter: 1\nsolver_mode: CPU\n')
    for args in (("net-surgery", "--model", "kept.prototxt", "--layer", "conv", "--values", "0:5",
                  "--output", "out.caffemodel"), ("train", "solver.prototxt", "--no-check")):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
        assert "layer 'roi_pool5' (ROIPooling): 'roi_pooling_param' is not in BVLC Caffe's caffe.proto" in proc.stderr
        assert "The net needs the Caffe (a fork) that has this field; caffe-losses migrate does not " \
               "translate it" in proc.stderr
        assert "caffe-losses migrate kept.prototxt" not in proc.stderr
    # a field migrate does translate still gets the command
    (tmp_path / "face.prototxt").write_text(INPUT + (
        'layer { name: "center_loss" type: "CenterLoss" bottom: "fc8" bottom: "label" top: "cl" '
        'center_loss_param { num_output: 10 } }\n'))
    proc = run_cli("net-surgery", "--model", "face.prototxt", "--layer", "fc8", "--values", "0:5",
                   "--output", "out.caffemodel", cwd=tmp_path)
    assert "To carry the net over to caffe_losses' layers: caffe-losses migrate face.prototxt -o " \
           "face_migrated.prototxt" in proc.stderr
