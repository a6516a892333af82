"""A tolerant reader of protobuf text format (prototxt), with source positions.

Caffe's forks add fields that BVLC's ``caffe.proto`` lacks (py-faster-rcnn's
``roi_pooling_param``, the loss families' ``fork_blocks``, ...), and
protobuf's own parser refuses a whole net over one of them.  This module
reads any syntactically valid prototxt into a plain tree, whatever its
fields, and remembers where each field sits in the text, so that
``caffe-losses migrate`` can rewrite a few layers and leave every other byte
of the file as it was, and ``caffe-losses check`` can name the fields that
BVLC Caffe would refuse.

The grammar is protobuf's text format::

    message := field*
    field   := name ':' scalar | name ':'? ('{' message '}' | '<' message '>')
             | name ':' '[' (scalar | '{' message '}') (',' ...)* ']'
    scalar  := number | identifier | string+       (adjacent strings join)

with ``#`` comments and optional ``,`` / ``;`` after a field.  It reads
the text as Caffe's C++ parser (protobuf's ``TextFormat``) does:

* a list ``name: [a, b]`` is the fields ``name: a name: b`` (one
  :class:`Field` per element, ``outer_start``/``outer_end`` spanning the list);
* strings take every escape protobuf's tokenizer takes (``\\n \\t \\" \\'
  \\\\ \\a \\b \\f \\r \\v \\?``, octal ``\\303``, hex ``\\xc3``, ``\\u00e9``,
  ``\\U0001f600``) and refuse any other; the value is the bytes Caffe reads,
  decoded as UTF-8 (a byte that is not UTF-8 is kept as a surrogate escape,
  ``errors="surrogateescape"``);
* :func:`scalar` converts a value as the field's type says: ``0377`` is
  255 and ``0x1f`` 31 for an integer field (and refused for a float field,
  as Caffe refuses them), an enum field takes a name or a number;
* :func:`repeated_twice` finds the non-repeated fields given twice, which
  Caffe refuses ("Non-repeated field ... is specified multiple times");
* messages nest at most :data:`MAX_DEPTH` deep (no net of Caffe's
  ``caffe.proto`` nests beyond 10; deeper text is refused in one line, not
  with a ``RecursionError``).

This module does not import caffe or protobuf.
"""

import re

__all__ = ["TextProtoError", "Field", "parse", "unknown_fields", "repeated_twice", "scalar",
           "quote", "describe", "MAX_DEPTH", "decode", "encode", "for_protobuf", "caffe_spelling"]

# messages nested deeper than this are refused (protobuf's own default recursion limit)
MAX_DEPTH = 100


class TextProtoError(ValueError):
    """The text is not protobuf text format (at ``line``, ``column``)."""

    def __init__(self, message, text, pos):
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        super().__init__(f"{message} at line {line}, column {column}")
        self.line, self.column = line, column


