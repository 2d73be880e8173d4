"""Bounded and interruptible sysfs writes (``--timeout``, Ctrl-C, SIGTERM).

In Linux 6.1 a write of ``offline`` whose pages cannot be migrated does not
fail: ``offline_pages()`` retries until the writing process gets a signal, then
the write fails with EINTR ("signal backoff").  The kernel's own selftest bounds
such writes with ``timeout`` (a signal); :class:`WriteGuard` does the same from
inside the tool: a timer (``SIGALRM`` through ``setitimer``) that interrupts the
write in progress when the deadline passes and every following blocking write
shortly after, and handlers for SIGINT/SIGTERM that interrupt the write in
progress and ask the caller to stop (it rolls back).  A second SIGINT/SIGTERM
raises :class:`Abort` at once.

Python retries a write that fails with EINTR (PEP 475) unless the signal handler
raises: the handlers raise :class:`InterruptedError` (an :class:`OSError` with
errno EINTR, which the root turns into a ``SysfsError``), but only while a write
is in progress, so the tool's own code is never interrupted half-way.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from memhp.abi.fs import Stat, SysfsFS

#: After the deadline, a blocking write is interrupted within this many seconds.
AFTER_DEADLINE_S = 0.1


class Abort(BaseException):
    """A second SIGINT/SIGTERM: stop at once, whatever is half-done."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _eintr() -> InterruptedError:
    return InterruptedError(errno.EINTR, os.strerror(errno.EINTR))


class WriteGuard:
    """Signals that interrupt blocking writes (see the module doc).

    Use as a context manager around the operation, and wrap its root's file
    system with :meth:`wrap`.  Outside the main thread (where signals cannot be
    handled) it installs nothing and bounds nothing.
    """

    def __init__(self, timeout: float | None = None, catch_stop: bool = True) -> None:
        self.timeout = timeout
        self.catch_stop = catch_stop
        #: The deadline passed (a timed-out write failed with EINTR).
        self.expired = False
        #: The first SIGINT/SIGTERM received, if any: the caller should stop.
        self.stop_signal: int | None = None
        self._in_write = False
        self._saved: dict[int, Any] = {}
        self._active = False

    # ------------------------------------------------------------ handlers
    def _on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        self.expired = True
        if self._in_write:
            raise _eintr()

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_signal is not None:
            raise Abort(signum)
        self.stop_signal = signum
        if self._in_write:
            raise _eintr()

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> WriteGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._active = True
        if self.timeout is not None:
            self._saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, max(self.timeout, 1e-3), AFTER_DEADLINE_S)
        if self.catch_stop:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._on_stop)
        return self

    def disarm(self) -> None:
        """Stop the timer (e.g. before rolling back: those writes must not fail)."""
        if self._active and self.timeout is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        self.disarm()
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
        self._active = False

    @property
    def stopped(self) -> bool:
        return self.stop_signal is not None

    def wrap(self, fs: SysfsFS) -> SysfsFS:
        """``fs`` whose writes the signals may interrupt (EINTR)."""
        return _GuardedFS(fs, self)


class _GuardedFS:
    """A :class:`SysfsFS` whose writes are marked as interruptible."""

    def __init__(self, inner: SysfsFS, guard: WriteGuard) -> None:
        self.inner = inner
        self.guard = guard

    def lstat(self, path: str) -> Stat:
        return self.inner.lstat(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def read(self, path: str) -> bytes:
        return self.inner.read(path)

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        return self.inner.read_at(path, offset, size)

    def readlink(self, path: str) -> str:
        return self.inner.readlink(path)

    def write(self, path: str, data: bytes) -> int:
        g = self.guard
        g._in_write = True
        try:
            return self.inner.write(path, data)
        finally:
            g._in_write = False


__all__ = ["AFTER_DEADLINE_S", "Abort", "WriteGuard", "signal_name"]
