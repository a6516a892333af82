"""Embedded, deterministic datasets written for Caffe's own ``HDF5Data`` layer.

No downloads: the digits are embedded (``digits.csv.gz``), the rest is
generated from fixed seeds.  Each dataset module (``digits``, ``age``, ...)
has functions that write ``<name>.h5`` plus the list file ``<name>.txt`` that
an ``HDF5Data`` layer's ``source`` points at, and a ``prepare_*`` function per
template (see :mod:`caffe_losses.nets.templates`), which writes the template
folder's ``data/`` with :func:`write_splits`.
"""

import re
import os

import h5py
import numpy as np

__all__ = ["write_hdf5", "write_splits"]


def write_hdf5(folder, name, *, root=None, **arrays):
    """Writes ``folder/name.h5`` with one dataset per keyword, and the list file.

    Caffe's ``HDF5Data`` reads float32/float64 datasets whose first axis is the
    sample axis; the list file ``folder/name.txt`` names the ``.h5`` file.
    Caffe opens that name relative to its working directory (not to the list
    file), so:

    Args:
      root: the folder Caffe will run from (a template folder: ``cd root &&
        caffe train ...``).  The list file then holds the path relative to it
        (``data/train.h5``), and the folder still trains after it is moved,
        copied or mounted elsewhere (``docker run -v``).  None: the absolute
        path, which works from any working directory but only where it was
        written.

    Returns:
      the path of the list file (the layer's ``hdf5_data_param.source``).
    """
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    h5_path = os.path.join(folder, name + ".h5")
    n = None
    try:
        with h5py.File(h5_path, "w") as f:
            for key, value in arrays.items():
                value = np.ascontiguousarray(value, dtype=np.float32)
                if n is not None and value.shape[0] != n:
                    raise ValueError(f"write_hdf5: dataset '{key}' has {value.shape[0]} samples, expected {n}")
                n = value.shape[0]
                f.create_dataset(key, data=value)
    except (OSError, RuntimeError) as err:     # a full disk: HDF5's long error, then one on closing
        found = re.search(r"error message = '([^']*)'", str(err))
        reason = found.group(1) if found else (getattr(err, "strerror", None) or str(err).splitlines()[0])
        shown = h5_path if root is None else os.path.relpath(h5_path, os.path.abspath(root))
        raise OSError(f"{shown}: {reason}") from None
    list_path = os.path.join(folder, name + ".txt")
    with open(list_path, "w") as f:
        f.write((h5_path if root is None else os.path.relpath(h5_path, os.path.abspath(root))) + "\n")
    return list_path


def write_splits(folder, train, test):
    """Writes a template folder's ``data/{train,test}.{h5,txt}`` (:func:`write_hdf5`).

    The list files name ``data/train.h5`` and ``data/test.h5`` relative to
    ``folder``, the folder Caffe runs in, so the prepared folder trains
    wherever it is moved or mounted.

    Args:
      folder: the template folder.
      train, test: ``{dataset name: array}`` of each split (e.g. ``data`` and
        ``label``), rows on the first axis.

    Returns:
      dict with the list files ``train`` and ``test`` (the HDF5Data layers'
      ``source``) and the row counts ``n_train`` and ``n_test``.
    """
    data_dir = os.path.join(os.path.abspath(folder), "data")
    return {"train": write_hdf5(data_dir, "train", root=folder, **train),
            "test": write_hdf5(data_dir, "test", root=folder, **test),
            "n_train": len(next(iter(train.values()))), "n_test": len(next(iter(test.values())))}
