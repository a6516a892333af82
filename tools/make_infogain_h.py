#!/usr/bin/env python3
"""Make an infogain H matrix (see caffe_losses/cli/make_infogain_h.py)."""

if __name__ == "__main__":
    from caffe_losses.cli._script import main
    main("make_infogain_h")
