"""``python -m caffe_losses.cli``: the ``caffe-losses`` command (as it ran when the CLI was one module)."""

import sys

from caffe_losses.cli import main

sys.exit(main())
