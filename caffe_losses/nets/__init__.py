"""Prototxt tooling: the reader (``prototxt``), the tolerant reader (``textproto``), the checks
before Caffe (``preflight``), ``check`` (``lint``), the ``migrate`` engine (``migrate``),
learnable blob shapes (``netshapes``), net surgery (``surgery``), the templates (``templates``)."""
