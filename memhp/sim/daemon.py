"""The simulated machine as a process: FUSE-mounted sysfs plus a QMP socket.

``start()`` boots a :class:`~memhp.sim.machine.SimMachine` from a machine file, serves
its sysfs at ``MOUNT`` (``MOUNT/sys``, ``MOUNT/proc``) with FUSE and, with
``--qmp``, its platform on a QMP unix socket.  Detached (the default), it runs
in a new session with its output in a log file, and a state file records its
pid; ``stop()`` ends it with SIGTERM (SIGKILL after a timeout) and detaches
any mount left behind by a crashed daemon (``fusermount3 -uz``).

The state file lives outside the mount point (which the mount covers):
``$XDG_RUNTIME_DIR/memhp-sim`` or ``/tmp/memhp-sim-UID``, one JSON file per
mount point.

Signals: libfuse handles SIGINT, SIGTERM and SIGHUP in the daemon (the loop
ends, the file system is unmounted), then the QMP socket and the state file
are removed.  With fusermount3 available the mount also uses
``auto_unmount``: even a SIGKILLed daemon leaves no mount behind.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from memhp.sim.fuse import fuse_unavailable_reason, is_fuse_mount, lazy_unmount


class SimDaemonError(Exception):
    """A start/stop request that cannot be done (the message says why)."""


class SimStartInterrupted(SimDaemonError):
    """``start`` was interrupted (SIGINT/SIGTERM) while the daemon booted; it was
    stopped and everything it made removed."""


@dataclass
class DaemonState:
    """What ``memhp sim status`` reports (the state file's content)."""

    pid: int
    mount: str
    machine: str
    qmp: str | None
    log: str | None
    started: float


def state_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base) and os.access(base, os.W_OK):
        d = os.path.join(base, "memhp-sim")
    else:
        d = f"/tmp/memhp-sim-{os.getuid()}"
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def _key(mount: str) -> str:
    return hashlib.sha1(os.path.abspath(mount).encode()).hexdigest()[:16]


def state_path(mount: str) -> str:
    return os.path.join(state_dir(), _key(mount) + ".json")


def log_path(mount: str) -> str:
    return os.path.join(state_dir(), _key(mount) + ".log")


def read_state(mount: str) -> DaemonState | None:
    try:
        with open(state_path(mount), encoding="utf-8") as f:
            d = json.load(f)
        return DaemonState(**d)
    except (OSError, ValueError, TypeError):
        return None


def _write_state(st: DaemonState) -> None:
    tmp = state_path(st.mount) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(st), f)
    os.replace(tmp, state_path(st.mount))