_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>(?:-[ \t]*)?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fF]?)(?![A-Za-z_0-9.]))
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[{}<>:\[\],;/])
""", re.VERBOSE)

_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v",
            "\\": b"\\", "'": b"'", '"': b'"', "?": b"?"}
_UNICODE = {"u": re.compile(r"[0-9a-fA-F]{4}"), "U": re.compile(r"00(?:0[0-9a-fA-F]|10)[0-9a-fA-F]{4}")}


def decode(data):
    """Text of a prototxt file's bytes: UTF-8, any other byte kept as a surrogate escape.

    ``encode(decode(data)) == data`` for any bytes, so a file read this way
    is written back byte for byte (a Latin-1 comment included).
    """
    return data.decode("utf-8", "surrogateescape")


def encode(text):
    """The bytes of text from :func:`decode` (or any str)."""
    return text.encode("utf-8", "surrogateescape")


def for_protobuf(text):
    """``text`` for Python's protobuf parser, which takes only valid UTF-8: each byte that is
    not (a surrogate escape, see :func:`decode`) becomes an octal escape, the same byte in a
    string literal as Caffe reads it, and nothing in a comment."""
    return re.sub("[\udc80-\udcff]", lambda m: f"\\{ord(m.group()) - 0xDC00:03o}", text)


def _unescape(body, text, pos):
    """The bytes Caffe reads for a string literal's ``body`` (between the quotes) at ``pos``."""
    out, i = bytearray(), 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            j = body.find("\\", i)
            j = len(body) if j < 0 else j
            out += encode(body[i:j])
            i = j
            continue
        n = body[i + 1]
        if n in _ESCAPES:
            out += _ESCAPES[n]
            i += 2
        elif n in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(int(m.group(), 8) & 0xFF)
            i += 1 + len(m.group())
        elif n in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if m is None:
                raise TextProtoError("expected hex digits for the escape \\x in a string", text, pos + i)
            out.append(int(m.group(), 16))
            i += 2 + len(m.group())
        elif n in _UNICODE:
            m = _UNICODE[n].match(body, i + 2)
            if m is None:
                raise TextProtoError(f"expected {4 if n == 'u' else 8} hex digits for the escape "
                                     f"\\{n} in a string", text, pos + i)
            out += chr(int(m.group(), 16)).encode("utf-8", "surrogatepass")
            i = m.end()
        else:
            raise TextProtoError(f"invalid escape \\{n} in a string (Caffe refuses it)", text, pos + i)
    return bytes(out)


def _tokens(text):
    pos, out = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TextProtoError(f"unexpected character {text[pos]!r}", text, pos)
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


class Field:
    """One field of a parsed prototxt.

    Attributes:
      name: the field name as written.
      start, end: its span in the text, from the name to the closing token
        (or the last string of the value), separators excluded.
      value: for a scalar field, the value as written (a string's decoded
        text for strings, else the token: ``3``, ``-1e-3``, ``VALID``, ``true``);
        None for a message.
      is_string: whether the scalar was a quoted string.
      value_start, value_end: the span of the scalar value (all of a
        concatenation), or of a message's braces.
      children: the fields of a message value (a list); None for a scalar.
      outer_start, outer_end: the span of the whole ``name: value`` text;
        for an element of a list ``name: [a, b]``, the whole list (then
        ``start``/``end`` are the element's).
    """

    __slots__ = ("name", "start", "end", "value", "is_string", "value_start", "value_end", "children",
                 "in_list", "list_end")

    def __init__(self, name, start):
        self.name, self.start = name, start
        self.end = self.value_start = self.value_end = None
        self.value, self.is_string, self.children = None, False, None
        self.in_list, self.list_end = None, None

    @property
    def outer_start(self):
        return self.start if self.in_list is None else self.in_list

    @property
    def outer_end(self):
        return self.end if self.list_end is None else self.list_end

    @property
    def is_message(self):
        return self.children is not None

    def all(self, name):
        """The child fields called ``name``, in order."""
        return [f for f in (self.children or ()) if f.name == name]

    def get(self, name, default=None):
        """The value of the last child ``name`` (protobuf keeps the last of a
        repeated singular field), the child itself if it is a message, or ``default``."""
        found = self.all(name)
        if not found:
            return default
        f = found[-1]
        return f if f.is_message else f.value

    def __repr__(self):
        inner = f"{len(self.children)} fields" if self.is_message else repr(self.value)
        return f"Field({self.name!r}, {inner})"


