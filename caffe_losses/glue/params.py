"""Typed ``param_str`` parsing for Caffe Python layers.

A layer declares its settings as a tuple of :class:`Param`; :func:`parse_params`
reads the prototxt's ``param_str`` with :func:`load_yaml` (PyYAML's safe
loader, never ``eval``: JSON is valid YAML, so both ``{"sigma": 3}`` and
``sigma: 3`` work), rejects unknown keys with the list of valid ones, converts
and range-checks every value, and fills in defaults.  Every error is a
``ValueError`` (type errors are :class:`ParamTypeError`, both a ``TypeError``
and a ``ValueError``) whose message starts with the layer class and names the
key, e.g.::

    SmoothL1Loss: 'sigma' must be > 0. Received: sigma=0

The YAML rules (docs/DEVELOPING.md and the README say the same):

* scalars follow the YAML 1.2 core schema, which JSON also satisfies:
  ``true``/``false`` are the only booleans (``yes``, ``no``, ``on``, ``off``
  are strings, refused where a flag is expected), ``1e-20`` is a number,
  ``1:30`` is a string (YAML 1.1 read it as 90), ``017`` is 17 (not octal),
  ``0x1f`` and ``0o17`` are integers, ``2001-12-14`` is a string;
* a key given twice is an error (YAML would keep the last silently);
* anchors and aliases (``&a``, ``*a``) and explicit tags (``!!str``) are
  refused: an alias lets 300 bytes expand to billions of values;
* nesting is at most :data:`MAX_DEPTH` levels;
* numbers must fit float32, the type of Caffe's blobs: a value beyond
  3.4e38 would be ``inf`` there, and a non-zero value below 1.4e-45 would
  be 0;
* messages echo at most about 80 characters of what was received.

This module does not import caffe: tools and tests reuse it freely.
"""

import difflib
import math
import numbers
import re
import reprlib

import numpy as np
import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from caffe_losses.files.safety import FLOAT32_MAX, FLOAT32_OVERFLOW

__all__ = [
    "REQUIRED", "Param", "ParamTypeError", "parse_params", "describe_params", "load_yaml",
    "as_int", "as_float", "as_bool", "as_str", "as_float_list", "as_number_or_list",
    "NORMALIZATIONS", "as_name", "normalization_param", "ignore_label_param", "show",
    "fits_float32", "FLOAT32_MAX", "MAX_DEPTH",
]

# The nesting a param_str may have: our layers need 2 (``values: {start: 0}``).
MAX_DEPTH = 16
_FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)   # 1.4e-45
# Integers that float32 holds exactly (labels travel as float32 in Caffe).
FLOAT32_EXACT_INT = 2 ** 24


class ParamTypeError(TypeError, ValueError):
    """A ``param_str`` value of the wrong type.

    Both a ``TypeError`` (what it is) and a ``ValueError`` (what callers that
    report bad input catch), so that ``except ValueError`` sees every error
    that :func:`parse_params` raises.
    """


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()


