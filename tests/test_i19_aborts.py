"""Issue 19: what made Caffe abort (or Python print a traceback) ends in one line.

Bad-input corpus entries, each run in its own process (tests/corpus_runner.py)
because Caffe could abort: solver typos, data sources that are not plain
files, blobs beyond Caffe's 32 axes, param_str numbers beyond float64, H
files larger than memory, outputs checked before the work.  Each asserts
a non-zero exit with a message naming the file, layer, key or field, no
traceback, and (where the case lists them) the user's files byte-identical.
"""

import re

import pytest

from corpus_train import NET, _text
from test_bad_input_corpus import run_case

SOLVER = ('net: "net.prototxt"\nbase_lr: 0.01\nmax_iter: 2\nsnapshot_prefix: "snap"\nrandom_seed: 1\n'
          'solver_mode: CPU\n')


def solver_case(command, settings, *args, net=NET, params="{sigma: 1}", files=None):
    """A net and a solver with ``settings`` (lr_policy, type...), then `caffe-losses COMMAND`."""
    case_files = dict(_text("net.prototxt", net.replace("PARAMS", params)))
    case_files.update(_text("solver.prototxt", SOLVER + settings))
    case_files.update(files or {})
    cli = ["train", "solver.prototxt", "--no-progress", *args] if command == "train" else \
        [command, "solver.prototxt", *args]
    return {"files": case_files, "cli": cli, "keep": sorted(case_files)}


def check_exit(result, want, code=None):
    assert result["outcome"] == "exit", result
    assert result["code"] > 0 if code is None else result["code"] == code, result
    out = result["stderr"] + result["stdout"]
    assert "Traceback" not in out, out
    assert re.search(want, out, re.S | re.M), out
    assert result["kept"], "a user's file changed"


SOLVER_TYPOS = [
    ("lr-policy-capitalised", 'lr_policy: "Step"\nstepsize: 1\ngamma: 0.1\n',
     r'lr_policy: "Step" is not a learning rate policy .*valid: "fixed", "step", "exp", "inv", "multistep", '
     r'"poly", "sigmoid"\. Did you mean "step"\?'),
    ("lr-policy-missing", "",
     r'lr_policy is not set \(Caffe would abort at the first iteration.*valid: "fixed", "step"'),
    ("type-lowercase", 'type: "sgd"\nlr_policy: "fixed"\n',
     r'type: "sgd" is not a solver type of this Caffe .*valid: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam\. '
     r'Did you mean "SGD"\?'),
    ("step-without-stepsize", 'lr_policy: "step"\ngamma: 0.1\n',
     r'lr_policy "step" \(base_lr \* gamma \^ floor\(iter / stepsize\)\) needs stepsize > 0, and stepsize is not set'),
    ("sigmoid-stepsize-zero", 'lr_policy: "sigmoid"\ngamma: 0.1\nstepsize: 0\n',
     r'lr_policy "sigmoid" .* needs stepsize > 0, got stepsize: 0'),
    ("exp-negative-gamma", 'lr_policy: "exp"\ngamma: -0.5\n', r'lr_policy "exp" .* needs gamma >= 0, got gamma: -0\.5'),
    ("adagrad-momentum", 'type: "AdaGrad"\nlr_policy: "fixed"\nmomentum: 0.9\n',
     r'type "AdaGrad" takes no momentum .*momentum: 0\.9'),
    ("rmsprop-decay", 'type: "RMSProp"\nlr_policy: "fixed"\nrms_decay: 1\n', r'needs 0 <= rms_decay < 1, got rms_decay: 1'),
    ("regularization-type", 'lr_policy: "fixed"\nweight_decay: 0.001\nregularization_type: "l2"\n',
     r'regularization_type: "l2" is not one of "L1", "L2"'),
    ("type-and-solver-type", 'lr_policy: "fixed"\ntype: "Adam"\nsolver_type: SGD\n',
     r"give type or the old solver_type, not both"),
]


@pytest.mark.parametrize("command", ["check", "train", "train-no-check"])
@pytest.mark.parametrize("settings, want", [c[1:] for c in SOLVER_TYPOS], ids=[c[0] for c in SOLVER_TYPOS])
def test_solver_typos_are_named_not_aborted(command, settings, want, tmp_path):
    args = ["--no-check"] if command == "train-no-check" else []
    result = run_case(solver_case(command.split("-")[0], settings, *args), tmp_path)
    check_exit(result, r"solver\.prototxt.*" + want, code=1)
    if command != "check":
        assert "caffe-losses train" in result["stderr"], result
        assert not list(tmp_path.glob("snap_iter_*")), "nothing trained"


