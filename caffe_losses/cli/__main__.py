"""``python -m caffe_losses.cli``: the ``caffe-losses`` command without its console script."""

import sys

from caffe_losses.cli import main

sys.exit(main())