class _Parser:
    def __init__(self, text):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "", len(self.text), len(self.text))

    def take(self, kind=None, value=None, what=None):
        tok = self.peek()
        if (kind and tok[0] != kind) or (value and tok[1] != value):
            got = "end of file" if tok[0] == "eof" else repr(tok[1])
            raise TextProtoError(f"expected {what or value or kind}, got {got}", self.text, tok[2])
        self.i += 1
        return tok

    def message(self, close):
        fields = []
        while True:
            tok = self.peek()
            if tok[0] == "eof":
                if close is None:
                    return fields, tok[2]
                raise TextProtoError(f"missing '{close}'", self.text, tok[2])
            if close is not None and tok[1] == close and tok[0] == "punct":
                self.i += 1
                return fields, tok[3]
            self.field(fields)

    def field(self, out):
        """Reads one field into the list ``out`` (a list ``name: [...]`` adds one per element)."""
        tok = self.peek()
        if tok[0] == "punct" and tok[1] == "[":      # [extension.name] or [type.url/Any]
            start = tok[2]
            self.i += 1
            parts = []
            while self.peek()[1] != "]":
                if self.peek()[0] == "eof":
                    raise TextProtoError("missing ']'", self.text, start)
                parts.append(self.take()[1])
            self.take("punct", "]")
            f = Field("[" + "".join(parts) + "]", start)
        else:
            name = self.take("ident", what="a field name")
            if name[1].startswith("-"):
                raise TextProtoError(f"expected a field name, got {name[1]!r}", self.text, name[2])
            f = Field(name[1], name[2])
        colon = self.peek()[1] == ":" and self.peek()[0] == "punct"
        if colon:
            self.i += 1
        tok = self.peek()
        if tok[0] == "punct" and tok[1] in "{<":
            self._message_value(f)
            out.append(f)
        elif colon and tok[0] == "punct" and tok[1] == "[":
            self._list_value(f, out)
        elif colon:
            self._scalar(f)
            out.append(f)
        else:
            got = "end of file" if tok[0] == "eof" else repr(tok[1])
            raise TextProtoError(f"expected ':' or '{{' after field '{f.name}', got {got}",
                                 self.text, tok[2])
        if self.peek()[0] == "punct" and self.peek()[1] in ",;":
            self.i += 1

    def _message_value(self, f):
        open_tok = self.take()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TextProtoError(f"messages nested more than {MAX_DEPTH} deep (no Caffe net nests "
                                 f"that deep; protobuf's recursion limit is {MAX_DEPTH})", self.text, open_tok[2])
        f.value_start = open_tok[2]
        f.children, f.end = self.message("}" if open_tok[1] == "{" else ">")
        f.value_end = f.end
        self.depth -= 1

    def _scalar(self, f):
        tok = self.peek()
        if tok[0] == "string":
            parts = []
            f.value_start = tok[2]
            while self.peek()[0] == "string":
                t = self.take()
                parts.append(_unescape(t[1][1:-1], self.text, t[2] + 1))
                f.end = t[3]
            f.value, f.is_string = decode(b"".join(parts)), True
        elif tok[0] in ("number", "ident"):
            self.i += 1
            f.value, f.value_start, f.end = tok[1], tok[2], tok[3]
        else:
            got = "end of file" if tok[0] == "eof" else repr(tok[1])
            raise TextProtoError(f"expected a value for field '{f.name}', got {got}", self.text, tok[2])
        f.value_end = f.end

    def _list_value(self, f, out):
        # name: [a, b] is name: a name: b (Caffe's parser reads it so): one
        # Field per element, each knowing the span of the whole list
        open_tok = self.take("punct", "[")
        elements = []
        if not (self.peek()[0] == "punct" and self.peek()[1] == "]"):
            while True:
                tok = self.peek()
                if tok[0] == "eof":
                    raise TextProtoError("missing ']'", self.text, open_tok[2])
                e = Field(f.name, tok[2])
                if tok[0] == "punct" and tok[1] in "{<":
                    self._message_value(e)
                else:
                    self._scalar(e)
                elements.append(e)
                if self.peek()[0] == "punct" and self.peek()[1] == ",":
                    self.i += 1
                    continue
                break
        close = self.take("punct", "]", what="',' or ']' in the list of field '" + f.name + "'")
        for e in elements:
            e.in_list, e.list_end = f.start, close[3]
        out.extend(elements)


def parse(text):
    """Parses prototxt ``text`` into a top-level :class:`Field` named ``""``.

    Raises:
      TextProtoError (a ValueError) with the line and column of a syntax error.
    """
    p = _Parser(text)
    root = Field("", 0)
    root.children, root.end = p.message(None)
    root.value_start, root.value_end = 0, len(text)
    return root


