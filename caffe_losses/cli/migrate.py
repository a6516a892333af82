"""Carry a net written for Caffe's native or the forks' loss layers over to caffe_losses.

Rewrites these loss layers into this package's layers with the same
behaviour, and leaves every other layer as it was (byte for byte):

  native InfogainLoss (source or third bottom H, loss_param, axis, 2nd top)
                                    -> SoftmaxWithInfogainLoss (InfogainLoss after a Softmax)
  fast-rcnn SmoothL1Loss (sigma, 2 to 4 bottoms)        -> SmoothL1Loss
  caffe-face CenterLoss (num_output, center_filler)     -> CenterLoss, update: solver
  HED's SigmoidCrossEntropyLoss (with --hed)            -> WeightedSigmoidCrossEntropyLoss, balance: auto
  caffe_losses Python layers carrying loss_param & co (which Caffe ignores for
  Python layers)                                        -> the settings move into param_str

It reads nets whose layers carry fields BVLC's caffe.proto lacks, and reads
every value as Caffe's own parser does (enums by number, octal and hex
integers, string escapes, lists); it keeps the file's bytes (CRLF, Latin-1
comments). It prints each change (layer: old -> new), names every layer type
this Caffe does not register, and writes nothing when something cannot be
translated (--keep-unknown keeps such layers). Given a solver, it migrates
the net file the solver names. Migrating a migrated net changes nothing.
docs/migrate.md lists every layer and parameter.

  caffe-losses migrate train_val.prototxt -o train_val_migrated.prototxt
  caffe-losses migrate hed_train_val.prototxt -o hed_migrated.prototxt --hed
  caffe-losses migrate face_train_test.prototxt -o face_migrated.prototxt \\
      --weights face_model.caffemodel --weights-out face_migrated.caffemodel

Exit status: 0 migrated (or nothing to change), 1 something cannot be
translated (nothing written), 2 a file could not be read or would be
overwritten.
"""

import os
import sys

from google.protobuf import text_format

from caffe_losses.losses import FAMILIES
from caffe_losses.nets import preflight, textproto
from caffe_losses.nets.migrate import MigrationError, inspect_weights, migrate_text
from caffe_losses.nets.netshapes import NetBuildError, build_shapes
from caffe_losses.nets.prototxt import parse_text
from caffe_losses.files.safety import OutputError, check_output, output_file
from caffe_losses.nets.textproto import decode, encode

# caffe (pycaffe) is imported inside the functions that use it: the CLI imports this
# module, and must run without pycaffe to say that it is missing (tests/test_layout.py).


def add_arguments(parser):
    parser.add_argument("net", help="the net prototxt to migrate (it is never modified); a solver "
                                     "prototxt: the net file it names")
    parser.add_argument("-o", "--output", required=True, help="where to write the migrated net")
    hed = " and ".join(sorted({rule.type for family in FAMILIES for rule in family.migrate if rule.hed}))
    parser.add_argument("--hed", action="store_true",
                        help=f"the net is HED's: its {hed or 'native loss'} layers are the fork's "
                             f"class-balanced loss (without --hed they are left alone)")
    parser.add_argument("--keep-unknown", action="store_true",
                        help="keep layers migrate does not translate: fork-only fields (e.g. "
                             "ROIPooling's roi_pooling_param) and layer types this Caffe lacks; the "
                             "net then needs that fork's Caffe")
    parser.add_argument("--weights", help="a .caffemodel trained with the original net: check that it "
                                          "loads into the migrated net, and say which blobs are copied")
    parser.add_argument("--weights-out", help="where to write the model when it has to change to fit "
                                              "the migrated net (needs --weights)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")


def _fail(message, status=2):
    print(f"caffe-losses migrate: {message}", file=sys.stderr)
    return status


def _same_file(a, b):
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _writable(path, inputs, force, what, option):
    """None when ``path`` may be written, else the reason."""
    for other in inputs:
        if other and (_same_file(path, other) or os.path.abspath(path) == os.path.abspath(other)):
            return f"refusing to write the {what} over an input ({path})"
    try:
        check_output(path, option=option)     # a folder, a file in the way, a read-only folder
    except OutputError as err:
        return str(err)
    if os.path.exists(path) and not force:
        return f"{path} exists (use --force to overwrite it)"
    return None