@pytest.mark.parametrize("settings, want", [
    ('lr_policy: "step"\nstepsize: 1\n', r'WARNING \[solver\] .*lr_policy "step" .*gamma is not set \(0\), so the '
                                         r'learning rate drops to 0'),
    ('lr_policy: "poly"\n', r'WARNING \[solver\] .*lr_policy "poly" .*power is not set \(0\), so the learning rate '
                            r'never changes'),
    ('lr_policy: "multistep"\ngamma: 0.1\n', r'WARNING \[solver\] .*stepvalue is not set'),
], ids=["step-no-gamma", "poly-no-power", "multistep-no-stepvalue"])
def test_settings_caffe_runs_are_warnings_not_errors(settings, want, tmp_path):
    result = run_case(solver_case("check", settings), tmp_path)
    assert result["code"] == 0, result
    assert re.search(want, result["stdout"]), result
    assert re.search(r"0 error\(s\), 1 warning\(s\)", result["stdout"]), result


def test_check_runs_every_precheck_train_runs(tmp_path):
    # snapshot_prefix's folder missing: train refuses it, so check reports it (the same code)
    case = solver_case("check", 'lr_policy: "fixed"\nweights: "gone.caffemodel"\n')
    case["files"]["solver.prototxt"] = case["files"]["solver.prototxt"].replace('"snap"', '"nodir/snap"')
    result = run_case(case, tmp_path)
    check_exit(result, r"ERROR \[solver\] snapshot_prefix 'nodir/snap': folder 'nodir' does not exist", code=1)
    assert re.search(r"ERROR \[solver\] solver weights: weights file not found: gone\.caffemodel", result["stdout"])
    assert "2 error(s)" in result["stdout"], result
    # a weights field naming a file that is no .caffemodel, as train refuses it
    (tmp_path / "w").mkdir()
    case = solver_case("check", 'lr_policy: "fixed"\nweights: "H.binaryproto"\n',
                       files={"H.binaryproto": "from caffe_losses.files.hmatrix import save_h; save_h(path, np.eye(3))"})
    result = run_case(case, tmp_path / "w")
    check_exit(result, r"ERROR \[solver\] solver weights H\.binaryproto: is a single blob", code=1)
    # and the net's structure, as Net::Init would abort on it
    case = solver_case("check", 'lr_policy: "fixed"\n', net=NET.replace('bottom: "fc" bottom: "y"',
                                                                       'bottom: "fc1" bottom: "y"'))
    (tmp_path / "x").mkdir()
    result = run_case(case, tmp_path / "x")
    check_exit(result, r"net\.prototxt: ERROR \[net-structure\] net\.prototxt: layer 'loss' reads bottom 'fc1', "
                       r"which no layer before it makes in the TRAIN net", code=1)


# --- param_str numbers beyond float64 ------------------------------------------

@pytest.mark.parametrize("command", ["check", "train"])
@pytest.mark.parametrize("number", ["9" * 309, "-" + "9" * 399, "'" + "1" * 350 + "'"], ids=["309", "-399", "quoted"])
def test_param_str_number_beyond_float64_names_the_key(command, number, tmp_path):
    params = "{sigma: %s}" % number
    args = ["--no-check"] if command == "train" else []
    result = run_case(solver_case(command, 'lr_policy: "fixed"\n', *args, params=params), tmp_path)
    check_exit(result, r"layer 'loss'.*SmoothL1Loss: 'sigma' must fit float32, the type of Caffe's blobs: at most "
                       r"3\.402823e\+38 in magnitude \(an integer of \d{3} digits would be inf\)", code=1)


def test_param_str_overflow_in_the_parser_itself():
    from caffe_losses.glue.params import parse_params
    from caffe_losses import SmoothL1Loss, WeightedSigmoidCrossEntropyLoss
    for text in ("{sigma: %s}" % ("7" * 350), "{sigma: '%s'}" % ("7" * 350), "{sigma: 0x%s}" % ("f" * 280)):
        with pytest.raises(ValueError, match=r"SmoothL1Loss: 'sigma' must fit float32.*digits would be inf"):
            parse_params("SmoothL1Loss", SmoothL1Loss.PARAMS, text)
    with pytest.raises(ValueError, match=r"'pos_weight' must be a list of finite numbers \(an item must fit float32"):
        parse_params("W", WeightedSigmoidCrossEntropyLoss.PARAMS, "{pos_weight: [1, %s]}" % ("1" * 330))


