#!/usr/bin/env python3
"""Thin entry point: same as `caffe-losses make-pos-weight`."""
from caffe_losses.tools._script import main

if __name__ == "__main__":
    main("make_pos_weight")