def _check_weights(path, result, net_param):
    """Checks that the model at ``path`` loads into the migrated net, as Caffe would copy it.

    Every stored blob's shape is compared with the migrated net's (built by
    Caffe in a child process); a file that is not a model (empty, a solver
    state, an H .binaryproto), another net's model, and a blob of another
    shape are refused.

    Returns:
      (lines, problems, new_model, unchecked): the report lines; what does
      not fit; the model to write (or None); why the layers that migrate left
      alone could not be compared (or None).  ``lines`` is None when the file
      is not a model at all (``problems`` is then its message).
    """
    option = "--weights"
    with open(path, "rb") as f:
        raw = f.read()
    h5 = path.endswith(".h5")
    try:     # a file that is no model at all (empty, a solver state, a single blob, garbage): first
        names = preflight.model_layer_names(path, option) if h5 else preflight.weights_layers(path, option)
    except preflight.PreflightError as err:
        return None, str(err), None, None
    try:
        shapes, unchecked = build_shapes(result.text, net_param), None
    except NetBuildError as err:
        shapes, unchecked = None, str(err)
    if h5:
        # Caffe's HDF5 weights: shapes per axis, no layer definitions to rewrite
        if shapes is None:
            return None, (f"{option} {path}: an HDF5 model, and the migrated net does not build here to "
                          f"compare its shapes ({unchecked})"), None, None
        try:
            preflight.check_weights(path, shapes, option=option, require_match=True)
        except preflight.PreflightError as err:
            return [], [str(err)], None, None
        return [f"layer '{n}': copied" for n in names if n in shapes], [], None, None
    try:
        lines, problems, new_model = inspect_weights(raw, net_param, result)
    except MigrationError as err:
        return None, f"{option} {path}: {err}", None, None
    if problems:
        return lines, problems, None, unchecked
    model = new_model
    if model is None:
        from caffe.proto import caffe_pb2
        model = caffe_pb2.NetParameter()
        model.ParseFromString(raw)
    layers = list(model.layer) or list(model.layers)
    if shapes is None:     # the names at least: a model none of whose layers is in the net
        net_names = {layer.name for layer in net_param.layer}
        if not any(len(layer.blobs) and layer.name in net_names for layer in layers):
            return lines, [f"{option} {path}: none of its layers with weights is a layer of the "
                           f"migrated net, so Caffe would copy nothing: another net's model?"], None, unchecked
        return lines, [], new_model, unchecked
    try:
        preflight.check_model(layers, shapes, path, option)
    except preflight.PreflightError as err:
        return lines, [str(err)], None, None
    return lines, [], new_model, None


def _not_a_file(path):
    """Why ``path`` is no file to read: missing, a folder, or a FIFO, device or socket (never opened)."""
    if not os.path.exists(path):
        return "not found"
    if os.path.isdir(path):
        return "is a folder, not a file"
    return "is not a regular file (a FIFO, a device or a socket)"


def _read(path):
    """The file's text, every byte kept (CRLF stays CRLF, a Latin-1 byte in a comment stays that byte)."""
    with open(path, "rb") as f:
        return decode(f.read())


def _solver_nets(text, path):
    """``(net files, inline nets)`` when ``text`` is a solver prototxt, else None.

    A solver is told from a net by its top-level fields (``base_lr``, ``net``,
    ...: SolverParameter's and not NetParameter's).  Net files are as the
    solver names them (Caffe reads them relative to the working directory).
    """
    from caffe.proto import caffe_pb2
    try:
        root = textproto.parse(text)
    except textproto.TextProtoError:
        return None
    names = {f.name for f in root.children}
    net_fields = set(caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name)
    solver_fields = set(caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name)
    if not names or names & net_fields - solver_fields or not names & solver_fields - net_fields:
        return None
    files = []
    for f in root.children:
        if f.name in ("net", "train_net", "test_net") and f.is_string and f.value not in files:
            files.append(f.value)
    inline = sorted({f.name for f in root.children if f.name in ("net_param", "train_net_param", "test_net_param")})
    return files, inline