class Param:
    """One ``param_str`` key: name, converter, default and allowed range.

    Args:
      name: the key as written in ``param_str`` (and as the core function's
        keyword argument).
      convert: a callable ``convert(value) -> value`` raising ``TypeError`` or
        ``ValueError`` with an "expected ..." message (see ``as_*`` below).
      default: the value when the key is absent; ``REQUIRED`` makes it
        mandatory.  ``None`` means "unset" and is not converted.
      choices: allowed values (after conversion), or None.
      low, high: inclusive bounds, or None.
      low_open, high_open: make the corresponding bound exclusive.
      aliases: other spellings accepted for this key (e.g. ``cls_weight``).
      doc: one line for error messages and docstrings.
      extra_check: optional ``check(converted value)`` raising ``ValueError``
        with a message that reads after the key name ("must be ..."), for
        limits the bounds cannot say (e.g. sigma's float32 range).
    """

    __slots__ = ("name", "convert", "default", "choices", "low", "high",
                 "low_open", "high_open", "aliases", "doc", "extra_check")

    def __init__(self, name, convert, default=REQUIRED, *, choices=None, low=None,
                 high=None, low_open=False, high_open=False, aliases=(), doc="",
                 extra_check=None):
        self.name = name
        self.convert = convert
        self.default = default
        self.choices = tuple(choices) if choices is not None else None
        self.low, self.high = low, high
        self.low_open, self.high_open = low_open, high_open
        self.aliases = tuple(aliases)
        self.doc = doc
        self.extra_check = extra_check

    def check(self, owner, value):
        """Converts and range-checks ``value``; returns the converted value."""
        shown = show(value)
        try:
            value = self.convert(value)
        except (TypeError, ValueError, OverflowError) as err:
            kind = ParamTypeError if isinstance(err, TypeError) else ValueError
            raise kind(f"{owner}: '{self.name}' {err}. Received: {self.name}={shown}") from None
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if not isinstance(item, numbers.Number) or isinstance(item, bool):
                continue
            if self.low is not None and (item < self.low or (self.low_open and item == self.low)):
                op = ">" if self.low_open else ">="
                raise ValueError(f"{owner}: '{self.name}' must be {op} {self.low}. "
                                 f"Received: {self.name}={shown}")
            if self.high is not None and (item > self.high or (self.high_open and item == self.high)):
                op = "<" if self.high_open else "<="
                raise ValueError(f"{owner}: '{self.name}' must be {op} {self.high}. "
                                 f"Received: {self.name}={shown}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{owner}: '{self.name}' must be one of "
                             f"{', '.join(map(str, self.choices))}. Received: {self.name}={shown}")
        if self.extra_check is not None:
            try:
                self.extra_check(value)
            except ValueError as err:
                raise ValueError(f"{owner}: '{self.name}' {err}. Received: {self.name}={shown}") from None
        return value

    def describe(self):
        default = "required" if self.default is REQUIRED else f"default {self.default!r}"
        return f"{self.name} ({default}){': ' + self.doc if self.doc else ''}"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 6, 8, 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def show(value, limit=80):
    """``repr(value)`` cut to about ``limit`` characters, in time bounded by ``limit``.

    Every message that echoes a received value uses it: ``repr`` of a huge
    structure (a YAML bomb, a long list) would itself take forever.
    """
    if isinstance(value, str) and len(value) > limit - 5:
        head = repr(value[:limit - 5])
        text = head[:-1] + "..." + head[-1]
    else:
        text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."



# ---------------------------------------------------------------------------
# Converters.  Each raises TypeError/ValueError with a message that reads
# after the key name: "'sigma' must be a number".
# ---------------------------------------------------------------------------

def as_int(value):
    if isinstance(value, bool):
        raise TypeError("must be an integer, not a boolean")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_12.fullmatch(value.strip()):   # a quoted "10"
        return _int_12(value.strip())
    raise TypeError("must be an integer")


def fits_float32(value):
    """Whether the real ``value`` keeps its meaning as a float32 (Caffe's blob type).

    False when it would become ``inf`` (beyond 3.4e38) or when a non-zero
    value would become 0 (below 1.4e-45 in magnitude).
    """
    magnitude = abs(value)
    return magnitude < FLOAT32_OVERFLOW and (magnitude == 0 or magnitude > _FLOAT32_TINY / 2)


def check_float32(value):
    """Raises ``ValueError`` ("must ...") when :func:`fits_float32` is False."""
    if abs(value) >= FLOAT32_OVERFLOW:
        raise ValueError(f"must fit float32, the type of Caffe's blobs: at most {FLOAT32_MAX:.7g} "
                         f"in magnitude ({value:g} would be inf)")
    if not fits_float32(value):
        raise ValueError(f"must fit float32, the type of Caffe's blobs: 0 or at least "
                         f"{_FLOAT32_TINY:.2g} in magnitude ({value:g} would be 0)")


def as_float(value):
    """A finite number that fits float32 (numbers quoted as strings are accepted)."""
    if isinstance(value, bool):
        raise TypeError("must be a number, not a boolean")
    if isinstance(value, str) and (_FLOAT_12.fullmatch(value.strip()) or _INT_12.fullmatch(value.strip())):
        value = _number_12(value.strip())
    elif not isinstance(value, numbers.Real):
        raise TypeError("must be a number")
    try:
        value = float(value)
    except OverflowError:       # an integer of 309 to 400 digits: beyond float64 itself
        raise ValueError(f"must fit float32, the type of Caffe's blobs: at most {FLOAT32_MAX:.7g} in "
                         f"magnitude (an integer of {len(str(abs(value)))} digits would be inf)") from None
    if not math.isfinite(value):
        raise ValueError("must be finite")
    check_float32(value)
    return value


