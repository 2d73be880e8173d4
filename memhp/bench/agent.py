"""Host side of the guest agent: run commands, read/write files, capture trees.

The guest's ``/init`` runs a busybox-sh loop on its second serial port
(:data:`memhp.bench.initramfs.AGENT_SH`); QEMU connects that port to a unix socket.
The line protocol:

* host → guest: ``@@C<base64 of a shell script>\\n``;
* guest → host: ``@@R <rc> <len(stdout)> <len(stderr)>\\n`` followed by the raw bytes.

:class:`GuestFS` puts the :class:`memhp.abi.fs.SysfsFS` protocol on top, so the
tool's code runs unchanged against the guest's ``/sys``; :meth:`GuestFS.capture`
dumps whole subtrees in one round trip (``find`` + ``stat`` + ``tail``) and parses them
into a :class:`memhp.abi.tree.Snapshot`.

Errors come back as busybox's messages (``sh: write error: Invalid argument``,
``cat: can't open 'x': Permission denied``); busybox-static is linked against glibc,
so the texts are glibc's ``strerror`` strings and map back to errno numbers
exactly (:func:`errno_from_message`).
"""

from __future__ import annotations

import base64
import errno
import os
import re
import shlex
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memhp.abi.fs import Kind, Stat, normpath, oserror
from memhp.abi.tree import MEMORY_ROOTS, Entry, Snapshot


class AgentError(RuntimeError):
    """The agent did not answer (guest hung, QEMU gone) or answered garbage."""


@dataclass(frozen=True)
class CommandResult:
    """What one guest command did."""

    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def check(self) -> CommandResult:
        """Raise :class:`AgentError` unless ``rc`` is 0."""
        if self.rc != 0:
            raise AgentError(f"guest command failed rc={self.rc}: {self.stderr!r}")
        return self


_STRERROR: dict[str, int] = {}
for _code in range(1, 134):
    _STRERROR.setdefault(os.strerror(_code), _code)
#: busybox's own wording for some errors.
_STRERROR["nonexistent directory"] = errno.ENOENT


def errno_from_message(msg: str) -> int:
    """The errno a busybox error message carries (EIO when none is recognised)."""
    msg = msg.strip()
    best = 0
    best_len = 0
    for text, code in _STRERROR.items():
        # the strerror text ends the message: "...: Device or resource busy"
        if msg.endswith(text) and len(text) > best_len:
            best, best_len = code, len(text)
    return best or errno.EIO


def sq(s: str) -> str:
    """Single-quote ``s`` for sh."""
    return shlex.quote(s)


