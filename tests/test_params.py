"""param_str parsing: safe YAML/JSON, typed schema, loud errors."""

import pytest

from caffe_losses.params import (Param, as_bool, as_float, as_float_list, as_int,
                                 as_number_or_list, ignore_label_param,
                                 normalization_param, parse_params)

SCHEMA = (
    Param("sigma", as_float, 1.0, low=0, low_open=True, doc="transition point"),
    Param("num_classes", as_int, 10, low=1),
    Param("pos_weight", as_number_or_list, 1.0, low=0, aliases=("cls_weight",)),
    Param("softmax", as_bool, True),
    Param("mode", str, "direct", choices=("direct", "solver")),
    normalization_param("VALID"),
    ignore_label_param(),
)


def parse(text):
    return parse_params("MyLoss", SCHEMA, text)


def test_defaults_for_empty_param_str():
    for text in (None, "", "  ", "{}"):
        assert parse(text) == {"sigma": 1.0, "num_classes": 10, "pos_weight": 1.0, "softmax": True,
                               "mode": "direct", "normalization": "VALID", "ignore_label": None}


def test_yaml_and_json_both_parse():
    a = parse("{sigma: 3, normalization: batch_size, ignore_label: 255}")
    b = parse('{"sigma": 3, "normalization": "BATCH_SIZE", "ignore_label": 255}')
    assert a == b
    assert a["sigma"] == 3.0 and a["normalization"] == "BATCH_SIZE" and a["ignore_label"] == 255


def test_exponent_without_dot_is_a_number():
    # PyYAML reads 1e-20 as a string; the schema converts it.
    assert parse("sigma: 1e-20")["sigma"] == 1e-20


def test_alias_and_lists():
    assert parse('{"cls_weight": 100}')["pos_weight"] == 100.0
    assert parse("pos_weight: [1, 2.5]")["pos_weight"] == [1.0, 2.5]
    with pytest.raises(ValueError, match="'pos_weight' given twice"):
        parse("{pos_weight: 1, cls_weight: 2}")


def test_never_evaluates_code():
    with pytest.raises((TypeError, ValueError)) as err:
        parse("__import__('os').system('echo pwned')")
    assert "MyLoss" in str(err.value)
    with pytest.raises(ValueError):
        parse("!!python/object/apply:os.system ['echo pwned']")


@pytest.mark.parametrize("text, pattern", [
    ("{sigam: 2}", r"MyLoss: unknown key 'sigam' in param_str\. Did you mean 'sigma'\? Valid keys: sigma, "),
    ("{sigma: 0}", r"MyLoss: 'sigma' must be > 0\. Received: sigma=0"),
    ("{sigma: -1}", r"'sigma' must be > 0"),
    ("{sigma: abc}", r"MyLoss: 'sigma' must be a number\. Received: sigma='abc'"),
    ("{sigma: true}", r"'sigma' must be a number, not a boolean"),
    ("{sigma: .inf}", r"'sigma' must be finite"),
    ("{num_classes: 2.5}", r"'num_classes' must be an integer"),
    ("{num_classes: 0}", r"'num_classes' must be >= 1"),
    ("{pos_weight: [1, -2]}", r"'pos_weight' must be >= 0"),
    ("{pos_weight: [1, x]}", r"'pos_weight' must be a list of finite numbers"),
    ("{softmax: maybe}", r"'softmax' must be true or false"),
    ("{mode: other}", r"'mode' must be one of direct, solver\. Received: mode='other'"),
    ("{normalization: MEAN}", r"'normalization' must be one of FULL, VALID, BATCH_SIZE, NONE"),
    ("{sigma: 2", r"MyLoss: param_str is not valid YAML/JSON"),
    ("[1, 2]", r"MyLoss: param_str must be a mapping"),
    ("just text", r"MyLoss: param_str must be a mapping"),
])
def test_bad_param_str_names_layer_and_key(text, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        parse(text)


def test_required_key():
    schema = (Param("num_classes", as_int, doc="number of classes"),)
    with pytest.raises(ValueError, match=r"C: param_str must set 'num_classes' \(number of classes\)"):
        parse_params("C", schema, "")
    assert parse_params("C", schema, "num_classes: 3") == {"num_classes": 3}


def test_float_list_rejects_empty():
    with pytest.raises(TypeError):
        as_float_list([])
