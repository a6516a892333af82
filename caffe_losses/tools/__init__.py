"""Command-line tools; each module has ``add_arguments(parser)`` and ``run(args)``.

They are reached as ``caffe-losses <tool>`` and as ``python tools/<tool>.py``.
"""
