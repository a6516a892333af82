"""The terminal side of a training run: the progress line, and the signals that stop it.

:class:`_Progress` draws the progress line and prints messages between its
updates; :class:`_Signals` turns Ctrl-C, SIGTERM and SIGHUP into flags read
between iterations; :func:`_stop_raises` and :func:`_signals_held` decide what
a second stop does while a snapshot is being written.
"""

import contextlib
import math
import signal
import time


def _fmt_time(seconds):
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


class _Progress:
    """The progress line (iteration, loss, rate, ETA) and the messages between its updates.

    On a terminal the line is redrawn in place (at most 10 times a second);
    elsewhere (a log file, ``docker logs``) a line is printed at each 10% of
    the run and whenever ``every`` seconds passed since the last one, so a
    long run never looks dead. :meth:`say` prints a full line (test scores,
    snapshots, warnings) without breaking the bar.
    """

    def __init__(self, total, start, stream, *, enabled=True, report=True, label="", every=20.0,
                 clock=time.monotonic):
        self.total, self.start_iter, self.stream = total, start, stream
        self.enabled, self.report = enabled, report
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.clock = clock
        self.t0 = self.last_time = clock()
        self.every = every
        self.last_decade = -1
        self.last_it = None
        self.on_screen = False     # a bar is drawn on the terminal line, without a newline
        self.label = label + " " if label else ""

    def update(self, it, loss, final=False):
        if not self.enabled:
            return
        now = self.clock()
        done, todo = it - self.start_iter, self.total - self.start_iter
        frac = min(done / todo, 1.0) if todo > 0 else 1.0
        if final:
            if it == self.last_it and not self.tty:
                return
        elif self.tty:
            if now - self.last_time < 0.1:
                return
        elif int(frac * 10) == self.last_decade and now - self.last_time < self.every:
            return
        self.last_decade, self.last_time, self.last_it = int(frac * 10), now, it
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 else float("nan")
        eta = (todo - done) / rate if rate and rate > 0 else float("nan")
        width = 24
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        line = (f"{self.label}[{bar}] {it}/{self.total} loss {loss:.4g} "
                f"{rate:.1f} it/s ETA {_fmt_time(eta)}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
            self.on_screen = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def say(self, text):
        """Prints one full line (when reporting), clearing the bar drawn on a terminal."""
        if not self.report:
            return
        if self.on_screen:
            self.stream.write("\r\x1b[K")
            self.on_screen = False
        self.stream.write(text + "\n")
        self.stream.flush()


class _Signals:
    """SIGINT and SIGTERM ask to stop (with a snapshot), SIGHUP to snapshot and go on.

    The handlers only set flags, read between iterations, so Caffe is never
    interrupted in the middle of an update or of writing a file. After the
    first stop request the default handlers come back: a second Ctrl-C
    raises ``KeyboardInterrupt`` at once, a second SIGTERM ends the process.
    """

    NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}

    def __init__(self):
        self.stop = None          # the signal number that asked to stop
        self.hup = False
        self.saved = {}

    def _on_stop(self, signum, frame):
        self.stop = signum
        for sig, old in self.saved.items():
            if sig != signal.SIGHUP:
                signal.signal(sig, old)

    def _on_hup(self, signum, frame):
        self.hup = True

    def __enter__(self):
        wanted = {signal.SIGINT: self._on_stop, signal.SIGTERM: self._on_stop}
        if hasattr(signal, "SIGHUP"):
            wanted[signal.SIGHUP] = self._on_hup
        try:
            for sig, handler in wanted.items():
                self.saved[sig] = signal.signal(sig, handler)
        except ValueError:          # not the main thread: Python runs handlers there only
            self.__exit__()
        return self

    def __exit__(self, *exc):
        for sig, old in self.saved.items():
            signal.signal(sig, old)
        self.saved = {}

    def take_hup(self):
        hup, self.hup = self.hup, False
        return hup


class _StopNow(KeyboardInterrupt):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_raises():
    """While a snapshot is written: a Ctrl-C or SIGTERM that would end the process (a second one,
    the default handlers being back) raises :class:`_StopNow` instead, so that the writer
    cleans up and says what exists. The first stop request (a flag) is left as it is."""
    def stop_now(signum, frame):
        raise _StopNow(signum)

    saved = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if not (callable(current) and getattr(current, "__name__", "") == "_on_stop"):
                with contextlib.suppress(ValueError):       # not the main thread
                    saved[sig] = signal.signal(sig, stop_now)
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM wait until the block is over (both files renamed, or neither)."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