# --- data sources that are not a list of .h5 files -------------------------------

H5_NET = NET.replace(
    'layer { name: "x" type: "DummyData" top: "x" top: "y" dummy_data_param { '
    'shape { dim: 8 dim: 3 } shape { dim: 8 dim: 2 } data_filler { type: "gaussian" std: 1 } } }\n',
    'layer { name: "data" type: "HDF5Data" top: "x" top: "y" hdf5_data_param { source: "SOURCE" batch_size: 4 } }\n')
H5 = ("import h5py; f = h5py.File(path, 'w'); f['x'] = np.ones((8, 3), 'f4'); f['y'] = np.zeros((8, 2), 'f4'); "
      "f.close()")
FIFO = "os.mkfifo(path)"
# a character device like /dev/zero (major 1, minor 5), made in the test's own folder (as root; else a FIFO)
ZERO = ("import stat; os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5)) if os.getuid() == 0 "
        "else os.mkfifo(path)")
DATA_CASES = [
    ("source-is-the-h5", "d.h5", {"d.h5": H5},
     r"data layer 'data' \(HDF5Data\): source 'd\.h5' is an HDF5 file; source must be a text file listing \.h5 files"),
    ("source-is-a-fifo", "pipe", {"pipe": FIFO},
     r"data layer 'data' \(HDF5Data\): source 'pipe' is a FIFO \(named pipe\), not a regular file"),
    ("source-is-a-device", "zero", {"zero": ZERO},
     r"data layer 'data' \(HDF5Data\): source 'zero' is (a character device|a FIFO \(named pipe\)), not a regular"),
    ("source-is-proc-self-mem", "/proc/self/mem", {},
     r"data layer 'data' \(HDF5Data\): source '/proc/self/mem' cannot be read"),
    ("source-is-huge", "big.txt", {"big.txt": "open(path, 'wb').truncate(65 * 2 ** 20)"},
     r"data layer 'data' \(HDF5Data\): source 'big\.txt' is larger than 64\.0 MiB: not a list of data files"),
    ("source-is-binary", "b.txt", {"b.txt": "open(path, 'wb').write(b'\\xff\\xfe\\x00data')"},
     r"source 'b\.txt' is not a text file \(byte 0 is not UTF-8\)"),
    ("list-names-a-fifo", "list.txt", {"list.txt": "open(path, 'w').write('pipe\\n')", "pipe": FIFO},
     r"list file 'list\.txt' names 'pipe', which is a FIFO \(named pipe\), not an HDF5 file"),
    ("list-names-a-text-file", "list.txt", {"list.txt": "open(path, 'w').write('list.txt\\n')"},
     r"list file 'list\.txt' names 'list\.txt', which is not an HDF5 file"),
]