class GuestAgent:
    """The serial-line connection to the guest agent."""

    def __init__(self, sock_path: str) -> None:
        self.sock_path = sock_path
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self.commands = 0
        self.bytes_in = 0

    def connect(self, timeout: float = 10.0) -> None:
        """Connect to QEMU's chardev socket (retrying until it exists)."""
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.sock_path)
                self._sock = s
                return
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _recv(self, deadline: float) -> None:
        assert self._sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AgentError("timed out waiting for the guest agent")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(1 << 16)
        except TimeoutError as e:
            raise AgentError("timed out waiting for the guest agent") from e
        if not chunk:
            raise AgentError("guest agent connection closed (QEMU exited?)")
        self._buf += chunk
        self.bytes_in += len(chunk)

    def _readline(self, deadline: float) -> bytes:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 1]
                return line
            self._recv(deadline)

    def _readexact(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            self._recv(deadline)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def wait_ready(self, timeout: float) -> None:
        """Wait for the agent's ``@@READY`` line."""
        deadline = time.monotonic() + timeout
        while True:
            if self._readline(deadline).endswith(b"@@READY"):
                return

    def run(self, script: str, timeout: float = 120.0) -> CommandResult:
        """Run a busybox-sh script in the guest (cwd ``/``, stdin ``/dev/null``)."""
        if self._sock is None:
            raise AgentError("agent not connected")
        deadline = time.monotonic() + timeout
        line = b"@@C" + base64.b64encode(script.encode()) + b"\n"
        self._sock.sendall(line)
        self.commands += 1
        while True:
            hdr = self._readline(deadline)
            if hdr.startswith(b"@@R "):
                break
        try:
            rc_s, olen_s, elen_s = hdr[4:].split()
            rc, olen, elen = int(rc_s), int(olen_s), int(elen_s)
        except ValueError as e:
            raise AgentError(f"bad agent header {hdr!r}") from e
        out = self._readexact(olen, deadline)
        err = self._readexact(elen, deadline)
        return CommandResult(rc, out, err)


_OPEN_ERR = re.compile(r"^\w+: can't open '(.*)': (.*)$")
_STAT_LINE = re.compile(r"^([a-z ]+)\|([0-7]+)\|(.*)$")
_LINK_NAME = re.compile(r"^'(.*)' -> '(.*)'$")
_TAIL_HDR = re.compile(rb"(?:^|\n)==> (/[^\n]*) <==\n")


@dataclass(frozen=True)
class CaptureStats:
    """How big the last capture was."""

    paths: int
    bytes: int
    seconds: float


class GuestFS:
    """The guest's root file system as a :class:`memhp.abi.fs.SysfsFS`."""

    def __init__(self, agent: GuestAgent) -> None:
        self.agent = agent
        self.last_capture: CaptureStats | None = None

    def run(self, script: str, timeout: float = 120.0) -> CommandResult:
        return self.agent.run(script, timeout)

    # --- SysfsFS ---------------------------------------------------------------

    def lstat(self, path: str) -> Stat:
        path = normpath(path)
        r = self.agent.run(f"stat -c '%F|%a|%n' {sq(path)}")
        if r.rc != 0:
            raise oserror(errno_from_message(r.stderr.decode(errors="replace")), path)
        ftype, mode, _name = r.text.rstrip("\n").split("|", 2)
        return Stat(_kind(ftype), int(mode, 8))

    def listdir(self, path: str) -> list[str]:
        path = normpath(path)
        r = self.agent.run(
            f"[ -L {sq(path)} ] || [ ! -d {sq(path)} ] && "
            f"{{ [ -e {sq(path)} ] && echo 'E Not a directory' >&2 "
            f"|| echo 'E No such file or directory' >&2; exit 1; }}\n"
            f"ls -A1 {sq(path)}"
        )
        if r.rc != 0:
            raise oserror(errno_from_message(r.stderr.decode(errors="replace")), path)
        return [n for n in r.text.split("\n") if n]

    def read(self, path: str) -> bytes:
        path = normpath(path)
        r = self.agent.run(f"cat {sq(path)}")
        if r.rc != 0:
            raise oserror(errno_from_message(r.stderr.decode(errors="replace")), path)
        return r.stdout

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        path = normpath(path)
        bs = 4096 if offset % 4096 == 0 and size % 4096 == 0 else 8 if offset % 8 == 0 else 1
        if bs == 8 and size % 8:
            bs = 1
        r = self.agent.run(
            f"dd if={sq(path)} bs={bs} skip={offset // bs} count={size // bs} 2>/dev/null "
            f"|| {{ cat {sq(path)} >/dev/null; }}"
        )
        if r.rc != 0:
            raise oserror(errno_from_message(r.stderr.decode(errors="replace")), path)
        return r.stdout[:size]

    def write(self, path: str, data: bytes) -> int:
        """Write ``data`` with one ``write(2)`` (busybox ``echo -n``); OSError(errno)."""
        path = normpath(path)
        text = data.decode("utf-8")
        if "\0" in text:
            raise ValueError("NUL in sysfs write data")
        r = self.agent.run(f"echo -n {sq(text)} > {sq(path)}")
        if r.rc != 0:
            raise oserror(errno_from_message(r.stderr.decode(errors="replace")), path)
        return len(data)

    def readlink(self, path: str) -> str:
        path = normpath(path)
        r = self.agent.run(f"[ -L {sq(path)} ] || exit 22\nreadlink {sq(path)}")
        if r.rc == 22:
            raise oserror(errno.EINVAL, path)
        if r.rc != 0:
            raise oserror(errno.ENOENT, path)
        return r.text.rstrip("\n")

    # --- bulk ------------------------------------------------------------------

    def write_status(self, path: str, data: str) -> int:
        """Write ``data`` and return 0 or the errno (never raises for a write error)."""
        try:
            self.write(path, data.encode())
        except OSError as e:
            return e.errno or errno.EIO
        return 0

    def capture(
        self,
        roots: Iterable[str] = MEMORY_ROOTS,
        follow: Sequence[str] = ("/sys/bus/acpi/devices/PNP0C80:*",),
        exclude_dirs: Sequence[str] = ("power",),
        timeout: float = 300.0,
    ) -> Snapshot:
        """Dump every directory, file (full value or read errno) and link under ``roots``.

        ``follow`` are shell globs of links whose targets are captured too (the
        ``PNP0C80`` device directories under ``/sys/devices/LNXSYSTM:00``).
        Directories named in ``exclude_dirs`` are left out with their contents
        (``power/``: generic runtime-PM attributes of every device).  Links are
        recorded, never followed, except for the ``follow`` globs.
        """
        t0 = time.monotonic()
        prune = " -o ".join(f"-name {sq(d)}" for d in exclude_dirs)
        find_excl = f"-type d \\( {prune} \\) -prune -o" if exclude_dirs else ""
        script = (
            "R=''\n"
            f"for r in {' '.join(sq(normpath(r)) for r in roots)}; do "
            '[ -e "$r" ] && R="$R $r"; done\n'
            f"for g in {' '.join(follow)}; do "
            '[ -L "$g" ] && [ -e "$g" ] && R="$R $(realpath "$g")"; done\n'
            '[ -n "$R" ] || exit 0\n'
            f"find $R {find_excl} -exec stat -c '%F|%a|%N' {{}} +\n"
            "echo '@@DATA'\n"
            f"find $R {find_excl} -type f -exec tail -v -c +1 {{}} +\n"
            "exit 0\n"
        )
        r = self.agent.run(script, timeout)
        snap = parse_capture(r.stdout, r.stderr)
        add_ancestors(snap)
        self.last_capture = CaptureStats(len(snap), len(r.stdout), time.monotonic() - t0)
        return snap

    def read_text(self, path: str) -> str:
        return self.read(path).decode("utf-8", "replace")


def add_ancestors(snap: Snapshot, stop: str = "/sys") -> None:
    """Add the directories above captured paths (up to, not including, ``stop``).

    This is what :func:`memhp.abi.tree.parse_trace` does for the reference trace,
    so snapshots of both kinds have the same shape.
    """
    for path in list(snap):
        parent = path.rsplit("/", 1)[0]
        while parent and parent != stop and parent.startswith(stop + "/") and parent not in snap:
            snap[parent] = Entry(Kind.DIR, mode=0o755)
            parent = parent.rsplit("/", 1)[0]


def _kind(ftype: str) -> Kind:
    if ftype == "directory":
        return Kind.DIR
    if ftype == "symbolic link":
        return Kind.LINK
    return Kind.FILE


def parse_capture(stdout: bytes, stderr: bytes) -> Snapshot:
    """Parse the output of the capture script into a snapshot."""
    meta, sep, data = stdout.partition(b"@@DATA\n")
    if not sep:
        raise AgentError("capture output lacks its @@DATA marker")
    snap: Snapshot = {}
    files: dict[str, int] = {}
    for raw in meta.decode("utf-8", "replace").split("\n"):
        if not raw:
            continue
        m = _STAT_LINE.match(raw)
        if not m:
            raise AgentError(f"bad stat line {raw!r}")
        ftype, mode_s, path = m.groups()
        kind = _kind(ftype)
        target = None
        if kind is Kind.LINK:
            lm = _LINK_NAME.match(path)
            if not lm:
                raise AgentError(f"bad link line {raw!r}")
            path, target = lm.groups()
        mode = int(mode_s, 8)
        if kind is Kind.DIR:
            snap[path] = Entry(Kind.DIR, mode=mode)
        elif kind is Kind.LINK:
            snap[path] = Entry(Kind.LINK, target=target or "", mode=mode)
        else:
            files[path] = mode
    # tail -v: "==> PATH <==\n" CONTENT, with "\n" between one file and the next header
    parts = _TAIL_HDR.split(data)
    contents: dict[str, bytes] = {}
    for i in range(1, len(parts) - 1, 2):
        contents[parts[i].decode("utf-8", "replace")] = parts[i + 1]
    errors: dict[str, int] = {}
    for line in stderr.decode("utf-8", "replace").split("\n"):
        m = _OPEN_ERR.match(line)
        if m:
            errors[m.group(1)] = errno_from_message(m.group(2))
    for path, mode in files.items():
        if path in contents:
            snap[path] = Entry(
                Kind.FILE, value=contents[path].decode("utf-8", "replace"), mode=mode
            )
        else:
            snap[path] = Entry(Kind.FILE, read_errno=errors.get(path, errno.EIO), mode=mode)
    return snap