def unknown_fields(node, descriptor, path=()):
    """Fields of ``node`` that the protobuf message ``descriptor`` lacks.

    Walks the tree against the descriptor (e.g. ``caffe_pb2.NetParameter.DESCRIPTOR``).

    Returns:
      list of ``(path, field)``: ``path`` the tuple of enclosing fields from
      the top (e.g. ``(layer_field,)``), ``field`` the unknown one.
    """
    out, lists = [], set()
    for f in node.children or ():
        fd = descriptor.fields_by_name.get(f.name)
        if fd is None:
            if f.in_list is not None and f.in_list in lists:
                continue                        # a list is one field: named once
            lists.add(f.in_list)
            if not f.name.startswith("["):      # extensions are not ours to judge
                out.append((path, f))
        elif fd.message_type is not None and f.is_message:
            out.extend(unknown_fields(f, fd.message_type, path + (f,)))
    return out


def repeated_twice(node, descriptor, path=()):
    """Non-repeated fields of ``node`` given more than once, which Caffe's parser refuses.

    Walks the tree against ``descriptor`` as :func:`unknown_fields` does
    (fields the descriptor lacks are not judged).

    Returns:
      list of ``(path, field)``: ``field`` the second occurrence.
    """
    out, seen = [], set()
    for f in node.children or ():
        fd = descriptor.fields_by_name.get(f.name)
        if fd is None:
            continue
        if not fd.is_repeated:
            if f.name in seen:
                out.append((path, f))
            seen.add(f.name)
        if fd.message_type is not None and f.is_message:
            out.extend(repeated_twice(f, fd.message_type, path + (f,)))
    return out


_INTEGER = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[fF]?")
_RANGES = {"CPPTYPE_INT32": (-2 ** 31, 2 ** 31 - 1), "CPPTYPE_INT64": (-2 ** 63, 2 ** 63 - 1),
           "CPPTYPE_UINT32": (0, 2 ** 32 - 1), "CPPTYPE_UINT64": (0, 2 ** 64 - 1)}


# protobuf's FieldDescriptor.CPPTYPE_* numbers (fixed by descriptor.proto's C++ API)
_CPPTYPES = {1: "CPPTYPE_INT32", 2: "CPPTYPE_INT64", 3: "CPPTYPE_UINT32", 4: "CPPTYPE_UINT64",
             5: "CPPTYPE_DOUBLE", 6: "CPPTYPE_FLOAT", 7: "CPPTYPE_BOOL", 8: "CPPTYPE_ENUM",
             9: "CPPTYPE_STRING", 10: "CPPTYPE_MESSAGE"}


def _integer(token):
    if not _INTEGER.fullmatch(token):
        return None
    sign, digits = (-1, token[1:]) if token.startswith("-") else (1, token)
    if digits[:2] in ("0x", "0X"):
        return sign * int(digits[2:], 16)
    if len(digits) > 1 and digits[0] == "0":
        return sign * int(digits, 8)
    return sign * int(digits)