@pytest.mark.parametrize("command", ["check", "train"])
@pytest.mark.parametrize("source, files, want", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_data_source_that_is_not_a_list_file(command, source, files, want, tmp_path):
    case = solver_case(command, 'lr_policy: "fixed"\n', net=H5_NET.replace("SOURCE", source), files=files)
    case["keep"] = [name for name in case["keep"] if name not in ("pipe", "zero")]    # never read those
    case["timeout"] = 60                  # blocking on a FIFO would end here, a failure
    result = run_case(case, tmp_path)
    check_exit(result, want, code=1)
    assert "caffe-losses train: " in result["stderr"] or command == "check"


def test_the_same_list_file_trains(tmp_path):
    case = solver_case("train", 'lr_policy: "fixed"\n', net=H5_NET.replace("SOURCE", "list.txt"),
                       files={"d.h5": H5, "list.txt": "open(path, 'w').write('d.h5\\n')"})
    result = run_case(case, tmp_path)
    assert result["code"] == 0 and "trained to iteration 2" in result["stdout"], result


# --- H and Constant files: larger than memory, a FIFO, more axes than a blob ----

INFOGAIN_NET = (
    'layer { name: "x" type: "DummyData" top: "score" top: "label" dummy_data_param { '
    'shape { dim: 4 dim: 10 } shape { dim: 4 } data_filler { type: "gaussian" std: 1 } '
    'data_filler { type: "constant" value: 1 } } }\n'
    'layer { name: "loss" type: "Python" bottom: "score" bottom: "label" top: "loss" '
    'python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" param_str: "PARAMS" } loss_weight: 1 }\n')
SPARSE = "from caffe_losses.files.safety import available_memory; open(path, 'wb').truncate(2 * available_memory())"


@pytest.mark.parametrize("command", ["check", "train"])
@pytest.mark.parametrize("files, source, want", [
    ({"H.binaryproto": SPARSE}, "H.binaryproto",
     r"'source' file 'H\.binaryproto'.*, of [\d.]+ [GT]iB \(a \.binaryproto H of L classes takes about 5 L\^2 "
     r"bytes\), would need [\d.]+ [GT]iB, more than the [\d.]+ [GMT]iB of memory available"),
    ({"H.npy": "from caffe_losses.files.safety import available_memory; "
               "np.lib.format.open_memmap(path, mode='w+', dtype='f8', shape=(2, available_memory() // 8))"}, "H.npy",
     r"'source' file 'H\.npy'.* \(2 x \d+ values\) would need [\d.]+ [GT]iB, more than"),
    ({"pipe": FIFO}, "pipe", r"'source' file 'pipe'.* is not a regular file \(a FIFO, a device or a socket\)"),
], ids=["binaryproto", "npy", "fifo"])
def test_h_file_larger_than_memory_or_not_a_file(command, files, source, want, tmp_path):
    case = solver_case(command, 'lr_policy: "fixed"\n', *(["--no-check"] if command == "train" else []),
                       net=INFOGAIN_NET, params="{source: %s}" % source, files=files)
    case["keep"] = ["net.prototxt", "solver.prototxt"]
    case["timeout"] = 60
    result = run_case(case, tmp_path)
    check_exit(result, r"layer 'loss'.*SoftmaxWithInfogainLoss: " + want, code=1)


def test_make_h_show_of_a_file_larger_than_memory(tmp_path):
    result = run_case({"files": {"H.binaryproto": SPARSE}, "cli": ["make-h", "--show", "H.binaryproto"]}, tmp_path)
    check_exit(result, r"make-h: error: '--show' file 'H\.binaryproto'.* of [\d.]+ [GT]iB \(a \.binaryproto H .*"
                       r"would need .* more than the .* of memory available", code=2)
    assert "fewer classes" not in result["stderr"]


AXES33 = "np.save(path, np.ones((1,) * 33))"
BLOB33 = ("from caffe.proto import caffe_pb2; b = caffe_pb2.BlobProto(); b.shape.dim.extend([1] * 33); "
          "b.data.append(1.0); open(path, 'wb').write(b.SerializeToString())")
CONSTANT_NET = NET.replace('layer { name: "loss"', 'layer { name: "h" type: "Python" top: "h" python_param { '
                           'module: "caffe_losses" layer: "Constant" param_str: "{source: SRC}" } }\nlayer { name: "loss"')


@pytest.mark.parametrize("command", ["check", "train"])
@pytest.mark.parametrize("name, expr", [("c.npy", AXES33), ("c.binaryproto", BLOB33)], ids=["npy", "binaryproto"])
def test_constant_source_of_33_axes(command, name, expr, tmp_path):
    case = solver_case(command, 'lr_policy: "fixed"\n', *(["--no-check"] if command == "train" else []),
                       net=CONSTANT_NET.replace("SRC", name), files={name: expr})
    result = run_case(case, tmp_path)
    check_exit(result, r"layer 'h'.*Constant: 'source' file 'c\.(npy|binaryproto)'.* has 33 axes; a Caffe blob has "
                       r"at most 32 \(kMaxBlobAxes\)", code=1)


@pytest.mark.parametrize("bottom", ["x".join(["1"] * 33), "a33.npy"], ids=["dims", "npy"])
def test_gradcheck_bottom_of_33_axes(bottom, tmp_path):
    case = {"files": {"a33.npy": AXES33},
            "cli": ["gradcheck", "--module", "caffe_losses", "--layer", "SmoothL1Loss", "--bottom", f"p={bottom}",
                    "--bottom", "t=2x2"], "keep": ["a33.npy"]}
    result = run_case(case, tmp_path)
    check_exit(result, r"caffe-losses gradcheck: --bottom p: .*33 (dims|axes); a Caffe blob has at most 32", code=2)


def test_32_axes_still_work(tmp_path):
    case = solver_case("train", 'lr_policy: "fixed"\n', net=CONSTANT_NET.replace("SRC", "c.npy"),
                       files={"c.npy": "np.save(path, np.ones((1,) * 32))"})
    result = run_case(case, tmp_path)
    assert result["code"] == 0 and "trained to iteration 2" in result["stdout"], result


# --- outputs checked before the work ---------------------------------------------

@pytest.mark.parametrize("curve, files, want, code", [
    ("cur", {}, r"training curve: cur\.png$", 0),
    ("cur.xyz", {}, r"caffe-losses train: --curve cur\.xyz: matplotlib cannot write '\.xyz' files; use one of .*\.png", 2),
    ("afile/c.png", {"afile": "open(path, 'w').write('x')"}, r"caffe-losses train: --curve afile/c\.png: .*afile is a "
                                                               r"file, not a folder", 2),
    ("net.prototxt", {}, r"--curve net\.prototxt: matplotlib cannot write '\.prototxt' files", 2),
    ("solver.png", {"solver.png": "os.symlink('solver.prototxt', path)"},
     r"--curve solver\.png is the solver file of this command; refusing to write over it", 2),
], ids=["no-extension", "unknown-extension", "file-in-the-way", "an-input", "link-to-the-solver"])
def test_curve_path_checked_before_training(curve, files, want, code, tmp_path):
    case = solver_case("train", 'lr_policy: "fixed"\n', "--curve", curve, files=files)
    result = run_case(case, tmp_path)
    assert result["code"] == code, result
    assert "Traceback" not in result["stderr"], result
    assert re.search(want, result["stdout"] + result["stderr"], re.M), result
    assert result["kept"]
    if code:
        assert not list(tmp_path.glob("snap_iter_*")), "refused before training"
    else:
        assert (tmp_path / "cur.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not (tmp_path / "cur").exists()


FEATURE_NET = (
    'layer { name: "x" type: "DummyData" top: "x" top: "label" dummy_data_param { shape { dim: 6 dim: 3 } '
    'shape { dim: 6 } data_filler { type: "gaussian" std: 1 } data_filler { type: "uniform" min: 0 max: 3 } } }\n'
    'layer { name: "feature" type: "InnerProduct" bottom: "x" top: "feature" inner_product_param { num_output: 2 '
    'weight_filler { type: "gaussian" std: 1 } } }\n')
FEATURE_FILES = dict(_text("n.prototxt", FEATURE_NET),
                     **{"n.caffemodel": "import caffe; caffe.Net(os.path.join(os.path.dirname(path), 'n.prototxt'), "
                                        "caffe.TEST).save(path)"})


@pytest.mark.parametrize("out, want, code, written", [
    ("feats", r"wrote feats\.png$", 0, "feats.png"),
    ("feats.tmp", r"plot-features: --out feats\.tmp: matplotlib cannot write '\.tmp' files", 2, None),
    ("n.prototxt", r"matplotlib cannot write '\.prototxt' files", 2, None),
], ids=["no-extension", "unknown-extension", "an-input"])
def test_plot_features_out_checked_before_the_nets_run(out, want, code, written, tmp_path):
    case = {"files": FEATURE_FILES, "cli": ["plot-features", "--model", "n.prototxt", "n.caffemodel", "--out", out],
            "keep": sorted(FEATURE_FILES)}
    if code:    # refused before the nets: a weights file that is missing is never reached
        case["files"] = _text("n.prototxt", FEATURE_NET)
        case["keep"] = ["n.prototxt"]
    result = run_case(case, tmp_path)
    assert result["code"] == code, result
    assert "Traceback" not in result["stderr"] and "weights file not found" not in result["stderr"], result
    assert re.search(want, result["stdout"] + result["stderr"], re.M), result
    assert result["kept"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(case["keep"] + ([written] if written else []))


def test_plot_features_data_source_fifo(tmp_path):
    net = H5_NET.replace("SOURCE", "pipe").split('layer { name: "loss"')[0]
    case = {"files": dict(_text("n.prototxt", net), pipe=FIFO,
                          **{"n.caffemodel": "import caffe; caffe.Net(os.path.join(os.path.dirname(path), 'w.prototxt'), "
                                             "caffe.TEST).save(path)"},
                          **_text("w.prototxt", NET.replace("PARAMS", "{}"))),
            "cli": ["plot-features", "--model", "n.prototxt", "n.caffemodel", "--feature", "fc", "--label", "y",
                    "--out", "f.png"], "timeout": 60}
    # w.prototxt is written after n.caffemodel in the dict order above: write it first
    case["files"] = {k: case["files"][k] for k in ("w.prototxt", "n.prototxt", "pipe", "n.caffemodel")}
    result = run_case(case, tmp_path)
    assert result["code"] == 2, result
    assert re.search(r"data layer 'data' \(HDF5Data\): source 'pipe' is a FIFO", result["stderr"]), result
    assert not (tmp_path / "f.png").exists()


# --- layer errors name the net's own blobs ------------------------------------------

def test_layer_errors_name_the_nets_blobs_not_the_roles(tmp_path):
    # a 5 x 5 H in a 10-class net whose scores blob is 'score'
    case = solver_case("train", 'lr_policy: "fixed"\n', "--no-check", net=INFOGAIN_NET,
                       params="{source: H5.binaryproto}",
                       files={"H5.binaryproto": "from caffe_losses.files.hmatrix import save_h; save_h(path, np.eye(5))"})
    result = run_case(case, tmp_path)
    check_exit(result, r"layer 'loss': SoftmaxWithInfogainLoss: 'source' file 'H5\.binaryproto' holds a 5 x 5 H, but "
                       r"bottom 'score' \(4, 10\) has 10 classes on axis 1: H must be 10 x 10", code=1)
    assert "'scores'" not in result["stderr"]
    # while training: a label out of range in a blob named 'lab'
    net = INFOGAIN_NET.replace('top: "label"', 'top: "lab"').replace('bottom: "label"', 'bottom: "lab"') \
        .replace("value: 1 }", "value: 12 }")
    (tmp_path / "2").mkdir()
    result = run_case(solver_case("train", 'lr_policy: "fixed"\n', "--no-check", net=net,
                                  params="{source: H.npy}", files={"H.npy": "np.save(path, np.eye(10))"}),
                      tmp_path / "2")
    check_exit(result, r"iteration 0: net\.prototxt: layer 'loss': SoftmaxWithInfogainLoss: bottom 'lab' holds 12", code=1)
    assert "'label'" not in result["stderr"]


def test_blob_names_rewrite():
    from caffe.proto import caffe_pb2
    from caffe_losses.training import with_blob_names
    from caffe_losses import SmoothL1Loss
    spec = caffe_pb2.LayerParameter(bottom=["fc", "pred", "w_in"])
    message = "SmoothL1Loss: bottom 'target' must have as many values as 'pred' (4, 2); bottom 'inside_weights' x"
    assert with_blob_names(message, SmoothL1Loss, spec) == \
        "SmoothL1Loss: bottom 'pred' must have as many values as 'fc' (4, 2); bottom 'w_in' x"
    assert with_blob_names(message, SmoothL1Loss, None) == message


def test_out_of_memory_in_a_layer_says_so(tmp_path):
    net = NET + ('layer { name: "big" type: "Python" bottom: "fc" top: "big" python_param { module: "i19_layers" '
                 'layer: "OutOfMemory" } }\n')
    result = run_case(solver_case("train", 'lr_policy: "fixed"\n', net=net), tmp_path)
    # the user's own layer: its traceback is shown (where in their code), then the one line
    assert result["code"] == 1 and result["kept"], result
    assert re.search(r"^caffe-losses train: iteration 0: net\.prototxt: layer 'big': out of memory \(MemoryError\): "
                     r"its inputs or files are too large for the memory available$", result["stderr"], re.M), result


@pytest.mark.parametrize("option", ["--labels", "--matrix"])
def test_make_h_input_that_is_a_fifo(option, tmp_path):
    result = run_case({"files": {"pipe": FIFO}, "cli": ["make-h", option, "pipe", "-o", "H.binaryproto"],
                       "timeout": 60}, tmp_path)
    check_exit(result, r"make-h: error: .*file 'pipe'.* is not a regular file \(a FIFO, a device or a socket\)", code=2)
    assert not (tmp_path / "H.binaryproto").exists()
