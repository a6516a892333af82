"""Guards every tool and layer shares: user files, memory, float32.

* :func:`output_file` is the one way a tool writes a file: it refuses a
  folder, a path that is one of the command's inputs (same file by
  ``os.path.samefile``, or the same real path), and anything at the path
  that is not a regular file (a symbolic link, a device node such as
  ``/dev/null``, a FIFO, a socket), before anything is written;
  it writes to a temporary file beside the target and renames it into
  place, so a failure never leaves a half-written file or a clobbered
  original; and the caller prints "wrote X" only after the rename::

      with output_file(args.output, inputs={"--model": args.model}, tool="net-surgery") as tmp:
          net.save(tmp)
      print(f"wrote {args.output}")

* :func:`check_allocation` refuses an allocation larger than the memory
  the machine has free, with a message naming what it was for, instead of a
  ``MemoryError`` traceback or a Caffe abort.
* :func:`float32_overflow` finds the first value of an array that float32
  (the type of Caffe's blobs) cannot hold.

No caffe import.
"""

import contextlib
import os
import stat
import shutil
import tempfile

import numpy as np

__all__ = ["OutputError", "check_output", "not_a_file", "output_file", "figure_output", "available_memory", "check_allocation",
           "float32_overflow", "overflows_float32", "format_bytes", "shown_path", "read_bytes", "FLOAT32_MAX",
           "FLOAT32_OVERFLOW", "BLOB_MAX_COUNT"]

FLOAT32_MAX = float(np.finfo(np.float32).max)          # 3.4028235e+38
BLOB_MAX_COUNT = 2 ** 31 - 1                           # what a Caffe blob holds at most (it aborts on more)
# Every float64 below this in magnitude rounds to a finite float32 (the
# largest float32 plus half its last step; the halfway point rounds up).
FLOAT32_OVERFLOW = 2.0 ** 128 - 2.0 ** 103


class OutputError(ValueError):
    """An output path a tool must not write: an input of the command, a folder, a symbolic
    link, a device node, FIFO or socket."""


def _same(a, b):
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(path, inputs=(), *, option="--output", tool=None):
    """Raises :class:`OutputError` when ``path`` must not be written.

    Args:
      path: the output path.
      inputs: the command's input files, as a mapping ``{option: path}`` or
        a sequence of paths (None entries are skipped).
      option: how the command line names the output (for the message).
      tool: the command's name, the prefix of the message.
    """
    prefix = f"{tool}: " if tool else ""
    path = os.fspath(path)
    if not path:
        raise OutputError(f"{prefix}{option} is empty: give a file name")
    if os.path.isdir(path) and not os.path.islink(path):
        raise OutputError(f"{prefix}{option} {path} is a folder: give a file name "
                          f"(e.g. {os.path.join(path, 'out' + _ext(path))})")
    named = inputs.items() if isinstance(inputs, dict) else ((None, p) for p in inputs)
    for name, src in named:
        if src is None:
            continue
        if _same(path, os.fspath(src)):
            what = f"the {name} file" if name else "an input file"
            raise OutputError(f"{prefix}{option} {path} is {what} of this command; refusing to "
                              f"write over it: choose another output name")
    problem = not_a_file(path)
    if problem:
        raise OutputError(f"{prefix}{option} {path} {problem}; refusing to write there: "
                          f"give the path of a regular file (or a new one)")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            raise OutputError(f"{prefix}{option} {path}: {existing} is a file, not a folder")
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{prefix}{option} {path}: the folder {existing} is not writable")


def not_a_file(path):
    """Why ``path`` must not be replaced by a written file (a few words), or None.

    A tool's output is a regular file or a new path. A symbolic link is never
    written through (nor replaced: the rename would break the user's link), and
    a device node, FIFO, socket or folder is never replaced by a file.
    """
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):     # a new path (a file in the way: said later)
        return None
    except OSError as err:
        return f"cannot be examined ({err.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"is a symbolic link (to {os.readlink(path)})"
    if stat.S_ISREG(st.st_mode):
        return None
    kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
            else "a block device" if stat.S_ISBLK(st.st_mode) else "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
    return f"is {kind}, not a regular file"


def _ext(path):
    return os.path.splitext(path.rstrip(os.sep))[1]


