"""Typed ``param_str`` parsing for Caffe Python layers.

A layer declares its settings as a tuple of :class:`Param`; :func:`parse_params`
reads the prototxt's ``param_str`` with ``yaml.safe_load`` (never ``eval``:
JSON is valid YAML, so both ``{"sigma": 3}`` and ``sigma: 3`` work), rejects
unknown keys with the list of valid ones, converts and range-checks every
value, and fills in defaults.  Every error is a ``ValueError`` or ``TypeError``
whose message starts with the layer class and names the key, e.g.::

    SmoothL1Loss: 'sigma' must be > 0. Received: sigma=0

This module does not import caffe: tools and tests reuse it freely.
"""

import difflib
import math
import numbers

import yaml

__all__ = [
    "REQUIRED", "Param", "parse_params", "describe_params",
    "as_int", "as_float", "as_bool", "as_str", "as_float_list", "as_number_or_list",
    "NORMALIZATIONS", "normalization_param", "ignore_label_param",
]


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
    """

    __slots__ = ("name", "convert", "default", "choices", "low", "high",
                 "low_open", "high_open", "aliases", "doc")

    def __init__(self, name, convert, default=REQUIRED, *, choices=None, low=None,
                 high=None, low_open=False, high_open=False, aliases=(), doc=""):
        self.name = name
        self.convert = convert
        self.default = default
        self.choices = tuple(choices) if choices is not None else None
        self.low, self.high = low, high
        self.low_open, self.high_open = low_open, high_open
        self.aliases = tuple(aliases)
        self.doc = doc

    def check(self, owner, value):
        """Converts and range-checks ``value``; returns the converted value."""
        shown = _show(value)
        try:
            value = self.convert(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{owner}: '{self.name}' {err}. Received: {self.name}={shown}") from None
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
        return value

    def describe(self):
        default = "required" if self.default is REQUIRED else f"default {self.default!r}"
        return f"{self.name} ({default}){': ' + self.doc if self.doc else ''}"


def _show(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise TypeError("must be an integer")


def as_float(value):
    # PyYAML reads "1e-20" (no dot) as a string: accept numeric strings.
    if isinstance(value, bool):
        raise TypeError("must be a number, not a boolean")
    if isinstance(value, numbers.Real):
        value = float(value)
    elif isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise TypeError("must be a number") from None
    else:
        raise TypeError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be finite")
    return value


def as_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
        return value.strip().lower() in ("true", "yes", "on")
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
    except (TypeError, ValueError) as err:
        raise type(err)(f"must be a number or a list of numbers ({err})") from None


# ---------------------------------------------------------------------------
# Caffe's LossParameter, shared by the loss layers.
# ---------------------------------------------------------------------------

NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")


def _as_normalization(value):
    if not isinstance(value, str) or value.strip().upper() not in NORMALIZATIONS:
        raise ValueError("must be one of " + ", ".join(NORMALIZATIONS))
    return value.strip().upper()


def normalization_param(default):
    """``normalization``: Caffe's LossParameter.NormalizationMode, by name."""
    return Param("normalization", _as_normalization, default, doc=(
        "FULL (all positions), VALID (non-ignored positions), BATCH_SIZE (N) or NONE; "
        "the divisor is at least 1, as in Caffe"))


def ignore_label_param():
    """``ignore_label``: label value that contributes neither loss nor gradient."""
    return Param("ignore_label", as_int, None, doc="label value left out of loss and gradient")


# Keys that Caffe's forks (or old Caffe) spell differently from ours: an
# unknown key found here points to our name (when the layer has that key).
FORK_KEYS = {
    "num_output": ("caffe-face's", "num_classes"),
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
        raise TypeError(f"{owner}: param_str must be a string. Received: {_show(text)}")
    if text.strip():
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            hint = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            raise ValueError(f"{owner}: param_str is not valid YAML/JSON{hint} "
                             f"({getattr(err, 'problem', None) or err}). Received: {_show(text)}") from None
    else:
        raw = None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise TypeError(f"{owner}: param_str must be a mapping such as "
                        f"\"{{key: value}}\" or '{{\"key\": value}}'. Received: {_show(text)}")

    by_name = {}
    for p in schema:
        by_name[p.name] = p
        for alias in p.aliases:
            by_name[alias] = p
    valid = ", ".join(p.name for p in schema) or "(none)"
    values, seen_from = {}, {}
    for key, value in raw.items():
        if not isinstance(key, str) or key not in by_name:
            guess = difflib.get_close_matches(str(key), list(by_name), n=1)
            hint = f" Did you mean '{guess[0]}'?" if guess else ""
            whose, ours = FORK_KEYS.get(key, (None, None))
            if ours in by_name:
                hint = f" '{key}' is {whose} name: here it is '{ours}'."
            raise ValueError(f"{owner}: unknown key '{key}' in param_str.{hint} Valid keys: {valid}")
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
