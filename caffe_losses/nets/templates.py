"""The prototxt templates shipped in ``prototxt_templates/``.

Each template is a folder with ``train_val.prototxt``, ``solver.prototxt`` and
``template.yaml``::

    description: one line for listings
    prepare: caffe_losses.losses.infogain.data:prepare_source   # writes what the net reads
    weights: init_weights.caffemodel                     # optional, made by prepare
    iterations: 20                                       # optional, for the smoke test

The net reads its data with Caffe's own layers from paths relative to the
folder it runs in (``data/train.txt`` ...), and ``prototxt_templates/`` has
no data: train a copy, made with its data by the ``template`` command::

    caffe-losses template <name> --out DIR
    cd DIR && caffe train -solver solver.prototxt

The test suite
copies every template, prepares it, and runs forward/backward and a few
solver iterations; a template without ``template.yaml`` fails that test.
"""

import importlib
import os
from importlib import resources

import yaml

__all__ = ["TEMPLATE_ROOT", "template_root", "list_templates", "load_template", "prepare_template",
           "prepare_data"]


def template_root():
    """The folder of the shipped templates, wherever the package is installed.

    One source of truth, ``prototxt_templates/`` at the top of the
    repository: a wheel (``pip install .``) carries it as the package data
    ``caffe_losses/prototxt_templates/`` (``setup.py`` maps it there); a
    clone or an editable install (``make setup``) reads it in place.
    """
    package = os.fspath(resources.files("caffe_losses"))
    packaged = os.path.join(package, "prototxt_templates")
    if os.path.isdir(packaged):
        return packaged
    return os.path.join(os.path.dirname(package), "prototxt_templates")


TEMPLATE_ROOT = template_root()


def list_templates(root=TEMPLATE_ROOT):
    """Names of the template folders under ``root``, sorted."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"the prototxt templates are missing: no folder {root} (an "
                                f"incomplete install? reinstall caffe-losses)")
    return sorted(d for d in os.listdir(root)
                  if os.path.isdir(os.path.join(root, d)) and not d.startswith((".", "_")))


def load_template(folder):
    """Reads ``template.yaml`` of ``folder``; checks the required files exist."""
    meta_path = os.path.join(folder, "template.yaml")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"template {folder}: missing template.yaml")
    with open(meta_path) as f:
        meta = yaml.safe_load(f) or {}
    for key in ("description", "prepare"):
        if key not in meta:
            raise ValueError(f"template {folder}: template.yaml must set '{key}'")
    for name in ("train_val.prototxt", "solver.prototxt"):
        if not os.path.isfile(os.path.join(folder, name)):
            raise FileNotFoundError(f"template {folder}: missing {name}")
    return meta


def _prepare(meta, folder, kwargs):
    module, _, func = meta["prepare"].partition(":")
    return getattr(importlib.import_module(module), func)(os.path.abspath(folder), **kwargs)


def prepare_template(folder, **kwargs):
    """Runs the template's ``prepare`` function on ``folder`` (writes data/); returns template.yaml's settings.

    Keyword arguments go to the function (e.g. ``small=True`` in tests).
    """
    meta = load_template(folder)
    _prepare(meta, folder, kwargs)
    return meta


def prepare_data(folder, **kwargs):
    """As :func:`prepare_template`, but returns what ``prepare`` returned: the data's
    description (list files, row counts ``n_train`` and ``n_test``, ...)."""
    return _prepare(load_template(folder), folder, kwargs)
