"""Bad inputs to `caffe-losses train`: entries of the bad-input corpus (test_bad_input_corpus.py).

Each is a file set and a `caffe-losses train` command run in its own
process: files Caffe would abort on (weights and solver states of the wrong
kind or of another net, a snapshot folder that is missing, a net Caffe
cannot build) and layer errors while building the nets must end in a clear
message and a non-zero exit, never an abort or a traceback.
"""

NET = (
    'layer { name: "x" type: "DummyData" top: "x" top: "y" dummy_data_param { '
    'shape { dim: 8 dim: 3 } shape { dim: 8 dim: 2 } data_filler { type: "gaussian" std: 1 } } }\n'
    'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" '
    'inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }\n'
    'layer { name: "loss" type: "Python" bottom: "fc" bottom: "y" top: "loss" '
    'python_param { module: "caffe_losses" layer: "SmoothL1Loss" param_str: "PARAMS" } loss_weight: 1 }\n')
OTHER_NET = NET.replace('"fc"', '"other_fc"').replace("dim: 3", "dim: 4")


def _text(name, text):
    return {name: f"open(path, 'w').write({text!r})"}


def _solver(extra="", name="solver.prototxt", prefix="snap"):
    return _text(name, f'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 3\n'
                       f'snapshot_prefix: "{prefix}"\nrandom_seed: 1\nsolver_mode: CPU\n{extra}')


# Python run by the corpus runner to write a file at `path` (Caffe's own writers)
SAVE_WEIGHTS = ("import caffe; caffe.set_mode_cpu(); "
                "caffe.Net(os.path.join(os.path.dirname(path), {net!r}), caffe.TRAIN).save(path)")
SAVE_STATE = ("import caffe, shutil; caffe.set_mode_cpu(); s = caffe.get_solver({solver!r}); s.step(1); "
              "s.snapshot(); shutil.move('{prefix}_iter_1.solverstate', path); {tail}")


def train_case(*args, net=NET, params="{sigma: 1}", solver_extra="", prefix="snap", files=None):
    case_files = dict(_text("net.prototxt", net.replace("PARAMS", params)))
    case_files.update(_solver(solver_extra, prefix=prefix))
    case_files.update(files or {})
    return {"files": case_files, "cli": ["train", "solver.prototxt", "--no-progress", *args]}


OTHER = dict(_text("other.prototxt", OTHER_NET.replace("PARAMS", "{sigma: 1}")))
OTHER_WEIGHTS = dict(OTHER, **{"other.caffemodel": SAVE_WEIGHTS.format(net="other.prototxt")})
ADAM_STATE = dict(_solver('type: "Adam"\n', name="adam.prototxt", prefix="adam"),
                  **{"adam.solverstate": SAVE_STATE.format(solver="adam.prototxt", prefix="adam", tail="")})
LOST_WEIGHTS_STATE = {"lost.solverstate": SAVE_STATE.format(
    solver="solver.prototxt", prefix="snap", tail="os.remove('snap_iter_1.caffemodel')")}
STATE = {"state.solverstate": SAVE_STATE.format(solver="solver.prototxt", prefix="snap", tail="")}
WEIGHTS = {"w.caffemodel": SAVE_WEIGHTS.format(net="net.prototxt")}

