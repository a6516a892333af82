"""H matrices for the infogain losses: load, validate, save, and the ways to build one.

``H[k, l]`` weights ``-log p_l`` for a sample of true class ``k``, so:

* ``identity_h(L)``: plain softmax loss;
* ``weights_h(class_weights(counts, weighting=...))``: class weights on the
  diagonal, against class imbalance (inverse frequency, its square root, or
  the effective number of samples of Cui et al. 2019), normalised so that
  the mean weight over the training samples is 1 (the loss keeps its scale,
  so the learning rate need not change);
* ``read_matrix(path)``: a full matrix the user made (.npy, .csv, .binaryproto);
* ``similarity_from_distances(D, temperature=T)``: ``exp(-D / T)`` from a
  label distance matrix (cat/dog closer than cat/car). H must hold
  *similarities*: the loss is minimised by ``p_l`` proportional to
  ``H[y, l]``, so a large entry means "predicting l for y is fine".

Files: :func:`save_h` writes the (1, 1, L, L) ``.binaryproto`` that Caffe's
native ``InfogainLoss`` (``infogain_loss_param { source }``) and this
package's layers read; :func:`load_blob` reads a ``.binaryproto`` (the
``BlobProto`` written by ``caffe.io.array_to_blobproto``, legacy 4-D shape or
``shape { dim }``, ``data`` or ``double_data``) or a ``.npy`` with
``allow_pickle=False`` (a pickle can run code when loaded).

H is checked in the dtype Caffe uses it in, float32: a value beyond 3.4e38
(inf there) is refused, and so is a row whose values all round to 0 (a class
the loss would silently drop), both by :func:`save_h` before writing and by
the layers when they read a file or a bottom.

This module imports caffe only to read or write a ``.binaryproto``.
"""

import os

import numpy as np
from google.protobuf.message import DecodeError

from caffe_losses.losses.common import first_bad_index
from caffe_losses.losses.infogain.core import infogain_matrix, square_shape
from caffe_losses.files.safety import FLOAT32_MAX, check_allocation, float32_overflow, format_bytes, output_file, read_bytes
from caffe_losses.files.safety import shown_path as _where

__all__ = ["load_blob", "load_h", "check_h", "save_h", "describe_h", "identity_h",
           "read_labels", "class_counts", "class_weights", "weights_h", "read_matrix",
           "similarity_from_distances", "require_float32", "require_no_underflow_row", "zero_rows", "zero_row_note", "read_npy", "WEIGHTINGS",
           "MAX_CLASSES", "MAX_BLOB_AXES", "check_axes"]

# The largest L of an L x L H: labels reach the layers as float32, exact up
# to 2**24, and a 2**24-class H would need 2**48 values long before that; the
# real limit is the memory check (:func:`check_allocation`).
MAX_CLASSES = 2 ** 24

NPY_MAGIC = b"\x93NUMPY"
# Caffe's kMaxBlobAxes: a blob of more axes aborts the process (Blob::Reshape's CHECK)
MAX_BLOB_AXES = 32
WEIGHTINGS = ("inverse", "sqrt-inverse", "effective-number")


