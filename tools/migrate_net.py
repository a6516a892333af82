#!/usr/bin/env python3
"""Thin entry point: same as `caffe-losses migrate`."""
from caffe_losses.cli._script import main

if __name__ == "__main__":
    main("migrate")