# (id, case, expected) as in CORPUS
TRAIN_CASES = [
    ("tool-train-prefix-folder-missing", train_case(prefix="nodir/snap"),
     ("exit", r"snapshot_prefix 'nodir/snap': folder 'nodir' does not exist")),
    ("tool-train-prefix-folder-is-a-file", train_case(prefix="afile/snap", files=_text("afile", "x")),
     ("exit", r"snapshot_prefix 'afile/snap': folder 'afile' is not a folder")),
    ("tool-train-weights-is-a-solverstate", train_case("--weights", "state.solverstate", files=STATE),
     ("exit", r"--weights state\.solverstate: is a solver state .*--snapshot")),
    ("tool-train-weights-is-a-blob", train_case("--weights", "H.binaryproto", files={
        "H.binaryproto": "from caffe_losses.files.hmatrix import save_h; save_h(path, np.eye(3))"}),
     ("exit", r"--weights H\.binaryproto: is a single blob")),
    ("tool-train-weights-is-text", train_case("--weights", "net.prototxt"),
     ("exit", r"--weights net\.prototxt: not a binary \.caffemodel")),
    ("tool-train-weights-of-another-net", train_case("--weights", "other.caffemodel", files=OTHER_WEIGHTS),
     ("exit", r"--weights other\.caffemodel: none of its layers with weights \('other_fc'\)")),
    ("tool-train-weights-misfit", train_case("--weights", "w.caffemodel", net=NET.replace("dim: 3", "dim: 5"),
                                             files=dict(_text("w.prototxt", NET.replace("PARAMS", "{}")),
                                                        **{"w.caffemodel": SAVE_WEIGHTS.format(net="w.prototxt")})),
     ("exit", r"--weights: layer 'fc' blob 0 has shape \(2, 3\) in w\.caffemodel but \(2, 5\)")),
    ("tool-train-solver-weights-field-missing", train_case(solver_extra='weights: "gone.caffemodel"\n'),
     ("exit", r"solver weights: weights file not found: gone\.caffemodel")),
    ("tool-train-snapshot-is-a-caffemodel", train_case("--snapshot", "w.caffemodel", files=WEIGHTS),
     ("exit", r"--snapshot w\.caffemodel: is a \.caffemodel \(weights\), not a solver state: .*--weights")),
    ("tool-train-snapshot-is-text", train_case("--snapshot", "net.prototxt"),
     ("exit", r"--snapshot net\.prototxt: not a \.solverstate")),
    ("tool-train-snapshot-weights-gone", train_case("--snapshot", "lost.solverstate", files=LOST_WEIGHTS_STATE),
     ("exit", r"--snapshot lost\.solverstate: its weights file 'snap_iter_1\.caffemodel' does not exist")),
    ("tool-train-snapshot-other-solver-type", train_case("--snapshot", "adam.solverstate", files=ADAM_STATE),
     ("exit", r"holds 4 history blob\(s\) but this net's solver \(type SGD\) keeps 2")),
    ("tool-train-weights-and-snapshot", train_case("--weights", "a", "--snapshot", "b"),
     ("exit", r"give --weights or --snapshot, not both")),
    ("tool-train-several-gpus", train_case("--gpu", "0,1"), ("exit", r"--gpu 0,1: one GPU id.*python/train\.py")),
    ("tool-train-gpu-unusable", train_case("--gpu", "99"), ("exit", r"--gpu 99: this Caffe cannot use that GPU")),
    ("tool-train-test-iter-without-interval", train_case(solver_extra="test_iter: 2\n"),
     ("exit", r"has test nets \(test_iter\) but no test_interval > 0")),
    ("tool-train-unknown-layer-type", train_case(net=NET.replace('"InnerProduct"', '"InnerProdcut"')),
     ("exit", r"net\.prototxt: ERROR \[layer-type\] layer 'fc': type 'InnerProdcut' is not a layer type of "
              r"this Caffe .*Did you mean 'InnerProduct'\?")),
    ("tool-train-unknown-bottom", train_case(net=NET.replace('bottom: "fc" bottom: "y"', 'bottom: "fc1" bottom: "y"')),
     ("exit", r"layer 'loss' reads bottom 'fc1', which no layer before it makes in the TRAIN net")),
    ("tool-train-top-made-twice", train_case(net=NET.replace('top: "fc"', 'top: "y"')),
     ("exit", r"layer 'fc' makes top 'y', which an earlier layer of the TRAIN net already makes")),
    # a bad param_str: the check rules name it first; with --no-check, the
    # layer's TypeError while Caffe builds the net, in one line naming the layer
    ("tool-train-bad-param-str", train_case(params="{sigma: [1, 2]}"),
     ("exit", r"net\.prototxt: ERROR \[param-str\] layer 'loss': SmoothL1Loss.*'sigma'.*--no-check")),
    ("tool-train-bad-param-str-no-check", train_case("--no-check", params="{sigma: [1, 2]}"),
     ("exit", r"caffe-losses train: building the nets of solver\.prototxt: net\.prototxt: layer 'loss': "
              r"SmoothL1Loss.*'sigma'")),
    ("tool-train-layer-module-missing", train_case("--no-check", net=NET.replace('module: "caffe_losses"',
                                                                                  'module: "no_such_layers"')),
     ("exit", r"net\.prototxt: layer 'loss': python_param module 'no_such_layers' could not be imported")),
]