def load_blob(path, *, owner="load_blob", key="source"):
    """Reads an array from a ``.binaryproto`` (Caffe BlobProto) or ``.npy`` file.

    The format is recognised by content: a ``.npy`` starts with ``\\x93NUMPY``;
    anything else is parsed as a BlobProto.

    Args:
      path: the file.
      owner, key: for messages (``"SoftmaxWithInfogainLoss"``, ``"source"``).

    Returns:
      float64 array with the stored shape (Caffe's legacy num/channels/
      height/width when set, else ``shape.dim``).

    Raises:
      FileNotFoundError when the file is missing; ValueError when it is
      empty, a pickle, an object array, not a BlobProto, or its value count
      does not match its shape.
    """
    path = os.fspath(path)
    what = f"{owner}: '{key}' file {_where(path)}"
    if not os.path.isfile(path):
        if os.path.exists(path) and not os.path.isdir(path):     # a FIFO would block, a device never end
            raise ValueError(f"{what} is not a regular file (a FIFO, a device or a socket): give a "
                             f".binaryproto or .npy file")
        raise FileNotFoundError(f"{what} not found" if not os.path.isdir(path) else
                                f"{what} is a folder, not a file")
    if read_bytes(path, what, limit=len(NPY_MAGIC)) == NPY_MAGIC:
        return read_npy(path, what)
    size = os.path.getsize(path)
    # a BlobProto's float is 5 bytes in the file; parsed, 4 bytes, then 8 as float64
    check_allocation(size * 3, f"{what}, of {format_bytes(size)} (a .binaryproto H of L classes takes about "
                               f"5 L^2 bytes),")
    raw = read_bytes(path, what)
    if not raw:
        raise ValueError(f"{what} is empty")
    if path.lower().endswith(".npy") or raw[:1] == b"\x80":
        hint = "a pickle" if raw[:1] == b"\x80" else "not a .npy file"
        raise ValueError(f"{what} is {hint}: expected a .npy array (numpy.save) or a "
                         f".binaryproto; pickles are refused (allow_pickle=False) because "
                         f"loading one can run code")
    return _parse_blobproto(raw, what)


def _not_a_file(path, what):
    """The error for a path that is not a regular file: missing, a folder, or a FIFO/device (never read)."""
    if os.path.isdir(path):
        return FileNotFoundError(f"{what} is a folder, not a file")
    if os.path.exists(path):
        return ValueError(f"{what} is not a regular file (a FIFO, a device or a socket)")
    return FileNotFoundError(f"{what} not found")


