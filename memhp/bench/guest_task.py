"""A workload task inside a bench guest (run by the ``task`` action; stdlib only).

    python guest_task.py NAME MOVABLE_BYTES UNMOVABLE_BYTES NODE

A child process sets its memory policy to prefer ``NODE`` (set_mempolicy(2),
MPOL_PREFERRED, as the model's allocations follow that node's zonelist), then
holds, until it is killed:

* ``UNMOVABLE_BYTES`` in pipe buffers: pipe_write() allocates each buffer page
  with ``alloc_page(GFP_HIGHUSER | __GFP_ACCOUNT)`` (fs/pipe.c) -- no
  ``__GFP_MOVABLE``: never in ZONE_MOVABLE, not on an LRU and not
  ``__PageMovable``, so has_unmovable_pages() (mm/page_alloc.c) refuses to isolate
  a block holding one: the model's ``PageState.UNMOVABLE`` kernel pages;
* ``MOVABLE_BYTES`` of private anonymous memory, every page written
  (``GFP_HIGHUSER_MOVABLE``, on the LRU, migrated by do_migrate_range()): the
  model's ``PageState.MOVABLE`` pages.  Its page tables are the kernel's
  (the model's ``kalloc.process_page_tables``).

The parent waits until the child holds everything, writes the child's pid to
``/run/memhp-task-NAME.pid`` and exits 0 (1 with a message on failure).
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import resource
import signal
import sys

SYS_SET_MEMPOLICY = 238  # x86_64
MPOL_PREFERRED = 1
F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20
CHUNK = 1 << 20


def hold(movable: int, unmovable: int, node: int) -> list[object]:
    """Allocate and keep: pipe buffers first, then anonymous memory (the model's order)."""
    libc = ctypes.CDLL(None, use_errno=True)
    mask = ctypes.c_ulong(1 << node)
    if libc.syscall(SYS_SET_MEMPOLICY, MPOL_PREFERRED, ctypes.byref(mask), 64) != 0:
        raise OSError(ctypes.get_errno(), "set_mempolicy")
    npipes = -(-unmovable // PIPE_BYTES)
    nofile = max(1024, 2 * npipes + 64)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    keep: list[object] = []
    left = unmovable
    while left > 0:
        n = min(PIPE_BYTES, left)
        r, w = os.pipe()
        fcntl.fcntl(w, F_SETPIPE_SZ, max(n, mmap.PAGESIZE))
        done = 0
        while done < n:
            done += os.write(w, b"\x01" * min(n - done, CHUNK))
        keep.append((r, w))
        left -= n
    if movable > 0:
        anon = mmap.mmap(-1, movable, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        block = b"\x01" * CHUNK
        for off in range(0, movable, CHUNK):
            anon.write(block[: min(CHUNK, movable - off)])
        keep.append(anon)
    return keep


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: guest_task.py NAME MOVABLE UNMOVABLE NODE", file=sys.stderr)
        return 2
    name, movable, unmovable, node = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.setsid()
        try:
            keep = hold(movable, unmovable, node)
        except OSError as e:
            os.write(wfd, f"failed: {e}".encode())
            os._exit(1)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.write(wfd, b"ok")
        os.close(wfd)
        while keep:
            signal.pause()
        os._exit(0)
    os.close(wfd)
    status = os.read(rfd, 4096).decode() or "failed: the task died"
    if status != "ok":
        print(status, file=sys.stderr)
        return 1
    with open(f"/run/memhp-task-{name}.pid", "w") as f:
        f.write(str(pid))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
