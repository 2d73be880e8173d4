"""The FUSE kernel protocol, spoken on ``/dev/fuse`` directly (no libfuse).

The layouts are those of ``include/uapi/linux/fuse.h`` (protocol 7.31, which every
kernel since 5.2 speaks; newer kernels accept it).  The device is opened and mounted
by ``fusermount3`` (Debian package fuse3), which passes the descriptor back over a
socket (``_FUSE_COMMFD``) as libfuse's ``fuse_mount()`` does; with ``auto_unmount``
it stays as a watcher that unmounts when that socket closes (the daemon died).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess

# ---------------------------------------------------------------- opcodes (enum fuse_opcode)
LOOKUP, FORGET, GETATTR, SETATTR, READLINK = 1, 2, 3, 4, 5
OPEN, READ, WRITE, STATFS, RELEASE, FSYNC = 14, 15, 16, 17, 18, 20
FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR = 25, 26, 27, 28, 29
GETXATTR, ACCESS, INTERRUPT, DESTROY, BATCH_FORGET, READDIRPLUS = 22, 34, 36, 38, 42, 44

# ---------------------------------------------------------------- INIT flags
ASYNC_READ = 1 << 0
AUTO_INVAL_DATA = 1 << 12
BIG_WRITES = 1 << 5
DO_READDIRPLUS = 1 << 13
PARALLEL_DIROPS = 1 << 18
MAX_PAGES = 1 << 22
CACHE_SYMLINKS = 1 << 23
NO_OPENDIR_SUPPORT = 1 << 24

# ---------------------------------------------------------------- OPEN reply flags (FOPEN_*)
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_NOFLUSH = 1 << 5

KERNEL_MAJOR, KERNEL_MINOR = 7, 31
ROOT_ID = 1
NOTIFY_INVAL_INODE, NOTIFY_INVAL_ENTRY, NOTIFY_STORE = 2, 3, 4

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
#: struct fuse_attr: ino size blocks atime mtime ctime (ns x3) mode nlink uid gid rdev
#: blksize flags
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ENTRY_OUT = struct.Struct("<QQQQII")  # nodeid generation entry_valid attr_valid (nsec x2)
ATTR_OUT = struct.Struct("<QII")  # attr_valid attr_valid_nsec dummy
OPEN_IN = struct.Struct("<II")  # flags (of open(2)) open_flags
OPEN_OUT = struct.Struct("<QII")  # fh open_flags padding
READ_IN = struct.Struct("<QQII")  # fh offset size read_flags (lock_owner, flags follow)
WRITE_IN = struct.Struct("<QQIIQII")  # fh offset size write_flags lock_owner flags pad
WRITE_OUT = struct.Struct("<II")
INIT_IN = struct.Struct("<IIII")  # major minor max_readahead flags
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")  # ... max_pages map_alignment flags2 unused[7]
DIRENT = struct.Struct("<QQII")  # ino off namelen type
FORGET_ONE = struct.Struct("<QQ")
U64 = struct.Struct("<Q")
U32x2 = struct.Struct("<II")
STATFS_OUT = struct.Struct("<QQQQQIII28x")  # blocks bfree bavail files ffree bsize namelen frsize
INVAL_ENTRY = struct.Struct("<QII")  # parent namelen flags
INVAL_INODE = struct.Struct("<Qqq")  # ino off len
STORE = struct.Struct("<QQII")  # nodeid offset size padding (then the bytes)


def dirent(buf: bytearray, ino: int, off: int, name: bytes, dtype: int) -> None:
    """Append one struct fuse_dirent (padded to 8 bytes)."""
    buf += DIRENT.pack(ino, off, len(name), dtype)
    buf += name
    buf += b"\0" * (-len(name) % 8)


def dirent_size(name: bytes, plus: bool) -> int:
    n = DIRENT.size + len(name) + (-len(name) % 8)
    return n + (ENTRY_OUT.size + ATTR.size if plus else 0)


def fusermount(mountpoint: str, options: str) -> tuple[int, socket.socket]:
    """Mount with ``fusermount3 -o OPTIONS -- MOUNTPOINT``: (the /dev/fuse fd, the socket
    that keeps its ``auto_unmount`` watcher alive)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
        proc = subprocess.Popen(
            ["fusermount3", "-o", options, "--", mountpoint],
            env=env,
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        theirs.close()
        _, fds, _, _ = socket.recv_fds(ours, 1, 1)
        if not fds:
            err = proc.stderr.read() if proc.stderr is not None else b""
            proc.wait()
            msg = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise OSError(f"fusermount3: {msg}")
        if "auto_unmount" not in options:
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        else:
            # The watcher lives on (it unmounts when ``ours`` closes); reap it in time.
            if proc.stderr is not None:
                proc.stderr.close()
        return fds[0], ours
    except BaseException:
        ours.close()
        raise


__all__ = ["fusermount"]
