"""Checks before handing files to Caffe, which aborts the process on them.

Caffe ``LOG(FATAL)`` s (SIGABRT, no Python exception) when a data layer's
source file is missing or when a ``.caffemodel`` does not fit the net.  These
functions look first and raise :class:`PreflightError` (a ``ValueError``)
with a message naming the layer and file.  Used by ``caffe-losses train``
and ``net-surgery``.
"""

import os

__all__ = ["PreflightError", "in_phase", "check_data_sources", "check_weights"]


class PreflightError(ValueError):
    """A file Caffe would abort on."""


def _rule_met(rule, phase):
    """Caffe's ``Net::StateMeetsRule`` for the state ``{phase, level 0, no stages}``.

    That is the state of ``caffe.Net(path, phase)`` and of a solver's nets
    unless the prototxt sets ``state``: a rule that needs a stage, or a level
    range excluding 0, is not met; ``not_stage`` always is.
    """
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and rule.min_level > 0:
        return False
    if rule.HasField("max_level") and rule.max_level < 0:
        return False
    return not len(rule.stage)


def in_phase(layer, phase):
    """Whether Caffe builds ``layer`` in ``phase`` (its include/exclude rules)."""
    if len(layer.include):
        return any(_rule_met(r, phase) for r in layer.include)
    return not any(_rule_met(r, phase) for r in layer.exclude)


def check_data_sources(param, phase):
    """Caffe aborts the process when a data layer's source is missing: check first."""
    for layer in param.layer:
        if not in_phase(layer, phase):
            continue
        source = None
        if layer.type == "HDF5Data":
            source = layer.hdf5_data_param.source
        elif layer.type == "ImageData":
            source = layer.image_data_param.source
        elif layer.type == "Data":
            source = layer.data_param.source
        if source is None:
            continue
        if not os.path.exists(source):
            raise PreflightError(
                f"data layer '{layer.name}' ({layer.type}) reads '{source}', which does not exist "
                f"(relative to {os.getcwd()}): write the data first, or run from the folder the "
                f"prototxt's paths are relative to")
        if layer.type == "HDF5Data":
            with open(source) as f:
                files = [line.strip() for line in f if line.strip()]
            missing = [p for p in files if not os.path.isfile(p)]
            if not files or missing:
                raise PreflightError(f"data layer '{layer.name}' (HDF5Data): list file '{source}' "
                                   + (f"names a missing file '{missing[0]}'" if missing else "is empty"))


def _blob_shape(blob_proto):
    if blob_proto.HasField("shape"):
        return tuple(blob_proto.shape.dim), False
    return (blob_proto.num, blob_proto.channels, blob_proto.height, blob_proto.width), True


def _legacy(shape):
    # Caffe's Blob::LegacyShape: axes beyond the blob's are 1.
    return tuple(shape[i] if i < len(shape) else 1 for i in range(4))


def check_weights(path, net, option="weights"):
    """Caffe aborts when a .caffemodel does not fit the net: compare blob shapes first."""
    from caffe.proto import caffe_pb2
    if not os.path.isfile(path):
        raise PreflightError(f"{option}: file not found: {path}")
    if path.endswith(".h5"):
        return  # Caffe's HDF5 weights: copied as is
    source = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        try:
            source.ParseFromString(f.read())
        except Exception as err:  # protobuf's DecodeError
            raise PreflightError(f"{option} {path}: not a binary .caffemodel ({err})") from None
    layers = list(source.layer) or list(source.layers)
    index = {name: i for i, name in enumerate(net._layer_names)}
    for layer in layers:
        if layer.name not in index:
            continue   # Caffe skips layers the net does not have
        blobs = net.layers[index[layer.name]].blobs
        ours = [tuple(blobs[i].data.shape) for i in range(len(blobs))]
        if len(layer.blobs) != len(ours):
            raise PreflightError(f"{option}: layer '{layer.name}' has {len(layer.blobs)} blob(s) in "
                               f"{path} but {len(ours)} in the model (bias_term differs?)")
        for i, blob in enumerate(layer.blobs):
            theirs, legacy = _blob_shape(blob)
            if (_legacy(ours[i]) != theirs) if legacy else (ours[i] != theirs):
                raise PreflightError(f"{option}: layer '{layer.name}' blob {i} has shape {theirs} in "
                                   f"{path} but {ours[i]} in the model")


