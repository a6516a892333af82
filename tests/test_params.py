"""param_str parsing: safe YAML/JSON, typed schema, loud errors."""

import pytest

from caffe_losses.glue.params import MAX_DEPTH, Param, ParamTypeError, as_bool, as_float, as_float_list, as_int, as_number_or_list, ignore_label_param, normalization_param, parse_params, show

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


# --- the YAML rules: YAML 1.2 / JSON scalars, no aliases, no duplicates -----

@pytest.mark.parametrize("text, pattern", [
    ("{sigma: 2, sigma: 0.5}", r"MyLoss: param_str gives the key 'sigma' twice at line 1, column 12"),
    ("sigma: 2\nsigma: 3", r"gives the key 'sigma' twice at line 2"),
    ("{pos_weight: 1, mode: {a: 1, a: 2}}", r"gives the key 'a' twice"),
    ("{sigma: &s 2, num_classes: *s}", r"defines the anchor &s: YAML anchors and aliases are not allowed"),
    ("{sigma: !!float 2}", r"uses the tag !!float: YAML tags are not allowed"),
    ("{sigma: 1:30}", r"'sigma' must be a number\. Received: sigma='1:30'"),
    ("{num_classes: 1:30}", r"'num_classes' must be an integer\. Received: num_classes='1:30'"),
    ("{softmax: yes}", r"'softmax' must be true or false \('yes' is not a boolean in YAML 1\.2 or JSON\)"),
    ("{softmax: on}", r"'softmax' must be true or false \('on' is not a boolean"),
    ("{sigma: 1_000}", r"'sigma' must be a number"),
    ("{sigma: 1e39}", r"'sigma' must fit float32, the type of Caffe's blobs: at most 3\.402823e\+38"),
    ("{sigma: 1e-50}", r"'sigma' must fit float32.*1e-50 would be 0"),
    ("{pos_weight: [1, 1e39]}", r"'pos_weight' must be a list of finite numbers \(an item must fit float32"),
    ("{ignore_label: 16777217}", r"'ignore_label' must be <= 16777216"),
    ("{<<: {sigma: 2}}", r"unknown key '<<'"),
])
def test_yaml_rules(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse(text)


@pytest.mark.parametrize("text, key, value", [
    ("{num_classes: 017}", "num_classes", 17),      # YAML 1.1 read octal 15
    ("{num_classes: 0x1f}", "num_classes", 31),
    ("{num_classes: 0o17}", "num_classes", 15),
    ("{sigma: 1e-20}", "sigma", 1e-20),               # YAML 1.1 read a string
    ("{sigma: '2.5'}", "sigma", 2.5),                 # a quoted number is still a number
    ('{"softmax": false}', "softmax", False),
    ("{softmax: True}", "softmax", True),
    ("{sigma: 3.4e38}", "sigma", 3.4e38),
    ("{sigma: 1e-44}", "sigma", 1e-44),               # a float32 subnormal: non-zero
    ("{ignore_label: -1}", "ignore_label", -1),
])
def test_yaml_12_numbers_and_flags(text, key, value):
    assert parse(text)[key] == value


def test_every_parse_error_is_a_value_error():
    # Type errors are ParamTypeError: a TypeError and a ValueError, so a caller
    # that reports bad input with `except ValueError` (caffe-losses train) sees them.
    for text in ("[1, 2]", "{sigma: abc}", "{num_classes: 2.5}", "{softmax: maybe}"):
        with pytest.raises(ValueError) as err:
            parse(text)
        assert isinstance(err.value, TypeError) and isinstance(err.value, ParamTypeError)


def test_alias_bomb_is_refused_before_it_expands():
    # the "billion laughs": nine levels of nine aliases, 300 bytes
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(ValueError, match=r"anchor &a: YAML anchors and aliases are not allowed") as err:
        parse("\n".join(lines))
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_a_clear_error(depth):
    text = "{sigma: " + "[" * depth + "]" * depth + "}"
    with pytest.raises(ValueError, match=rf"MyLoss: param_str is nested more than {MAX_DEPTH} levels deep"):
        parse(text)


def test_messages_echo_a_bounded_part_of_what_was_received():
    huge = "{pos_weight: [" + ", ".join(["1"] * 100_000) + ", x]}"
    with pytest.raises(ValueError) as err:
        parse(huge)
    assert "'pos_weight' must be a list of finite numbers" in str(err.value)
    assert len(str(err.value)) < 300
    with pytest.raises(ValueError) as err:
        parse("{" + "k" * 10_000 + ": 1}")
    assert len(str(err.value)) < 300
    assert len(show(list(range(10 ** 6)))) <= 80 and len(show("x" * 10 ** 6)) <= 80


def test_huge_integers_do_not_escape_as_bare_errors():
    with pytest.raises(ValueError, match=r"'num_classes' must be an integer"):
        parse("{num_classes: " + "9" * 5000 + "}")
    with pytest.raises(ValueError, match=r"'sigma' must be finite"):
        parse("{sigma: " + "9" * 5000 + "}")