def _npy_header(path, what):
    """(shape, dtype) from a .npy file's header, without reading its data."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except OSError as err:
        raise OSError(f"{what} cannot be read: {err.strerror or err}") from None
    except Exception as err:    # truncated or corrupt header
        raise ValueError(f"{what} is not a readable .npy file: its header is truncated or "
                         f"corrupt ({err})") from None
    return shape, dtype


def check_axes(shape, what):
    """Refuses a shape of more axes than a Caffe blob can have (Caffe would abort)."""
    if len(shape) > MAX_BLOB_AXES:
        raise ValueError(f"{what} has {len(shape)} axes; a Caffe blob has at most {MAX_BLOB_AXES} "
                         f"(kMaxBlobAxes): Caffe would abort")


def read_npy(path, what):
    """A numeric ``.npy`` as float64, read without pickle; ``what`` names the file in messages.

    Tells a pickled object array (refused: loading one can run code) from a
    truncated or corrupt file, and refuses one larger than the free memory.
    """
    shape, dtype = _npy_header(path, what)
    if dtype.hasobject:
        raise ValueError(f"{what} holds a pickled object array (dtype {dtype}); save a numeric "
                         f"array with numpy.save (pickles are refused: loading one can run code)")
    if dtype.kind not in "fiub":
        raise ValueError(f"{what} holds dtype {dtype}; expected real numbers")
    check_axes(shape, what)
    count = int(np.prod(shape, dtype=object)) if shape else 1
    # read, then converted to float64: refused before a MemoryError
    check_allocation(count * (dtype.itemsize + 8), f"{what} ({' x '.join(map(str, shape))} values)")
    try:
        arr = np.load(path, allow_pickle=False)
    except OSError as err:
        raise OSError(f"{what} cannot be read: {err.strerror or err}") from None
    except Exception as err:    # the data part is shorter than the header says
        raise ValueError(f"{what} is truncated or corrupt: {err}") from None
    return np.asarray(arr, dtype=np.float64)


def _parse_blobproto(raw, what):
    from caffe.proto import caffe_pb2
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(raw)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{what} is not a BlobProto .binaryproto ({err}); write H with "
                         f"caffe-losses make-h or caffe.io.array_to_blobproto") from None
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    check_axes(shape, what)
    if any(d < 0 for d in shape):
        raise ValueError(f"{what} is not a valid BlobProto: its shape {shape} has a negative "
                         f"dimension; write H with caffe-losses make-h or "
                         f"caffe.io.array_to_blobproto")
    values = blob.double_data if len(blob.double_data) else blob.data
    count = int(np.prod(shape, dtype=object)) if shape else 0
    if not len(values) or count != len(values):
        raise ValueError(f"{what} is not a valid BlobProto: its shape {shape} needs {count} "
                         f"values, it holds {len(values)}; write H with caffe-losses make-h "
                         f"or caffe.io.array_to_blobproto")
    return np.asarray(values, dtype=np.float64).reshape(shape)


def require_float32(H, *, owner, name):
    """Raises ``ValueError`` when a value of ``H`` is beyond float32 (inf in Caffe's blobs)."""
    bad = float32_overflow(H)
    if bad is not None:
        raise ValueError(f"{owner}: {name} holds {float(np.asarray(H)[bad]):g} at index "
                         f"{list(bad)}, beyond float32 (at most {FLOAT32_MAX:.4g} in magnitude), "
                         f"the type Caffe computes in")


def zero_rows(H):
    """The all-zero rows of H as Caffe uses it (float32): ``(exact, underflow)`` class indexes.

    ``exact``: rows that hold only zeros (a class weighted 0, e.g. a void or
    background class: valid, Caffe's InfogainLoss takes it out of the loss).
    ``underflow``: rows with a positive value that is 0 in float32 (e.g.
    1e-50): the zero is float32's doing, not what the matrix says.
    """
    M = np.asarray(H, dtype=np.float64)
    M = M.reshape(M.shape[-2], M.shape[-1]) if M.ndim > 2 else M
    any_value = M.any(axis=1)
    zero32 = ~M.astype(np.float32).any(axis=1)
    return np.flatnonzero(~any_value), np.flatnonzero(zero32 & any_value)


def _classes(rows):
    shown = rows[:10].tolist()
    return f"{shown}" + (f" and {rows.size - 10} more" if rows.size > 10 else "")


def require_no_underflow_row(H, *, owner, name):
    """Raises ``ValueError`` when a row of H is all zero in float32 but not in H itself.

    A row of zeros is valid (its class adds no loss and no gradient, as in
    Caffe's InfogainLoss); a row whose positive values all round to 0 in
    float32 (e.g. 1e-50) would drop its class from the loss without anyone
    having asked for it.
    """
    _, underflow = zero_rows(H)
    if underflow.size:
        raise ValueError(f"{owner}: {name} has rows for class(es) {_classes(underflow)} whose "
                         f"values are all 0 in float32 (the type Caffe computes in), though not "
                         f"in the matrix given (e.g. 1e-50): those classes would add no loss. "
                         f"Scale H up, or write 0 where a class is meant to add no loss")


def zero_row_note(H, *, name):
    """A one-line note naming H's all-zero rows (float32), or None when there are none."""
    exact, underflow = zero_rows(H)
    rows = np.union1d(exact, underflow)
    if not rows.size:
        return None
    how = "" if not underflow.size else (
        f" (class(es) {_classes(underflow)} only in float32: their values underflow to 0)")
    return (f"{name} has all-zero rows for class(es) {_classes(rows)}{how}: samples of those "
            f"classes add no loss and no gradient, as in Caffe's InfogainLoss (a class weighted 0)")


def check_h(H, num_classes=None, *, owner="check_h", name="H", refuse_underflow=False):
    """Validates H and returns it as an (L, L) float64 array.

    H must be L x L (or 1 x 1 x L x L), finite, non-negative and within
    float32's range.  All-zero rows are valid (a class weighted 0, as
    Caffe's InfogainLoss accepts); with ``refuse_underflow=True`` a row that
    is zero only in float32 (its positive values underflow) is refused: a
    tool that writes H must not make such a row itself.
    """
    H = np.asarray(H)
    require_float32(H, owner=owner, name=name)
    M = infogain_matrix(H, num_classes, owner=owner, name=name,
                        dtype=np.float64).matrix
    if refuse_underflow:
        require_no_underflow_row(M, owner=owner, name=name)
    return M


def load_h(path, num_classes=None, *, owner="load_h", key="source"):
    """Loads and validates H from a file (see :func:`load_blob`): (L, L) float64."""
    blob = load_blob(path, owner=owner, key=key)
    return check_h(blob, num_classes, owner=owner, name=f"'{key}' file {_where(os.fspath(path))}")


def save_h(path, H, *, inputs=(), owner="save_h"):
    """Writes H as a (1, 1, L, L) BlobProto ``.binaryproto`` (what Caffe reads).

    Validates H first, as the float32 that is written (L x L, finite,
    non-negative, within float32, no row that float32 alone turns into
    zeros), then writes
    through :func:`caffe_losses.files.safety.output_file` (never over one of
    ``inputs``, never a folder, atomically).

    Returns:
      the (L, L) float32 matrix written (Caffe's ``data``), as float64.
    """
    M = check_h(H, owner=owner, refuse_underflow=True).astype(np.float32)
    import caffe.io
    L = M.shape[0]
    blob = caffe.io.array_to_blobproto(M.reshape(1, 1, L, L))
    with output_file(path, inputs, tool=owner) as tmp:
        with open(tmp, "wb") as f:
            f.write(blob.SerializeToString())
    return M.astype(np.float64)


def describe_h(H, *, max_print=12):
    """A few lines describing H: shape, kind, row sums; the diagonal, or a small full matrix."""
    M = np.asarray(H, dtype=np.float64)
    L = M.shape[0]
    off = M - np.diag(np.diagonal(M))
    if not off.any():
        kind = "identity (plain softmax loss)" if np.all(np.diagonal(M) == 1) else \
            "diagonal (class weights)"
    else:
        kind = "full (label similarities)" if np.allclose(M, M.T) else "full"
    lines = [f"H: {L} x {L}, {kind}",
             f"  values in [{M.min():.6g}, {M.max():.6g}], row sums in "
             f"[{M.sum(1).min():.6g}, {M.sum(1).max():.6g}]"]
    if kind.startswith("diagonal"):
        lines.append("  diagonal: " + np.array2string(np.diagonal(M), precision=4,
                                                       max_line_width=100, separator=", "))
    if L <= max_print and kind.startswith("full"):
        lines.append(np.array2string(M, precision=4, suppress_small=True, max_line_width=120))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Ways to build H
# ---------------------------------------------------------------------------

def check_classes(num_classes, *, owner="identity_h"):
    """Refuses a class count that is not in [1, 2**24] or whose L x L H would not fit in memory."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"{owner}: the number of classes must be in [1, {MAX_CLASSES}]. "
                         f"Received: {num_classes}")
    # the float64 matrix, its float32 copy and a temporary of each
    check_allocation(num_classes * num_classes * 24,
                     f"an H of {num_classes} x {num_classes} classes", owner=owner)


def identity_h(num_classes):
    """``np.eye(L)``: the infogain loss becomes the plain softmax loss."""
    num_classes = int(num_classes)
    check_classes(num_classes)
    return np.eye(num_classes)


def read_labels(path, *, dataset="label", table=False, what=None):
    """Reads labels from a text file, a ``.npy`` or an HDF5 dataset, as float64.

    The one label-file reader: ``caffe-losses make-h`` reads class labels with
    it (flat), ``caffe-losses make-pos-weight`` per-channel targets
    (``table=True``).

    Text: numbers separated by spaces, commas or newlines (``#`` starts a
    comment); flat, a Caffe list file of ``<image path> <label>`` lines is
    read too (the last column is taken); as a table, one sample per line,
    every line as long.
    HDF5 (``.h5``, ``.hdf5``, or the HDF5 signature): the dataset ``dataset``
    (default ``label``, what Caffe's HDF5Data layer reads), all values; None:
    the caller must name one (``FILE.h5:DATASET``).

    Args:
      table: keep the array's shape (text: (rows, columns)) instead of 1-D.
      what: how messages name the file (default ``label file 'PATH'``).
    """
    path = os.fspath(path)
    what = what or f"label file {_where(path)}"
    if not os.path.isfile(path):
        raise _not_a_file(path, what)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise OSError(f"{what} cannot be read: {err.strerror or err}") from None
    if head.startswith(NPY_MAGIC) or path.lower().endswith(".npy"):
        data = read_npy(path, what)
        return data if table else data.ravel()
    if head.startswith(b"\x89HDF") or path.lower().endswith((".h5", ".hdf5", ".hdf")):
        data = _read_h5_labels(path, dataset, what)
        return data if table else data.ravel()
    rows = []
    with open(path, errors="replace") as f:
        for number, line in enumerate(f, 1):
            fields = line.split("#")[0].replace(",", " ").split()
            if not fields:
                continue
            try:
                rows.append([float(v) for v in fields])
            except ValueError:
                try:   # "<image path> <label>": a Caffe ImageData list file
                    if table:
                        raise
                    rows.append([float(fields[-1])])
                except ValueError:
                    expected = "numbers, one sample per line" if table else "numbers or '<path> <label>'"
                    raise ValueError(f"{what}, line {number}: expected {expected}. "
                                     f"Received: {line.strip()[:60]!r}") from None
            if table and len(rows[-1]) != len(rows[0]):
                raise ValueError(f"{what}, line {number}: {len(rows[-1])} value(s), but the first "
                                 f"sample has {len(rows[0])}: expected one sample per line, "
                                 f"each as long")
    if table:
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1 if rows else 1)
    return np.asarray([v for row in rows for v in row], dtype=np.float64)


def _read_h5_labels(path, dataset, what):
    """The values of ``dataset`` in the HDF5 file ``path``, float64, in their shape."""
    import h5py      # optional dependency: only HDF5 label files need it
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{what} is not a readable HDF5 file ({err})") from None
    with f:
        names = []
        f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
        held = ", ".join(names) or "no dataset"
        if dataset is None:
            raise ValueError(f"{what}: name the dataset as {path}:DATASET; it holds {held}")
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise ValueError(f"{what}: no dataset '{dataset}'; it holds {held}")
        data = f[dataset]
        if data.dtype.kind not in "fiub":
            raise ValueError(f"{what}: dataset '{dataset}' holds {data.dtype}; expected numbers")
        return np.asarray(data[...], dtype=np.float64)


def class_counts(labels, num_classes=None, *, ignore_label=None):
    """Samples per class: (L,) int64, L = ``num_classes`` or ``max(label) + 1``."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if ignore_label is not None:
        labels = labels[labels != ignore_label]
    if labels.size == 0:
        raise ValueError("class_counts: no labels (all ignored, or an empty file)")
    as_int = np.rint(labels)
    bad = ~np.isfinite(labels) | (as_int != labels) | (as_int < 0)
    if num_classes is not None:
        bad |= as_int >= num_classes
    if bad.any():
        i = first_bad_index(bad)[0]
        rng = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise ValueError(f"label {float(labels[i]):g} at position {i} is not an integer "
                         f"in {rng} ({int(bad.sum())} bad value(s))")
    L = int(as_int.max()) + 1 if num_classes is None else int(num_classes)
    if L > MAX_CLASSES:
        raise ValueError(f"the labels name {L} classes (largest label {int(as_int.max())}), more "
                         f"than the {MAX_CLASSES} float32 labels can name exactly")
    return np.bincount(as_int.astype(np.int64), minlength=L)


def class_weights(counts, *, weighting="inverse", beta=0.999):
    """Per-class weights from class counts, mean weight over samples 1.

    ``n_c`` samples of class c:

    * ``inverse``: ``w_c ~ 1 / n_c`` (every class weighs the same in total);
    * ``sqrt-inverse``: ``w_c ~ 1 / sqrt(n_c)`` (milder);
    * ``effective-number``: ``w_c ~ (1 - beta) / (1 - beta^n_c)``, the inverse
      effective number of samples (Cui et al., "Class-Balanced Loss Based on
      Effective Number of Samples", CVPR 2019): ``beta = 0`` gives no
      weighting, ``beta -> 1`` tends to ``inverse``.

    then scaled so that ``sum_c n_c w_c / sum_c n_c = 1``.

    Raises:
      ValueError for a class with no sample (its weight would be infinite;
      pass counts with every class present), negative counts, or a bad
      ``weighting``/``beta``.
    """
    counts = np.asarray(counts, dtype=np.float64).ravel()
    if counts.size == 0 or not np.all(np.isfinite(counts)) or np.any(counts < 0):
        shown = ", ".join(f"{c:g}" for c in counts[:10]) + (", ..." if counts.size > 10 else "")
        raise ValueError(f"class counts must be finite non-negative numbers. Received: {shown}")
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(f"class(es) {empty[:10].tolist()} have no samples, so their "
                         f"weight would be infinite; give every class at least one sample "
                         f"(or count only the classes present)")
    if weighting == "inverse":
        w = 1.0 / counts
    elif weighting == "sqrt-inverse":
        w = 1.0 / np.sqrt(counts)
    elif weighting == "effective-number":
        if not 0 <= beta < 1:
            raise ValueError(f"'beta' must be in [0, 1). Received: beta={beta:g}")
        # 1 - beta^n computed as -expm1(n log beta): exact for beta near 1
        w = (1.0 - beta) / -np.expm1(counts * np.log(beta)) if beta > 0 else np.ones_like(counts)
    else:
        raise ValueError(f"'weighting' must be one of {', '.join(WEIGHTINGS)}. "
                         f"Received: weighting={weighting!r}")
    return w * (counts.sum() / np.dot(counts, w))


def weights_h(weights):
    """``diag(weights)``: a class-weighted softmax loss (the layers' fast path)."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    return np.diag(w)


def read_matrix(path):
    """Reads a square matrix from ``.npy``, ``.csv``/``.txt`` or ``.binaryproto``: (L, L)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _not_a_file(path, f"read_matrix: matrix file {_where(path)}")
    if path.lower().endswith((".csv", ".txt", ".tsv")):
        with open(path) as f:
            text = f.read()
        delimiter = "," if "," in text else None
        try:
            M = np.loadtxt(path, delimiter=delimiter, ndmin=2, comments="#")
        except ValueError as err:
            raise ValueError(f"read_matrix: '{path}' is not a table of numbers ({err})") from None
    else:
        M = load_blob(path, owner="read_matrix", key="matrix")
    shape = square_shape(M.shape)
    if shape is None:
        raise ValueError(f"read_matrix: '{path}' must hold an L x L matrix. Received shape {M.shape}")
    return M.reshape(shape)


def similarity_from_distances(D, *, temperature=1.0):
    """H from a label distance matrix: ``H = exp(-D / T)``.

    ``D[k, l] >= 0`` is how far apart classes k and l are (``D[k, k] = 0``,
    so ``H[k, k] = 1``). The loss is minimised by ``p_l`` proportional to
    ``H[y, l]``: a small ``T`` keeps H near the identity (plain softmax), a
    large one spreads the target over near classes. For a sample of class
    k, every class l with a large ``H[k, l]`` is part of the target, so
    putting probability on a near class costs less than on a far one (seed
    001: calling a cat a dog costs less than calling it a car). Distances
    themselves must not go into H: they would reward the far classes.

    Raises:
      ValueError unless D is square, finite, non-negative with a zero
      diagonal, and ``T > 0``.
    """
    D = np.asarray(D, dtype=np.float64)
    shape = square_shape(D.shape)
    if shape is None:
        raise ValueError(f"similarity_from_distances: D must be L x L. Received shape {D.shape}")
    D = D.reshape(shape)
    if not np.all(np.isfinite(D)) or np.any(D < 0):
        raise ValueError("similarity_from_distances: D must be finite and non-negative")
    if np.any(np.diagonal(D) != 0):
        raise ValueError(f"similarity_from_distances: D must have a zero diagonal (a class is at "
                         f"distance 0 from itself). Received diagonal {np.diagonal(D).tolist()}")
    if not temperature > 0:
        raise ValueError(f"similarity_from_distances: 'temperature' must be > 0. "
                         f"Received: temperature={temperature}")
    return np.exp(-D / float(temperature))
