"""Writing a snapshot so that nothing is ever left half-written under its final name.

Caffe writes the weights and the solver state under a hidden prefix
(:func:`_partial_prefix`), on the CPU in a forked child (:func:`_in_child`:
Caffe aborts on a full disk, which then ends only the child); the solver
state is pointed at the final weights file (:func:`_set_learned_net`), both
are flushed (:func:`_fsync`) and renamed into place by the run
(:meth:`caffe_losses.training.loop._Run.write_snapshot`).
"""

import contextlib
import ctypes
import os
import shutil
import signal
import warnings

import h5py
import numpy as np

from caffe_losses.files.safety import format_bytes

# caffe (pycaffe) is imported inside the functions that use it: the CLI
# imports this module, and must run without pycaffe to say that it is missing.


def snapshot_files(prefix, iteration, snapshot_format):
    """(weights file, solver state file) Caffe writes for a snapshot at ``iteration``."""
    from caffe.proto import caffe_pb2
    base = f"{prefix}_iter_{iteration}"
    if snapshot_format == caffe_pb2.SolverParameter.HDF5:
        return base + ".caffemodel.h5", base + ".solverstate.h5"
    return base + ".caffemodel", base + ".solverstate"


def _partial_prefix(prefix):
    """The prefix Caffe writes snapshots to: a hidden name in the snapshots' own folder (renamed
    into place once complete, see :meth:`caffe_losses.training.loop._Run.write_snapshot`)."""
    folder, base = os.path.split(prefix)
    return os.path.join(folder, f".{base}.{os.getpid()}.partial")


class _ChildFailed(Exception):
    """The child process writing a snapshot failed (the message says how)."""


def _in_child(work):
    """Runs ``work()`` in a forked child, waits for it; raises :class:`_ChildFailed` with its
    last error line when it fails or is killed (a Caffe ``CHECK`` abort on a full disk).

    Any exception while waiting (:class:`_StopNow` from :func:`_stop_raises`)
    kills the child first, so that the caller can remove what it wrote.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)     # fork() with BLAS threads (Python 3.12)
        pid = os.fork()
    if pid == 0:                                         # the child: never returns
        code = 1
        try:
            os.close(read_end)
            os.dup2(write_end, 2)                        # Caffe's FATAL line goes to the parent
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (it kills us)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
            _die_with_parent()
            work()
            code = 0
        except BaseException as err:                     # noqa: B902 - reported to the parent
            with contextlib.suppress(Exception):
                os.write(2, f"{type(err).__name__}: {err}\n".encode(errors="replace"))
        finally:
            os._exit(code)
    os.close(write_end)
    output = b""
    try:
        try:
            while True:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                output = (output + chunk)[-8192:]
            _, status = os.waitpid(pid, 0)
        except BaseException:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
            raise
    finally:
        os.close(read_end)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return
    lines = [ln.strip() for ln in output.decode(errors="replace").splitlines() if ln.strip()]
    fatal = [ln.split("] ", 1)[-1] for ln in lines if ln.startswith("F") and "] " in ln]
    how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
           else f"exit status {os.WEXITSTATUS(status)}")
    if fatal:        # Caffe's CHECK on its writer: the first FATAL line says which
        raise _ChildFailed(f"Caffe could not write it ({fatal[0]}; the disk may be full)")
    others = [ln for ln in lines if not ln.startswith("*** ")]      # glog's stack dump lines
    raise _ChildFailed(f"writing it failed ({others[-1] if others else how})")


def _die_with_parent():
    """Linux: the snapshot child is killed if training is (never a writer left behind)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)      # PR_SET_PDEATHSIG


def _fsync(path):
    """Flushes ``path`` to the disk: a write error the disk reports late (ENOSPC) surfaces here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_learned_net(state_path, model, snapshot_format):
    """Sets the ``learned_net`` a solver state names (the weights file restored with it) to ``model``."""
    from caffe.proto import caffe_pb2
    if snapshot_format == caffe_pb2.SolverParameter.HDF5:
        with h5py.File(state_path, "r+") as f:
            # Caffe's hdf5_save_string: a scalar, null-terminated fixed-length string
            data = model.encode() + b"\0"
            if "learned_net" in f:
                del f["learned_net"]
            tid = h5py.h5t.C_S1.copy()
            tid.set_size(len(data))
            tid.set_strpad(h5py.h5t.STR_NULLTERM)
            space = h5py.h5s.create(h5py.h5s.SCALAR)
            ds = h5py.h5d.create(f.id, b"learned_net", tid, space)
            ds.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(data, dtype=f"S{len(data)}"), mtype=tid)
        return
    state = caffe_pb2.SolverState()
    with open(state_path, "rb") as f:
        state.ParseFromString(f.read())
    state.learned_net = model
    with open(state_path, "wb") as f:
        f.write(state.SerializeToString())


def _check_free_space(solver, folder):
    """In-process snapshots (GPU mode): refuses one the disk has clearly no room for (Caffe would abort)."""
    need = sum(int(b.data.nbytes) for blobs in solver.net.params.values() for b in blobs)
    free = shutil.disk_usage(folder).free
    if free < 2 * need:
        raise OSError(f"the disk has {format_bytes(free)} free, less than the "
                      f"{format_bytes(2 * need)} the weights and solver state need at least")