def as_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, str) and value.strip().lower() in ("yes", "no", "on", "off", "y", "n"):
        raise TypeError(f"must be true or false ('{value.strip()}' is not a boolean in YAML 1.2 "
                        f"or JSON)")
    raise TypeError("must be true or false")


def as_str(value):
    if not isinstance(value, str) or not value:
        raise TypeError("must be a non-empty string")
    return value


def as_float_list(value):
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError("must be a non-empty list of numbers")
    try:
        return [as_float(v) for v in value]
    except (TypeError, ValueError) as err:
        raise type(err)(f"must be a list of finite numbers (an item {err})") from None


def as_number_or_list(value):
    if isinstance(value, (list, tuple)):
        return as_float_list(value)
    try:
        return as_float(value)
    except TypeError as err:
        raise TypeError(f"must be a number or a list of numbers ({err})") from None


# ---------------------------------------------------------------------------
# Caffe's LossParameter, shared by the loss layers.
# ---------------------------------------------------------------------------

NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")


def as_name(names):
    """A converter: one of the strings ``names``, in any case, returned as ``names`` spells it."""
    by_key = {name.lower(): name for name in names}

    def convert(value):
        if not isinstance(value, str) or value.strip().lower() not in by_key:
            raise ValueError("must be one of " + ", ".join(names))
        return by_key[value.strip().lower()]
    return convert


def normalization_param(default, modes=NORMALIZATIONS, doc=None):
    """``normalization``: Caffe's LossParameter.NormalizationMode by name, or a loss's own ``modes``."""
    return Param("normalization", as_name(modes), default, doc=doc or (
        "FULL (all positions), VALID (non-ignored positions), BATCH_SIZE (N) or NONE; "
        "the divisor is at least 1, as in Caffe"))


def ignore_label_param():
    """``ignore_label``: label value that contributes neither loss nor gradient.

    At most 2**24 in magnitude: labels reach the layer as float32, which holds
    larger integers only approximately.
    """
    return Param("ignore_label", as_int, None, low=-FLOAT32_EXACT_INT, high=FLOAT32_EXACT_INT,
                 doc="label value left out of loss and gradient")


# ---------------------------------------------------------------------------
# The YAML loader: YAML 1.2 core schema scalars, no aliases, no tags, no
# duplicate keys, bounded depth.
# ---------------------------------------------------------------------------

_INT_12 = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_12 = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


def _int_12(text):
    if len(text) > 400:     # beyond any float64; int() would refuse above 4300 digits
        return float("-inf") if text.startswith("-") else float("inf")
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _number_12(text):
    if _INT_12.fullmatch(text):
        return _int_12(text)
    special = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
    return special.get(text.lower()) or float(text)


class _Refused(yaml.MarkedYAMLError):
    """A construct that param_str does not allow (alias, anchor, tag, duplicate key, depth)."""


class _Loader(Reader, Scanner, Parser, Composer, SafeConstructor, BaseResolver):
    """PyYAML's safe loader with the YAML 1.2 core schema and param_str's limits."""

    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        BaseResolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(None, None, f"uses the alias *{event.anchor[:30]}: YAML anchors and "
                           f"aliases are not allowed in param_str", event.start_mark)
        if event.anchor is not None:
            raise _Refused(None, None, f"defines the anchor &{event.anchor[:30]}: YAML anchors "
                           f"and aliases are not allowed in param_str", event.start_mark)
        if event.tag is not None:
            tag = event.tag.replace("tag:yaml.org,2002:", "!!")[:40]
            raise _Refused(None, None, f"uses the tag {tag}: YAML tags are not "
                           f"allowed in param_str", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(None, None, f"is nested more than {MAX_DEPTH} levels deep",
                               event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        # BaseConstructor's loop, refusing a key given twice (YAML keeps the last).
        mapping = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in mapping
            except TypeError:
                raise ConstructorError(None, None, "has a key that is a list or a mapping",
                                       key_node.start_mark) from None
            if duplicate:
                raise _Refused(None, None, f"gives the key {show(key, 40)} twice",
                               key_node.start_mark)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node):
        return _int_12(self.construct_scalar(node))

    def construct_yaml_float(self, node):
        number = _number_12(self.construct_scalar(node))
        try:
            return float(number)
        except OverflowError:
            return math.copysign(math.inf, number)


for _tag, _pattern, _first in (
        ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
        ("int", _INT_12.pattern, "-+0123456789"),
        ("float", _FLOAT_12.pattern, "-+0123456789."),
        ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""])):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"),
                                  list(_first))
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