def figure_output(path, inputs=(), *, option="--out", tool=None):
    """The file a figure will be written to, checked before the work that draws it.

    A name without an extension gets ``.png`` (what matplotlib writes then,
    so the name printed is the file that exists); an extension matplotlib
    cannot write is refused, as is whatever :func:`check_output` refuses.

    Returns:
      the path to write (and to print).
    """
    path = os.fspath(path)
    if path and not os.path.isdir(path) and not _ext(path):
        path += ".png"
    ext = _ext(path)[1:].lower()
    try:
        from matplotlib.figure import Figure
        supported = Figure().canvas.get_supported_filetypes()
    except ImportError:
        supported = None        # the command says matplotlib is missing itself
    if ext and supported is not None and ext not in supported:
        raise OutputError(f"{tool + ': ' if tool else ''}{option} {path}: matplotlib cannot write '.{ext}' "
                          f"files; use one of {', '.join('.' + e for e in sorted(supported))}")
    check_output(path, inputs, option=option, tool=tool)
    return path


@contextlib.contextmanager
def output_file(path, inputs=(), *, option="--output", tool=None):
    """Yields a temporary path beside ``path``; on success renames it to ``path``.

    Checks ``path`` with :func:`check_output` first (nothing is written when
    it is refused), creates the missing folders, and removes the temporary
    file when the block raises: the target is either the complete new file
    or untouched.  The temporary name keeps ``path``'s extension (some
    writers choose the format by it).
    """
    check_output(path, inputs, option=option, tool=tool)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{_ext(base)}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        if not os.path.isfile(tmp) or (os.path.getsize(tmp) == 0):
            raise OSError(f"{tool + ': ' if tool else ''}writing {path} produced no data")
        problem = not_a_file(path)    # something appeared there meanwhile
        if problem:
            raise OutputError(f"{tool + ': ' if tool else ''}{option} {path} {problem}; refusing to "
                              f"write there")
        if os.path.exists(path):
            # keep the permissions the user gave the file being replaced
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as err:      # a full disk, a file-size limit, an I/O error: name the output
        reason = err.strerror if err.strerror else str(err)
        try:
            free = f"; {format_bytes(shutil.disk_usage(folder).free)} free in {folder}"
        except OSError:
            free = ""
        raise OSError(f"{tool + ': ' if tool else ''}{option} {path}: cannot write it ({reason}){free}; "
                      f"nothing was written under that name") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def shown_path(path):
    """How messages show a file's path: as given, plus where a relative one was looked for.

    ``'H.binaryproto' (relative to the working directory /run: /run/H.binaryproto)``
    """
    if os.path.isabs(path):
        return f"'{path}'"
    return f"'{path}' (relative to the working directory {os.getcwd()}: {os.path.abspath(path)})"


def read_bytes(path, what, limit=-1):
    """The bytes of a file (the first ``limit`` ones), or an OSError saying that ``what`` cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError as err:      # permission denied, I/O error
        raise OSError(f"{what} cannot be read: {err.strerror or err}") from None


def available_memory():
    """Bytes of memory available to a new allocation (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_allocation(nbytes, what, *, owner=None):
    """Raises ``ValueError`` when ``nbytes`` exceed the memory available now.

    Args:
      nbytes: the size about to be allocated (a Python int: no overflow).
      what: what it is for, e.g. "the centers (1000000000 x 2 float32, data and diff)".
      owner: the prefix of the message (layer class or tool name), if any.
    """
    free = available_memory()
    if free is not None and nbytes > free:
        raise ValueError(f"{owner + ': ' if owner else ''}{what} would need {format_bytes(nbytes)}, more than the "
                         f"{format_bytes(free)} of memory available")


def overflows_float32(value):
    """True when the float ``value`` is NaN, inf, or finite but beyond float32 (it would be inf)."""
    return not abs(value) < FLOAT32_OVERFLOW


def float32_overflow(array):
    """The index (a tuple) of the first value float32 would turn into inf, or None.

    NaN and inf are not reported here (they are non-finite already).
    """
    a = np.asarray(array)
    if a.dtype.kind not in "fiu" or a.size == 0 or a.dtype == np.float32:
        return None
    with np.errstate(invalid="ignore"):
        big = np.abs(a.astype(np.float64, copy=False)) >= FLOAT32_OVERFLOW
    big &= np.isfinite(a)
    if not big.any():
        return None
    return tuple(int(i) for i in np.argwhere(big)[0])
