"""Thin ``caffe.Layer`` adapters over :mod:`caffe_losses.core`."""