def load_yaml(text):
    """Reads ``param_str`` text: YAML 1.2 core schema, with the limits in the module doc.

    Raises:
      ``yaml.YAMLError`` (with a ``problem`` and a ``problem_mark``) on bad
      syntax or a refused construct.
    """
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# Keys that Caffe's forks (or old Caffe) spell differently from ours: an
# unknown key found here points to our name (when the layer has that key).
# The forks' spellings are the families' fork_keys, added by the registry
# (caffe_losses.losses), which every import of the package runs first.
FORK_KEYS = {
    "normalize": ("Caffe's old LossParameter", "normalization"),
}


# ---------------------------------------------------------------------------

def parse_params(owner, schema, param_str):
    """Parses ``param_str`` against ``schema``.

    Args:
      owner: the layer class name, the prefix of every error message.
      schema: a sequence of :class:`Param`.
      param_str: the text from ``python_param { param_str: ... }``; empty or
        absent means "all defaults".

    Returns:
      dict: one entry per schema key, converted, defaults filled in.

    Raises:
      ValueError/TypeError naming ``owner`` and the offending key.
    """
    text = param_str if param_str is not None else ""
    if not isinstance(text, str):
        raise ParamTypeError(f"{owner}: param_str must be a string. Received: {show(text)}")
    if text.strip():
        try:
            raw = load_yaml(text)
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            hint = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(err, "problem", None) or str(err)
            if isinstance(err, _Refused) or "key that is a list" in problem:
                raise ValueError(f"{owner}: param_str {problem}{hint}. Received: {show(text)}") from None
            raise ValueError(f"{owner}: param_str is not valid YAML/JSON{hint} "
                             f"({problem}). Received: {show(text)}") from None
    else:
        raw = None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamTypeError(f"{owner}: param_str must be a mapping such as "
                             f"\"{{key: value}}\" or '{{\"key\": value}}'. Received: {show(text)}")

    by_name = {}
    for p in schema:
        by_name[p.name] = p
        for alias in p.aliases:
            by_name[alias] = p
    valid = ", ".join(p.name for p in schema) or "(none)"
    values, seen_from = {}, {}
    for key, value in raw.items():
        if not isinstance(key, str) or key not in by_name:
            guess = difflib.get_close_matches(str(key)[:100], list(by_name), n=1)
            hint = f" Did you mean '{guess[0]}'?" if guess else ""
            whose, ours = FORK_KEYS.get(key, (None, None))
            if ours in by_name:
                hint = f" '{key}' is {whose} name: here it is '{ours}'."
            shown = f"'{key}'" if isinstance(key, str) and len(key) <= 40 else show(key, 40)
            raise ValueError(f"{owner}: unknown key {shown} in param_str.{hint} Valid keys: {valid}")
        p = by_name[key]
        if p.name in seen_from:
            raise ValueError(f"{owner}: '{p.name}' given twice in param_str "
                             f"(as '{seen_from[p.name]}' and '{key}')")
        seen_from[p.name] = key
        values[p.name] = None if (value is None and p.default is None) else p.check(owner, value)
    for p in schema:
        if p.name in values:
            continue
        if p.default is REQUIRED:
            raise ValueError(f"{owner}: param_str must set '{p.name}'"
                             f"{' (' + p.doc + ')' if p.doc else ''}. Valid keys: {valid}")
        values[p.name] = p.default
    return values


def describe_params(schema):
    """One line per key, for docstrings and ``--help`` texts."""
    return "\n".join("  " + p.describe() for p in schema)