def _remove_state(mount: str, pid: int | None = None) -> None:
    st = read_state(mount)
    if st is not None and pid is not None and st.pid != pid:
        return
    with contextlib.suppress(OSError):
        os.unlink(state_path(mount))


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is a memhp simulator (not a recycled pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return False
    return b"memhp" in cmd and not zombie


# ---------------------------------------------------------------- the daemon
def run(machine: str, mount: str, qmp: str | None, ready_fd: int | None = None) -> int:
    """Boot, serve until unmounted or signalled, clean up. Runs in the main thread."""
    from memhp.sim.config import load_machine
    from memhp.sim.fuse import serve
    from memhp.sim.machine import SimMachine

    mount = os.path.abspath(mount)
    server = None

    def report(msg: str) -> None:
        if ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(ready_fd, (msg + "\n").encode())

    try:
        sim = SimMachine(load_machine(machine))
        if qmp:
            from memhp.sim.qmp_server import QMPServer

            server = QMPServer(
                sim, os.path.abspath(qmp), on_quit=lambda: os.kill(os.getpid(), signal.SIGTERM)
            )
            server.start()
        st = DaemonState(
            pid=os.getpid(),
            mount=mount,
            machine=os.path.abspath(machine),
            qmp=os.path.abspath(qmp) if qmp else None,
            log=log_path(mount) if ready_fd is not None else None,
            started=time.time(),
        )
        _write_state(st)

        def ready() -> None:
            report("ok")
            if ready_fd is None:
                print(
                    f"memhp sim: {machine} mounted at {mount}" + (f", QMP at {qmp}" if qmp else ""),
                    file=sys.stderr,
                    flush=True,
                )

        serve(sim.sysfs, mount, on_ready=ready, fsname=f"memhp-sim:{sim.spec.name}")
        return 0
    except Exception as e:
        report(f"error: {e}")
        print(f"memhp sim: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if server is not None:
            server.stop()
        _remove_state(mount, os.getpid())
        if ready_fd is not None:
            with contextlib.suppress(OSError):
                os.close(ready_fd)


# ---------------------------------------------------------------- control side
def check_mountpoint(mount: str) -> None:
    if is_fuse_mount(mount):
        st = read_state(mount)
        if st is not None and pid_alive(st.pid):
            raise SimDaemonError(
                f"{mount}: a simulated machine is already mounted here (pid {st.pid})"
            )
        raise SimDaemonError(
            f"{mount}: a stale FUSE mount is here; run 'memhp sim stop {mount}' first"
        )
    if not os.path.isdir(mount):
        raise SimDaemonError(f"{mount}: not a directory")
    if not os.access(mount, os.R_OK | os.W_OK | os.X_OK):
        raise SimDaemonError(f"{mount}: permission denied (the mount point must be yours)")
    if os.listdir(mount):
        raise SimDaemonError(f"{mount}: directory is not empty")


def start(
    machine: str,
    mount: str,
    qmp: str | None = None,
    foreground: bool = False,
    timeout: float = 60.0,
) -> DaemonState | None:
    """Start a simulator; detached: return its state once the mount is live."""
    from memhp.sim.config import load_machine

    load_machine(machine)  # MachineError with a clear message before forking
    reason = fuse_unavailable_reason()
    if reason is not None:
        raise SimDaemonError(f"FUSE is not available: {reason}")
    mount = os.path.abspath(mount)
    if qmp:
        check_qmp_path(qmp, mount)
    created = _make_mountpoint(mount)
    try:
        check_mountpoint(mount)
        if foreground:
            rc = run(machine, mount, qmp)
            if rc:
                raise SimDaemonError("the simulator failed (see above)")
            return None
        return _start_detached(machine, mount, qmp, timeout)
    except BaseException:
        if created and not is_fuse_mount(mount):
            with contextlib.suppress(OSError):
                os.rmdir(mount)
        raise
    finally:
        if foreground and created and not is_fuse_mount(mount):
            with contextlib.suppress(OSError):
                os.rmdir(mount)


def _make_mountpoint(mount: str) -> bool:
    """Create an absent mount directory; True when this call created it."""
    if os.path.lexists(mount):
        return False
    try:
        os.makedirs(mount, mode=0o755)
    except OSError as e:
        raise SimDaemonError(
            f"{mount}: cannot create the mount directory: {e.strerror or e}"
        ) from None
    return True


def _socket_listens(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(path)
    except OSError:
        return False
    finally:
        s.close()
    return True


def check_qmp_path(qmp: str, mount: str | None = None) -> None:
    """The QMP socket must be creatable: its directory exists, nothing is there yet.

    A socket nobody listens on is what a killed simulator leaves: the message
    says how to clean it up (``memhp sim stop DIR``).
    """
    if os.path.lexists(qmp):
        if stat.S_ISSOCK(os.lstat(qmp).st_mode) and not _socket_listens(qmp):
            st = read_state(mount) if mount else None
            where = mount if st is not None and st.qmp == os.path.abspath(qmp) else "DIR"
            raise SimDaemonError(
                f"{qmp}: a stale QMP socket (its simulator was killed); run "
                f"'memhp sim stop {where}'"
                + (" with the DIR it was mounted at" if where == "DIR" else "")
                + f" or remove {qmp}"
            )
        raise SimDaemonError(f"{qmp}: already exists")
    parent = os.path.dirname(os.path.abspath(qmp))
    if not os.path.isdir(parent):
        raise SimDaemonError(f"{qmp}: cannot create the QMP socket: no directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SimDaemonError(f"{qmp}: cannot create the QMP socket: {parent} is not writable")


def _start_detached(machine: str, mount: str, qmp: str | None, timeout: float) -> DaemonState:
    r, w = os.pipe()
    logf = open(log_path(mount), "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memhp.sim.daemon", "--ready-fd", str(w), machine, mount]
            + (["--qmp", qmp] if qmp else []),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            pass_fds=(w,),
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(w)
        logf.close()
    deadline = time.monotonic() + timeout
    msg = b""
    interrupted: BaseException | None = None
    try:
        while b"\n" not in msg:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                continue
            chunk = os.read(r, 4096)
            if not chunk:
                break
            msg += chunk
    except (KeyboardInterrupt, SimStartInterrupted) as e:
        interrupted = e  # Ctrl-C or SIGTERM while it boots: stop it, leave nothing
    finally:
        os.close(r)
    text = msg.decode(errors="replace").strip()
    if interrupted is not None or text != "ok":
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if is_fuse_mount(mount):
            lazy_unmount(mount)
        detail = (
            text.removeprefix("error: ") if text else _log_tail(mount) or "it exited or timed out"
        )
        # A failed start leaves nothing behind: no log, no state file.
        with contextlib.suppress(OSError):
            os.unlink(log_path(mount))
        _remove_state(mount, proc.pid)
        if qmp and os.path.exists(qmp) and not _socket_listens(qmp):
            with contextlib.suppress(OSError):
                os.unlink(qmp)
        if interrupted is not None:
            raise SimStartInterrupted(
                "interrupted while the simulator booted: stopped it and removed its mount, "
                "socket and state"
            ) from None
        raise SimDaemonError(f"the simulator did not start: {detail}")
    st = read_state(mount)
    if st is None:
        raise SimDaemonError("the simulator started but wrote no state file")
    return st


def _log_tail(mount: str, lines: int = 3) -> str:
    """The last lines of a daemon's log (what it said before dying), one line."""
    try:
        with open(log_path(mount), encoding="utf-8", errors="replace") as f:
            tail = [ln.strip() for ln in f.read().splitlines() if ln.strip()][-lines:]
    except OSError:
        return ""
    return " | ".join(tail)


def stop(mount: str, timeout: float = 10.0) -> str:
    """Stop the simulator of ``mount`` and make sure no mount is left; say what was done.

    :class:`SimDaemonError` when there is nothing to stop there (no simulator was
    started at ``mount`` and nothing is mounted: a typo, most likely).
    """
    mount = os.path.abspath(mount)
    st = read_state(mount)
    if st is None and not is_fuse_mount(mount):
        why = "" if os.path.isdir(mount) else " (no such directory)"
        raise SimDaemonError(f"{mount}: no simulated machine runs here{why}")
    did: list[str] = []
    if st is not None and pid_alive(st.pid):
        os.kill(st.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(st.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_alive(st.pid):
            os.kill(st.pid, signal.SIGKILL)
            did.append(f"killed pid {st.pid}")
        else:
            did.append(f"stopped pid {st.pid}")
    # A crashed daemon (SIGKILL) may leave a dead mount ("Transport endpoint is not connected").
    deadline = time.monotonic() + 2.0
    while is_fuse_mount(mount) and time.monotonic() < deadline:
        time.sleep(0.02)  # a daemon that just exited unmounts by itself
    if is_fuse_mount(mount):
        if not lazy_unmount(mount):
            raise SimDaemonError(f"{mount}: could not unmount (try: fusermount3 -uz {mount})")
        did.append("unmounted a stale mount")
    if st is not None:
        if st.qmp and os.path.exists(st.qmp) and not pid_alive(st.pid):
            with contextlib.suppress(OSError):
                os.unlink(st.qmp)
        _remove_state(mount)
        with contextlib.suppress(OSError):
            os.unlink(log_path(mount))
    if not did:
        return f"{mount}: no simulated machine was running (removed its stale state)"
    return f"{mount}: " + ", ".join(did)


def status(mount: str) -> dict[str, object]:
    """Whether a simulator serves ``mount`` (for ``memhp sim status``)."""
    mount = os.path.abspath(mount)
    st = read_state(mount)
    alive = st is not None and pid_alive(st.pid)
    mounted = is_fuse_mount(mount)
    out: dict[str, object] = {"mount": mount, "running": alive, "mounted": mounted}
    if st is not None:
        out.update(
            {
                "pid": st.pid,
                "machine": st.machine,
                "qmp": st.qmp,
                "log": st.log,
                "started": st.started,
            }
        )
    if mounted and not alive:
        out["stale"] = True
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m memhp.sim.daemon")
    p.add_argument("machine")
    p.add_argument("mount")
    p.add_argument("--qmp")
    p.add_argument("--ready-fd", type=int)
    a = p.parse_args(argv)
    return run(a.machine, a.mount, a.qmp, a.ready_fd)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DaemonState", "SimDaemonError", "read_state", "start", "status", "stop"]
