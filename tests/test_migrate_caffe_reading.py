"""`migrate`, `check` (and train's pre-checks) read prototxt as Caffe's own parser reads it (issue 18, section 2).

Every net here is written as users write them.  Where BVLC Caffe can run
both the native net and its migration, both are built from the same file
text in this process and their losses and gradients compared; values that
Caffe's C++ parser gives a string are read back from the net Caffe built
(its layer names), never from a second reading of ours.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import caffe
from caffe_losses.nets import textproto
from caffe_losses.nets.lint import lint_file
from caffe_losses.nets.migrate import MigrationError, migrate_text
from caffe_losses.glue.params import parse_params
from caffe_losses.nets.prototxt import read_net_param

from test_migrate import SCORES, h_file, inputs, migrate

CLI = os.path.join(os.path.dirname(sys.executable), "caffe-losses")
RNG = np.random.RandomState(18)


def run_cli(*args, cwd):
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, GLOG_minloglevel="2"))


def build(path, phase=caffe.TRAIN):
    return caffe.Net(str(path), phase)


def forward_backward(path, feed, loss="loss", diff="scores"):
    n = build(path)
    for name, value in feed.items():
        n.blobs[name].data[...] = value
    n.forward()
    n.backward()
    return float(n.blobs[loss].data.flat[0]), n.blobs[diff].diff.copy()


def same_as_native(tmp_path, text, feed, **kwargs):
    """Migrates ``text``, builds both nets from their files and compares loss and gradient."""
    result = migrate(text, **kwargs)
    (tmp_path / "native.prototxt").write_bytes(textproto.encode(text))
    (tmp_path / "migrated.prototxt").write_bytes(textproto.encode(result.text))
    native = forward_backward(tmp_path / "native.prototxt", feed)
    ours = forward_backward(tmp_path / "migrated.prototxt", feed)
    assert ours[0] == pytest.approx(native[0], rel=1e-5)
    np.testing.assert_allclose(ours[1], native[1], rtol=1e-4, atol=1e-7)
    return result


def infogain_net(loss_fields, bottoms='bottom: "scores" bottom: "label"', tops='top: "loss"',
                 source='"H.binaryproto"', C=4, N=6):
    return inputs(False, raw=(N, C), label=(N,)) + SCORES + (
        f'layer {{ name: "loss" type: "InfogainLoss" {bottoms} {tops}\n'
        f'  infogain_loss_param {{ source: {source} }}\n  {loss_fields}\n}}\n')


def feed(C=4, N=6, labels=None):
    label = RNG.randint(0, C, N).astype(np.float32) if labels is None else np.asarray(labels, np.float32)
    return {"raw": (RNG.randn(N, C) * 2).astype(np.float32), "label": label}


# ---------------------------------------------------------------------------
# Enum values by number, octal and hex integers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("written, name", [("0", "FULL"), ("1", "VALID"), ("2", "BATCH_SIZE"), ("3", "NONE"),
                                           ("0x3", "NONE")])
def test_normalization_by_number_is_the_enum_caffe_reads(written, name, tmp_path, monkeypatch):
    # DIGITS writes loss_param { normalization: 0 }: Caffe reads FULL
    monkeypatch.chdir(tmp_path)
    h_file(4)
    text = infogain_net(f"loss_param {{ normalization: {written} ignore_label: 2 }}")
    result = same_as_native(tmp_path, text, feed(labels=[0, 1, 2, 3, 2, 1]))
    assert f"normalization: {name}" in result.text


def test_python_layer_with_normalization_by_number_leaves_the_check_migrate_loop(tmp_path, monkeypatch):
    # check sends a caffe_losses layer carrying loss_param to migrate; migrate must then take it
    monkeypatch.chdir(tmp_path)
    h_file(4)
    text = inputs(False, raw=(6, 4), label=(6,)) + SCORES + (
        'layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" top: "loss"\n'
        '  python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" '
        'param_str: "{source: H.binaryproto}" }\n'
        '  loss_param { normalization: 3 }\n  loss_weight: 1\n}\n')
    (tmp_path / "hand.prototxt").write_text(text)
    proc = run_cli("check", "hand.prototxt", cwd=tmp_path)
    assert proc.returncode == 1 and "run caffe-losses migrate" in proc.stdout
    proc = run_cli("migrate", "hand.prototxt", "-o", "fixed.prototxt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'param_str: "{source: H.binaryproto, normalization: NONE}"' in (tmp_path / "fixed.prototxt").read_text()
    proc = run_cli("check", "fixed.prototxt", cwd=tmp_path)
    assert proc.returncode == 0 and "0 error(s)" in proc.stdout, proc.stdout


@pytest.mark.parametrize("written", ["0377", "0xff", "0XFF", "255"])
def test_ignore_label_in_octal_or_hex_is_the_integer_caffe_reads(written, tmp_path, monkeypatch):
    # Caffe reads 0377 as 255 (octal); migrate once wrote 377
    monkeypatch.chdir(tmp_path)
    h_file(4)
    text = infogain_net(f"loss_param {{ ignore_label: {written} }}")
    labels = [0, 255, 1, 255, 3, 2]
    result = same_as_native(tmp_path, text, feed(labels=labels))
    assert "ignore_label: 255" in result.text


def test_values_caffe_refuses_are_refused_with_what_caffe_says():
    base = ('layer { name: "loss" type: "InfogainLoss" bottom: "s" bottom: "l" top: "loss" '
            'infogain_loss_param { source: "H.binaryproto" } loss_param { %s } }\n')
    for field, said in [("normalization: 7", "7 is not a value of NormalizationMode (its values: FULL = 0"),
                        ("normalization: full", "full is not a value of NormalizationMode"),
                        ("ignore_label: 08", "expected an integer, got 08"),
                        ("ignore_label: 2147483648", "integer out of range (2147483648)"),
                        ("ignore_label: 1.5", "expected an integer, got 1.5")]:
        result = migrate_text(base % field)
        assert len(result.problems) == 1 and said in result.problems[0], (field, result.problems)
        assert "Caffe refuses the net too" in result.problems[0]


def test_float_fields_read_as_caffe_reads_them():
    sigma = 'layer { name: "l" type: "SmoothL1Loss" bottom: "a" bottom: "b" top: "l" smooth_l1_loss_param { sigma: %s } }\n'
    assert 'param_str: "{sigma: 3}"' in migrate(sigma % "3").text
    assert 'param_str: "{sigma: 0.5}"' in migrate(sigma % ".5f").text
    assert 'param_str: "{sigma: 2.0}"' in migrate(sigma % "2.0").text
    refused = migrate_text(sigma % "010")      # octal is for integers: Caffe refuses it here
    assert refused.problems and "expected a decimal number, got 010" in refused.problems[0]


# ---------------------------------------------------------------------------
# Strings: every escape protobuf's text format takes, as Caffe reads it
# ---------------------------------------------------------------------------

ESCAPES = [r"H\303\251", r"H\xc3\xa9", r"H\u00e9", r"H\U000000e9", "H\u00e9",
           r"a\n\t\"\'\\\a\b\f\r\v\?z", r"\101\x42\1033", r"\x4142", r"\U0001F600", "one' 'two"]


@pytest.mark.parametrize("literal", ESCAPES)
def test_string_escapes_read_as_caffe_reads_them(literal, tmp_path):
    # the layer's name is the oracle: Caffe's C++ parser read it, pycaffe gives it back
    quote = "'" if "' '" in literal else '"'
    text = f'layer {{ name: {quote}{literal}{quote} type: "Input" top: "x" input_param {{ shape {{ dim: 1 }} }} }}\n'
    path = tmp_path / "names.prototxt"
    path.write_bytes(textproto.encode(text))
    caffe_reads = list(build(path)._layer_names)[0]
    ours = textproto.parse(text).all("layer")[0].get("name")
    assert ours == caffe_reads
    # and what migrate writes for it reads back as the same
    assert textproto.parse("n: " + textproto.quote(ours)).children[0].value == caffe_reads


@pytest.mark.parametrize("literal, said", [(r"a\q", r"invalid escape \q"), (r"a\x", "expected hex digits"),
                                           (r"a\u12", r"expected 4 hex digits for the escape \u"),
                                           (r"a\U00110000", r"expected 8 hex digits for the escape \U")])
def test_escapes_caffe_refuses_are_refused_in_one_line(literal, said, tmp_path):
    text = f'layer {{ name: "{literal}" type: "Input" top: "x" input_param {{ shape {{ dim: 1 }} }} }}\n'
    with pytest.raises(MigrationError, match="at line 1, column"):
        migrate_text(text)
    (tmp_path / "bad.prototxt").write_text(text)
    proc = run_cli("migrate", "bad.prototxt", "-o", "out.prototxt", cwd=tmp_path)
    assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.prototxt").exists()


@pytest.mark.parametrize("spelling", [r"H\303\251", r"H\xc3\xa9", r"H\u00e9", "H\u00e9"])
def test_escaped_h_file_name_is_the_file_caffe_opens(spelling, tmp_path, monkeypatch):
    # protobuf's own writer escapes non-ASCII as octal: the native layer opens Hé.binaryproto
    monkeypatch.chdir(tmp_path)
    h_file(4)
    os.rename("H.binaryproto", "H\u00e9.binaryproto")
    text = infogain_net("loss_param { normalization: NONE }", source=f'"{spelling}.binaryproto"')
    result = same_as_native(tmp_path, text, feed())
    assert 'param_str: "{source: H\u00e9.binaryproto, normalization: NONE}"' in result.text


def test_a_name_that_is_not_utf8_is_refused_not_mangled(tmp_path):
    text = ('layer { name: "loss" type: "InfogainLoss" bottom: "s" bottom: "l" top: "loss" '
            r'infogain_loss_param { source: "H\351.binaryproto" } }' "\n")
    result = migrate_text(text)
    assert result.problems and r'source "H\351.binaryproto" is not UTF-8 text' in result.problems[0]


# ---------------------------------------------------------------------------
# param_str read by the layers' own loader
# ---------------------------------------------------------------------------

def test_param_str_that_migrate_rewrites_keeps_the_values_the_layer_reads(tmp_path, monkeypatch):
    # {ignore_label: 0255} is 255 for the layer (YAML 1.2); a YAML 1.1 reading made it 173
    monkeypatch.chdir(tmp_path)
    h_file(4)
    hand = inputs(False, raw=(6, 4), label=(6,)) + SCORES + (
        'layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" top: "loss"\n'
        '  python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" '
        'param_str: "{source: H.binaryproto, ignore_label: 0255}" }\n'
        '  loss_param { normalization: NONE }\n  loss_weight: 1\n}\n')
    import caffe_losses
    cls = caffe_losses.SoftmaxWithInfogainLoss
    before = parse_params("SoftmaxWithInfogainLoss", cls.PARAMS, "{source: H.binaryproto, ignore_label: 0255}")
    assert before["ignore_label"] == 255
    result = migrate(hand)
    param_str = textproto.parse(result.text).all("layer")[-1].get("python_param").get("param_str")
    after = parse_params("SoftmaxWithInfogainLoss", cls.PARAMS, param_str)
    assert after["ignore_label"] == 255 and after["normalization"] == "NONE"
    # the same loss as the native layer with those settings
    native = infogain_net("loss_param { normalization: NONE ignore_label: 255 }")
    data = feed(labels=[0, 255, 1, 255, 3, 2])
    (tmp_path / "native.prototxt").write_text(native)
    (tmp_path / "migrated.prototxt").write_text(result.text)
    a = forward_backward(tmp_path / "native.prototxt", data)
    b = forward_backward(tmp_path / "migrated.prototxt", data)
    assert b[0] == pytest.approx(a[0], rel=1e-5)
    np.testing.assert_allclose(b[1], a[1], rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------
# Bytes kept: CRLF, Latin-1 comments, list syntax
# ---------------------------------------------------------------------------

def test_crlf_stays_crlf(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h_file(4)
    text = (inputs(False, raw=(6, 4), label=(6,)) + SCORES + (
        'layer {\n  name: "loss"\n  type: "InfogainLoss"\n  bottom: "scores"\n  bottom: "label"\n'
        '  top: "loss"\n  infogain_loss_param { source: "H.binaryproto" }\n'
        '  loss_param { normalization: NONE }  # set by hand\n}\n')).replace("\n", "\r\n")
    (tmp_path / "crlf.prototxt").write_bytes(text.encode())
    proc = run_cli("migrate", "crlf.prototxt", "-o", "out.prototxt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = (tmp_path / "out.prototxt").read_bytes()
    assert b"python_param" in out and out.count(b"\n") == out.count(b"\r\n") > text.count("\n")
    data = feed(labels=[0, 1, 2, 3, 0, 1])
    a = forward_backward(tmp_path / "crlf.prototxt", data)
    b = forward_backward(tmp_path / "out.prototxt", data)          # Caffe loads the CRLF output
    assert b[0] == pytest.approx(a[0], rel=1e-5)
    np.testing.assert_allclose(b[1], a[1], rtol=1e-4, atol=1e-7)
    # an unchanged net is written byte for byte
    (tmp_path / "plain.prototxt").write_bytes(inputs(False, x=(1, 2)).replace("\n", "\r\n").encode())
    proc = run_cli("migrate", "plain.prototxt", "-o", "same.prototxt", cwd=tmp_path)
    assert proc.returncode == 0 and "the net is unchanged" in proc.stdout
    assert (tmp_path / "same.prototxt").read_bytes() == (tmp_path / "plain.prototxt").read_bytes()


def test_latin1_comment_is_text_for_migrate_check_and_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h_file(4)
    text = textproto.encode(infogain_net("loss_param { normalization: NONE }")).replace(
        b'layer { name: "loss"', b'# perte pond\xe9r\xe9e (Latin-1)\nlayer { name: "loss"')
    (tmp_path / "latin1.prototxt").write_bytes(text)
    build(tmp_path / "latin1.prototxt")                         # Caffe loads it
    assert read_net_param("latin1.prototxt").layer[-1].type == "InfogainLoss"   # train's reader too
    proc = run_cli("check", "latin1.prototxt", cwd=tmp_path)
    assert proc.returncode == 0 and "binary" not in proc.stdout + proc.stderr, proc.stderr
    proc = run_cli("migrate", "latin1.prototxt", "-o", "out.prototxt", cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    out = (tmp_path / "out.prototxt").read_bytes()
    assert b"# perte pond\xe9r\xe9e (Latin-1)\n" in out and b"SoftmaxWithInfogainLoss" in out
    data = feed()
    a = forward_backward(tmp_path / "latin1.prototxt", data)
    b = forward_backward(tmp_path / "out.prototxt", data)
    assert b[0] == pytest.approx(a[0], rel=1e-5)


def test_list_syntax_is_the_repeated_fields(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h_file(4)
    text = infogain_net("loss_param { normalization: NONE }\n  loss_weight: [2, 0]",
                        bottoms='bottom: ["scores", "label"]', tops='top: ["loss", "prob"]')
    result = same_as_native(tmp_path, text, feed())
    assert 'bottom: ["scores", "label"] top: ["loss", "prob"]' in result.text
    assert "loss_weight: [2, 0]" in result.text
    # a Softmax written with a list before the native layer: the pre-1.0 pattern is seen through it
    pre10 = inputs(False, scores=(5, 3), label=(5,)) + (
        'layer { name: "prob" type: "Softmax" bottom: ["scores"] top: ["prob"] }\n'
        'layer { name: "loss" type: "InfogainLoss" bottom: ["prob", "label"] top: "loss" '
        'infogain_loss_param { source: "H.binaryproto" } }\n')
    assert 'layer: "InfogainLoss"' in migrate(pre10).text


# ---------------------------------------------------------------------------
# Deep nesting, fields given twice
# ---------------------------------------------------------------------------

def test_a_net_nested_400_deep_is_refused_in_one_line(tmp_path):
    deep = ('layer { name: "a" type: "Input" top: "x" input_param { shape { dim: 1 } }\n  '
            + "fork_param { " * 400 + "}" * 400 + "\n}\n")
    (tmp_path / "deep.prototxt").write_text(deep)
    for args in (["migrate", "deep.prototxt", "-o", "out.prototxt"], ["check", "deep.prototxt"]):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "messages nested more than 100 deep" in run_cli(
        "migrate", "deep.prototxt", "-o", "out.prototxt", cwd=tmp_path).stderr
    # Caffe refuses it too: its parser stops at the unknown field (protobuf's Python twin says the same)
    proc = run_cli("check", "deep.prototxt", cwd=tmp_path)
    assert 'has no field named "fork_param"' in proc.stderr


def test_a_block_given_twice_is_refused_as_caffe_refuses_it(tmp_path):
    text = inputs(False, scores=(2, 3), label=(2,)) + (
        'layer { name: "loss" type: "InfogainLoss" bottom: "scores" bottom: "label" top: "loss"\n'
        '  infogain_loss_param { source: "H.binaryproto" }\n'
        '  loss_param { ignore_label: 1 }\n  loss_param { normalization: NONE }\n}\n')
    result = migrate_text(text)
    assert result.problems == [
        "layer 'loss' (InfogainLoss): 'loss_param' is given twice; Caffe refuses the net (\"Non-repeated field "
        "\"loss_param\" is specified multiple times\"): keep one (merge the two)"]
    (tmp_path / "twice.prototxt").write_text(text)
    proc = run_cli("check", "twice.prototxt", cwd=tmp_path)
    assert proc.returncode == 2 and "should not have multiple \"loss_param\" fields" in proc.stderr
    # inside a fork's block, as the fork's caffe.proto declares it
    fork = ('layer { name: "l" type: "SmoothL1Loss" bottom: "a" bottom: "b" top: "l" '
            'smooth_l1_loss_param { sigma: 1 sigma: 3 } }\n')
    assert "'smooth_l1_loss_param.sigma' is given twice" in migrate_text(fork).problems[0]


# ---------------------------------------------------------------------------
# Layer types this Caffe does not register
# ---------------------------------------------------------------------------

FORK_LAYERS = {
    # R-FCN's position-sensitive pooling (FocalLoss, once here, has a migrate rule now:
    # tests/test_focal_migrate.py)
    "PSROIPooling": ('layer { name: "psroi" type: "PSROIPooling" bottom: "fc" bottom: "label" top: "psroi" '
                     'include { phase: TRAIN } }\n'),
    # HED's data layer
    "ImageLabelmapData": ('layer { name: "data" type: "ImageLabelmapData" top: "img" top: "lm" '
                          'include { phase: TRAIN } transform_param { mirror: false } '
                          'image_data_param { source: "train_pair.lst" batch_size: 1 } }\n'),
    # AM-Softmax's feature normalisation
    "Normalize": 'layer { name: "norm1" type: "Normalize" bottom: "fc" top: "norm1" }\n',
    # R-FCN's online hard example mining loss
    "SmoothL1LossOHEM": ('layer { name: "loss_bbox" type: "SmoothL1LossOHEM" bottom: "fc" bottom: "fc" '
                         'top: "loss_bbox" loss_weight: 1 }\n'),
}
HEAD = inputs(False, fc=(4, 3), label=(4,))


def test_every_layer_type_this_caffe_lacks_is_named_by_migrate_and_check(tmp_path):
    known = set(caffe.layer_type_list())
    assert not known & set(FORK_LAYERS)
    text = HEAD + "".join(FORK_LAYERS.values()) + (
        # a loss of ours without loss_weight: check must still find it
        'layer { name: "ours" type: "Python" bottom: "fc" bottom: "label" top: "ours" '
        'python_param { module: "caffe_losses" layer: "SoftmaxWithInfogainLoss" param_str: "{source: H.binaryproto}" } }\n')
    result = migrate_text(text)
    for kind in FORK_LAYERS:
        assert sum(f"type '{kind}' is not a layer type of this Caffe" in p for p in result.problems) == 1, kind
    kept = migrate_text(text, keep_unknown=True)
    assert not kept.problems and sum("kept (--keep-unknown)" in n for n in kept.notes) == 4
    (tmp_path / "forks.prototxt").write_text(text)
    proc = run_cli("migrate", "forks.prototxt", "-o", "out.prototxt", cwd=tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "out.prototxt").exists()
    for kind in FORK_LAYERS:
        assert f"type '{kind}' is not a layer type of this Caffe" in proc.stderr
    proc = run_cli("check", "forks.prototxt", cwd=tmp_path)
    assert proc.returncode == 1
    for kind, layer in FORK_LAYERS.items():
        name = textproto.parse(layer).all("layer")[0].get("name")
        assert f"[layer-type] layer '{name}': type '{kind}' is not a layer type of this Caffe" in proc.stdout
    assert "[python-loss-weight] layer 'ours'" in proc.stdout        # the rest is checked


def test_check_after_keep_unknown_names_the_kept_layers_and_checks_the_rest(tmp_path, monkeypatch):
    # a py-faster-rcnn head: ROIPooling (a fork's layer and field) kept, the loss migrated
    monkeypatch.chdir(tmp_path)
    text = inputs(False, conv5=(1, 4, 6, 6), rois=(2, 5), bbox_targets=(2, 8)) + (
        'layer { name: "roi_pool5" type: "ROIPooling" bottom: "conv5" bottom: "rois" top: "pool5"\n'
        '  roi_pooling_param { pooled_w: 2 pooled_h: 2 spatial_scale: 0.0625 } }\n'
        'layer { name: "bbox_pred" type: "InnerProduct" bottom: "pool5" top: "bbox_pred" '
        'inner_product_param { num_output: 8 } }\n'
        'layer { name: "loss_bbox" type: "SmoothL1Loss" bottom: "bbox_pred" bottom: "bbox_targets" '
        'top: "loss_bbox" loss_weight: 1 smooth_l1_loss_param { sigma: 0 } }\n')
    (tmp_path / "head.prototxt").write_text(text)
    proc = run_cli("migrate", "head.prototxt", "-o", "head_migrated.prototxt", "--keep-unknown", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("check", "head_migrated.prototxt", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "[fork-field] layer 'roi_pool5': 'roi_pooling_param' is not in BVLC Caffe's caffe.proto" in out
    assert "[layer-type] layer 'roi_pool5': type 'ROIPooling'" in out
    assert "caffe-losses migrate head_migrated" not in out     # not sent back to migrate
    # the migrated loss is checked: sigma 0 is refused by the layer's param_str rules
    assert "[param-str] layer 'loss_bbox': SmoothL1Loss: 'sigma' must be > 0" in out


# ---------------------------------------------------------------------------
# A solver given to migrate
# ---------------------------------------------------------------------------

def test_migrate_given_a_solver_migrates_its_net(tmp_path):
    (tmp_path / "train_val.prototxt").write_text(
        'layer { name: "l" type: "SmoothL1Loss" bottom: "a" bottom: "b" top: "l" smooth_l1_loss_param { sigma: 3 } }\n')
    (tmp_path / "solver.prototxt").write_text(
        'net: "train_val.prototxt"\ntest_iter: 10\ntest_interval: 100\nbase_lr: 0.01\nmomentum: 0.9\n'
        'weight_decay: 0.0005\nlr_policy: "step"\ngamma: 0.1\nstepsize: 1000\ndisplay: 20\nmax_iter: 5000\n'
        'snapshot: 1000\nsnapshot_prefix: "snap/x"\nsolver_mode: CPU\nrandom_seed: 1\naverage_loss: 20\n')
    proc = run_cli("migrate", "solver.prototxt", "-o", "train_val_migrated.prototxt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == ("solver.prototxt is a solver prototxt: migrating the net it names, "
                                           "train_val.prototxt (then point the solver's net at "
                                           "train_val_migrated.prototxt)")
    assert "base_lr" not in proc.stdout + proc.stderr
    assert 'layer: "SmoothL1Loss"' in (tmp_path / "train_val_migrated.prototxt").read_text()
    # two net files: say which to give
    (tmp_path / "test.prototxt").write_text('layer { name: "x" type: "Input" top: "x" }\n')
    (tmp_path / "two.prototxt").write_text('train_net: "train_val.prototxt"\ntest_net: "test.prototxt"\n'
                                           'test_iter: 1\ntest_interval: 10\nbase_lr: 0.1\n')
    proc = run_cli("migrate", "two.prototxt", "-o", "x.prototxt", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert ("two.prototxt is a solver prototxt, not a net; it names train_val.prototxt, test.prototxt; "
            "migrate each net file: caffe-losses migrate train_val.prototxt -o train_val_migrated.prototxt; "
            "caffe-losses migrate test.prototxt -o test_migrated.prototxt") in proc.stderr


# ---------------------------------------------------------------------------
# An in-place Softmax before the native InfogainLoss: the pre-1.0 pattern
# ---------------------------------------------------------------------------

def test_in_place_softmax_before_native_infogain_is_the_pre_1_0_pattern(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    H = h_file(3)
    in_place = inputs(scores=(5, 3), label=(5,)) + (
        'layer { name: "fc" type: "InnerProduct" bottom: "scores" top: "fc" '
        'inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }\n'
        'layer { name: "prob" type: "Softmax" bottom: "fc" top: "fc" }\n'
        'layer { name: "loss" type: "InfogainLoss" bottom: "fc" bottom: "label" top: "loss" '
        'infogain_loss_param { source: "H.binaryproto" } }\n')
    separate = in_place.replace('top: "fc" }\n', 'top: "p" }\n', 1).replace('bottom: "fc" bottom: "label"',
                                                                          'bottom: "p" bottom: "label"')
    results = [migrate(t) for t in (in_place, separate)]
    for r in results:
        assert 'layer: "InfogainLoss"' in r.text and "before 1.0" in r.notes[0]
    assert "remove the in-place Softmax layer 'prob'" in results[0].notes[0]
    caffe.set_random_seed(3)
    (tmp_path / "a.prototxt").write_text(results[0].text)
    (tmp_path / "b.prototxt").write_text(results[1].text)
    scores = RNG.randn(5, 3).astype(np.float32)
    label = RNG.randint(0, 3, 5).astype(np.float32)
    a, b = build(tmp_path / "a.prototxt"), build(tmp_path / "b.prototxt")
    b.params["fc"][0].data[...] = a.params["fc"][0].data
    b.params["fc"][1].data[...] = a.params["fc"][1].data
    losses = []
    for n in (a, b):
        n.blobs["scores"].data[...] = scores
        n.blobs["label"].data[...] = label
        n.forward()
        n.backward()
        losses.append((float(n.blobs["loss"].data.flat[0]), n.blobs["scores"].diff.copy()))
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-6)
    np.testing.assert_allclose(losses[0][1], losses[1][1], rtol=1e-5, atol=1e-8)
    # the classic form on the probabilities (ANCHORS: the pre-1.0 native layer)
    fc = np.dot(scores, a.params["fc"][0].data.T) + a.params["fc"][1].data
    prob = np.exp(fc - fc.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    classic = -(H[label.astype(int)] * np.log(np.maximum(prob, 1e-20))).sum() / len(label)
    assert losses[0][0] == pytest.approx(classic, rel=1e-5)
    # check: the native net applies softmax twice; the migrated one is clean (not "raw scores")
    (tmp_path / "native.prototxt").write_text(in_place)
    rules = [(f.severity, f.rule) for _, f in lint_file(str(tmp_path / "native.prototxt"))]
    assert ("error", "double-softmax") in rules
    assert not [f for _, f in lint_file(str(tmp_path / "a.prototxt")) if f.severity == "error"]


# ---------------------------------------------------------------------------
# check and train's reader: Python's protobuf, spelt as Caffe reads
# ---------------------------------------------------------------------------

def test_check_and_train_read_what_caffe_reads_where_pythons_parser_differs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # an enum in octal (Caffe: TEST), a sign apart from its number, an escape \? (Caffe: "?")
    text = ('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 0x3 } } }\n'
            'layer { name: "why\\?" type: "Power" bottom: "x" top: "y" power_param { shift: - 2 } '
            'include { phase: 01 } }\n')
    (tmp_path / "net.prototxt").write_text(text)
    param = read_net_param("net.prototxt")
    test_net, train_net = build(tmp_path / "net.prototxt", caffe.TEST), build(tmp_path / "net.prototxt")
    assert list(test_net._layer_names) == ["x", param.layer[1].name] and list(train_net._layer_names) == ["x"]
    assert param.layer[1].name == "why?" and param.layer[1].include[0].phase == caffe.TEST
    assert param.layer[1].power_param.shift == -2
    test_net.forward()
    assert np.all(test_net.blobs["y"].data == -2)          # Caffe read shift - 2 as -2 too
    assert run_cli("check", "net.prototxt", cwd=tmp_path).returncode == 0
    # an escape Caffe refuses is refused here too (Python's parser alone takes it)
    (tmp_path / "bad.prototxt").write_text(text.replace("why\\?", "why\\q"))
    proc = run_cli("check", "bad.prototxt", cwd=tmp_path)
    assert proc.returncode == 2 and r"invalid escape \q in a string" in proc.stderr
    with pytest.raises(ValueError, match=r"bad.prototxt: not a valid net prototxt \(invalid escape"):
        read_net_param("bad.prototxt")


def test_migrate_checks_its_output_as_caffe_reads_it():
    # layers migrate leaves alone, spelt as Caffe reads them (and protobuf's Python parser alone would not)
    text = ('layer { name: "p" type: "Power" bottom: "x" top: "y" power_param { shift: - 2 } '
            'include { phase: 01 } }\n'
            'layer { name: "l" type: "SmoothL1Loss" bottom: "y" bottom: "t" top: "l" loss_param { normalize: 0x1 } }\n')
    result = migrate(text)
    assert 'power_param { shift: - 2 } include { phase: 01 }' in result.text
    assert any("reads no loss_param" in n for n in result.notes)
