"""A tolerant reader of protobuf text format (prototxt), with source positions.

Caffe's forks add fields that BVLC's ``caffe.proto`` lacks (fast-rcnn's
``smooth_l1_loss_param``, caffe-face's ``center_loss_param``, ...), and
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

with ``#`` comments and optional ``,`` / ``;`` after a field.  This module
does not import caffe or protobuf.
"""

import re

__all__ = ["TextProtoError", "Field", "parse", "unknown_fields", "quote", "describe"]


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
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fF]?)(?![A-Za-z_0-9.]))
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[{}<>:\[\],;/])
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", "'": "'", '"': '"', "?": "?"}


def _unescape(body):
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\" or i + 1 == len(body):
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n in _ESCAPES:
            out.append(_ESCAPES[n])
            i += 2
        elif n in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            out.append(chr(int(m.group(), 16)) if m else n)
            i += 2 + (len(m.group()) if m else 0)
        elif n in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(chr(int(m.group(), 8)))
            i += 1 + len(m.group())
        else:
            out.append(n)
            i += 2
    return "".join(out)


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
    """

    __slots__ = ("name", "start", "end", "value", "is_string", "value_start", "value_end", "children")

    def __init__(self, name, start):
        self.name, self.start = name, start
        self.end = self.value_start = self.value_end = None
        self.value, self.is_string, self.children = None, False, None

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
            fields.append(self.field())

    def field(self):
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
        elif colon and tok[0] == "punct" and tok[1] == "[":
            self._list_value(f)
        elif colon:
            self._scalar(f)
        else:
            got = "end of file" if tok[0] == "eof" else repr(tok[1])
            raise TextProtoError(f"expected ':' or '{{' after field '{f.name}', got {got}",
                                 self.text, tok[2])
        if self.peek()[0] == "punct" and self.peek()[1] in ",;":
            self.i += 1
        return f

    def _message_value(self, f):
        open_tok = self.take()
        f.value_start = open_tok[2]
        f.children, f.end = self.message("}" if open_tok[1] == "{" else ">")
        f.value_end = f.end

    def _scalar(self, f):
        tok = self.peek()
        if tok[0] == "string":
            parts = []
            f.value_start = tok[2]
            while self.peek()[0] == "string":
                t = self.take()
                parts.append(_unescape(t[1][1:-1]))
                f.end = t[3]
            f.value, f.is_string = "".join(parts), True
        elif tok[0] in ("number", "ident"):
            self.i += 1
            f.value, f.value_start, f.end = tok[1], tok[2], tok[3]
        else:
            got = "end of file" if tok[0] == "eof" else repr(tok[1])
            raise TextProtoError(f"expected a value for field '{f.name}', got {got}", self.text, tok[2])
        f.value_end = f.end

    def _list_value(self, f):
        # name: [1, 2, 3] is the same as name: 1 name: 2 name: 3; kept as one
        # Field whose value is the list text (never rewritten by migrate)
        open_tok = self.take("punct", "[")
        depth = 1
        while depth:
            tok = self.take()
            if tok[0] == "eof":
                raise TextProtoError("missing ']'", self.text, open_tok[2])
            if tok[0] == "punct" and tok[1] in "[{<":
                depth += 1
            elif tok[0] == "punct" and tok[1] in "]}>":
                depth -= 1
        f.value_start, f.end = open_tok[2], tok[3]
        f.value, f.value_end = self.text[open_tok[2]:tok[3]], tok[3]


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
    out = []
    for f in node.children or ():
        fd = descriptor.fields_by_name.get(f.name)
        if fd is None:
            if not f.name.startswith("["):      # extensions are not ours to judge
                out.append((path, f))
        elif fd.message_type is not None and f.is_message:
            out.extend(unknown_fields(f, fd.message_type, path + (f,)))
    return out


def quote(value):
    """A prototxt string literal for ``value`` (double quotes, escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def describe(text, field):
    """The field's text on one line (whitespace and comments collapsed), e.g. for messages."""
    body = re.sub(r"#[^\n]*", "", text[field.start:field.end])
    return re.sub(r"\s+", " ", body).strip()