def scalar(field, fd):
    """The value Caffe's parser gives the scalar ``field`` of type ``fd`` (a protobuf FieldDescriptor).

    Integers: decimal, octal (``0377`` = 255) or hex (``0x1f``), in the
    type's range.  Floats: decimal (``1``, ``.5``, ``1e-3``, ``2f``), ``inf``,
    ``infinity``, ``nan``; octal and hex are refused, as Caffe refuses them.
    Booleans: ``true``/``True``/``t``, ``false``/``False``/``f``, 1, 0.
    Enums: the value's name, or its number; returned as the name.  Strings:
    the decoded text (see the module doc).

    Raises:
      ValueError saying what Caffe's parser says, without the position.
    """
    if fd.message_type is not None or field.is_message:
        if fd.message_type is None or not field.is_message:
            raise ValueError(f"expected {'{' if fd.message_type is not None else 'a value'}")
        return field
    kind = _CPPTYPES.get(fd.cpp_type)
    if kind == "CPPTYPE_STRING":
        if not field.is_string:
            raise ValueError(f"expected a string, got {field.value}")
        return field.value
    if field.is_string:
        raise ValueError(f"expected {'a name or a number' if kind == 'CPPTYPE_ENUM' else 'a number'}, "
                         f"got a string")
    token = re.sub(r"^-[ \t]+", "-", field.value)
    if kind in _RANGES:
        value = _integer(token)
        if value is None:
            raise ValueError(f"expected an integer, got {token}")
        low, high = _RANGES[kind]
        if not low <= value <= high:
            raise ValueError(f"integer out of range ({token})")
        return value
    if kind in ("CPPTYPE_FLOAT", "CPPTYPE_DOUBLE"):
        if token.lstrip("-").lower() in ("inf", "infinity", "nan"):
            return float(token.lower().replace("infinity", "inf"))
        if _INTEGER.fullmatch(token) and not _DECIMAL.fullmatch(token):
            raise ValueError(f"expected a decimal number, got {token} (octal and hex are integers only)")
        if not _FLOAT.fullmatch(token) or re.match(r"-?0[0-9]", token):
            raise ValueError(f"expected a number, got {token}")
        return float(token.rstrip("fF"))
    if kind == "CPPTYPE_BOOL":
        if token in ("true", "True", "t"):
            return True
        if token in ("false", "False", "f"):
            return False
        if _integer(token) in (0, 1):
            return bool(_integer(token))
        raise ValueError(f"expected true or false, got {token}")
    if kind == "CPPTYPE_ENUM":
        number = _integer(token)
        names = fd.enum_type.values_by_name
        if number is not None and number in fd.enum_type.values_by_number:
            return fd.enum_type.values_by_number[number].name
        if number is None and token in names:
            return token
        raise ValueError(f"{token} is not a value of {fd.enum_type.name} (its values: "
                         f"{', '.join(f'{v.name} = {v.number}' for v in fd.enum_type.values)})")
    raise ValueError(f"fields of this type are not read here ({kind})")


def caffe_spelling(text, descriptor):
    """``text`` with the values Caffe's parser and protobuf's Python one read differently respelt.

    Python's parser refuses what Caffe's reads: a sign apart from its number
    (``- 5``), an enum or a boolean written as an octal or hex number
    (``normalization: 01``), and it reads ``\\?`` as two characters.  Each
    such value (inside fields that ``descriptor``, e.g. NetParameter's, knows)
    is written as the same value in the spelling both read; strings are
    written again with :func:`quote`.  Raises :class:`TextProtoError` where
    Caffe refuses the text too (an invalid escape, ...).
    """
    edits = []

    def walk(node, desc):
        for f in node.children or ():
            fd = desc.fields_by_name.get(f.name) if desc is not None else None
            if f.is_message:
                walk(f, fd.message_type if fd is not None else None)
            elif f.is_string:
                if "\\" in text[f.value_start:f.value_end]:
                    edits.append((f.value_start, f.value_end, quote(f.value)))
            elif fd is not None and _CPPTYPES.get(fd.cpp_type) in ("CPPTYPE_ENUM", "CPPTYPE_BOOL"):
                try:
                    value = scalar(f, fd)
                except ValueError:
                    continue        # protobuf says what is wrong
                edits.append((f.value_start, f.value_end, str(value).lower() if isinstance(value, bool) else value))
            elif re.match(r"-[ \t]", f.value):
                edits.append((f.value_start, f.value_end, re.sub(r"^-[ \t]+", "-", f.value)))

    walk(parse(text), descriptor)
    out, last = [], len(text)
    for start, end, new in sorted(edits, reverse=True):
        out += [text[end:last], new]
        last = start
    out.append(text[:last])
    return "".join(reversed(out))


def quote(value):
    """A prototxt string literal for ``value`` (double quotes, escaped) that Caffe reads as ``value``.

    Non-ASCII text is written as UTF-8, a surrogate-escaped byte (see
    :func:`decode`) and control characters as octal escapes.
    """
    out = []
    for c in value:
        o = ord(c)
        if c in '\\"':
            out.append("\\" + c)
        elif c in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\{o:03o}")
        elif 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\{o - 0xDC00:03o}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def describe(text, field):
    """The field's text on one line (whitespace and comments collapsed), e.g. for messages."""
    body = re.sub(r"#[^\n]*", "", text[field.start:field.end])
    return re.sub(r"\s+", " ", body).strip()