def run(args):
    if args.weights_out and not args.weights:
        return _fail("--weights-out needs --weights (the model to carry over)")
    inputs = (args.net, args.weights)
    for path, what, option in ((args.output, "net", "-o"), (args.weights_out, "weights", "--weights-out")):
        reason = path and _writable(path, inputs, args.force, what, option)
        if reason:
            return _fail(reason)
    if args.weights_out and os.path.abspath(args.weights_out) == os.path.abspath(args.output):
        return _fail("-o and --weights-out name the same file")
    if not os.path.isfile(args.net):
        return _fail(f"net file {_not_a_file(args.net)}: {args.net}")
    if args.weights and not os.path.isfile(args.weights):
        return _fail(f"weights file {_not_a_file(args.weights)}: {args.weights}")
    text = _read(args.net)
    solver = _solver_nets(text, args.net)
    if solver is not None:
        nets, inline = solver
        if inline or len(nets) != 1:
            named = (", ".join(nets) + (" and " if nets and inline else "")) if nets else ""
            named += f"nets written inside it ({', '.join(inline)})" if inline else ""
            hint = ("; migrate each net file: " + "; ".join(
                        f"caffe-losses migrate {n} -o {os.path.splitext(n)[0]}_migrated.prototxt" for n in nets)
                    if nets else "; move the net into a file of its own and migrate that file")
            return _fail(f"{args.net} is a solver prototxt, not a net; it names {named or 'no net'}{hint}")
        print(f"{args.net} is a solver prototxt: migrating the net it names, {nets[0]} (then point "
              f"the solver's net at {args.output})")
        if not os.path.isfile(nets[0]):
            return _fail(f"net file {_not_a_file(nets[0])}: {nets[0]} (named by the solver {args.net}; Caffe reads "
                         f"it relative to the working directory)")
        for other in (args.output, args.weights_out):
            if other and (_same_file(other, nets[0]) or os.path.abspath(other) == os.path.abspath(nets[0])):
                return _fail(f"refusing to write over an input ({other})")
        args.net = nets[0]
        text = _read(args.net)
    try:
        result = migrate_text(text, hed=args.hed, keep_unknown=args.keep_unknown)
    except MigrationError as err:
        return _fail(f"{args.net}: {err}")
    for change in result.changes:
        print(change)
    for note in result.notes:
        print(f"note: {note}")
    if result.problems:
        for problem in result.problems:
            print(f"cannot translate: {problem}", file=sys.stderr)
        return _fail(f"{len(result.problems)} problem(s) in {args.net}; nothing written", 1)

    new_model = None
    if args.weights:
        from caffe.proto import caffe_pb2
        try:
            net_param = parse_text(result.text, caffe_pb2.NetParameter())
        except text_format.ParseError as err:     # --keep-unknown
            return _fail(f"--weights: the migrated net keeps fields BVLC Caffe lacks ({err}); "
                         f"check the model with that fork's Caffe")
        lines, problems, new_model, unchecked = _check_weights(args.weights, result, net_param)
        if lines is None:
            return _fail(problems, 2)
        if problems:
            for problem in problems:
                print(f"cannot load: {problem}", file=sys.stderr)
            return _fail(f"{args.weights} does not fit the migrated net; nothing written", 1)
        for line in lines:
            print(f"weights: {line}")

    try:
        with output_file(args.output, option="-o") as tmp, open(tmp, "wb") as f:
            f.write(encode(result.text))        # the input's bytes, line ends included
    except OSError as err:
        return _fail(err)
    if result.changes:
        print(f"wrote {args.output}: {len(result.changes)} change(s) in "
              f"{len({c.layer for c in result.changes})} layer(s); check it with: "
              f"caffe-losses check {args.output}")
    else:
        print(f"wrote {args.output}: nothing to migrate, the net is unchanged")
    if args.weights:
        if unchecked:
            print(f"weights: the blob shapes of {args.weights} were compared with the migrated layers "
                  f"only, not with the other layers: the migrated net does not build here ({unchecked})")
        if new_model is None:
            print(f"weights: {args.weights} loads into {args.output} as it is"
                  + (" (--weights-out not written: nothing to change)" if args.weights_out else ""))
        elif args.weights_out:
            try:
                with output_file(args.weights_out, option="--weights-out") as tmp, open(tmp, "wb") as f:
                    f.write(new_model.SerializeToString())
            except OSError as err:
                return _fail(err)
            print(f"wrote {args.weights_out}: the model of {args.weights} for {args.output}")
        else:
            print(f"weights: {args.weights} loads into {args.output}, but its stored copy of the "
                  f"migrated layers carries fields BVLC Caffe lacks; --weights-out NEW.caffemodel "
                  f"writes a clean copy")
    return 0
